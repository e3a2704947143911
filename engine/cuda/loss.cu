// Grid-stride CUDA kernels for the fused losses: a thread per element (pointwise losses) or per row
// (cross entropy), running the ICD_HD bodies of engine/kernels/loss_math.h that the CPU loops run. The
// reductions (sum, mean) are left to the caller, which adds the per-element losses written here in
// double with the deterministic sum (engine/cuda/reduce_sum.cu): no atomics.
#include <algorithm>
#include <stdexcept>
#include <string>

#include "engine/cuda/cuda_check.h"
#include "engine/cuda/device_memory.h"
#include "engine/cuda/grid.h"
#include "engine/cuda/loss_kernels.h"
#include "engine/cuda/runtime.h"

namespace icd::cuda {
namespace {

template <class Body, class T>
__global__ void pointwise_loss_kernel(Body body, int64_t n, const T* input, const T* target, const T* weight,
                                      T scale, kernels::PointwiseLossOutputs<T> out, double* losses) {
  const int64_t stride = int64_t(blockDim.x) * gridDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const T loss =
        kernels::pointwise_loss_element(body, input[i], target[i], weight ? weight[i] : T(1), scale, i, out);
    if (losses) losses[i] = static_cast<double>(loss);
  }
}

template <class T>
__global__ void cross_entropy_kernel(int64_t rows, int64_t classes, const T* logits, const int64_t* labels,
                                     bool has_ignore, int64_t ignore_index, double scale, T* per_row,
                                     double* row_losses, T* d_logits) {
  const int64_t stride = int64_t(blockDim.x) * gridDim.x;
  for (int64_t r = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; r < rows; r += stride) {
    const int64_t label = labels[r];
    const bool kept = !(has_ignore && label == ignore_index);
    row_losses[r] = kernels::cross_entropy_row(logits + r * classes, classes, label, kept, scale, per_row + r,
                                               d_logits ? d_logits + r * classes : nullptr);
  }
}

void check(const char* op, DType dtype, int64_t n, int device) {
  if (n < 0) throw std::invalid_argument(std::string(op) + " (CUDA): negative element count");
  if (dtype != DType::f32 && dtype != DType::f64)
    throw std::invalid_argument(std::string(op) + " (CUDA): dtype " + dtype_name(dtype) +
                                " is not supported (f32 and f64 are)");
  use_device(op, device);
}
}  // namespace

void cuda_pointwise_loss(const char* op, const kernels::PointwiseLossCall& call, DType dtype, int64_t n,
                         const void* input, const void* target, const void* weight, double scale,
                         void* per_element, double* losses, void* d_input, void* d_target, void* d_weight,
                         int device) {
  check(op, dtype, n, device);
  if (n == 0) return;
  dispatch_floating(dtype, op, [&](auto tag) {
    using T = decltype(tag);
    const kernels::PointwiseLossOutputs<T> out{static_cast<T*>(per_element), static_cast<T*>(d_input),
                                               static_cast<T*>(d_target), static_cast<T*>(d_weight)};
    kernels::visit_pointwise_loss(call, [&](auto body) {
      pointwise_loss_kernel<<<grid_blocks(n), kBlockThreads, 0, cuda_stream(device)>>>(
          body, n, static_cast<const T*>(input), static_cast<const T*>(target), static_cast<const T*>(weight),
          static_cast<T>(scale), out, losses);
    });
  });
  ICD_CUDA_CHECK(cudaGetLastError());
}

void cuda_cross_entropy(const char* op, DType dtype, int64_t rows, int64_t classes, const void* logits,
                        const int64_t* labels, bool has_ignore, int64_t ignore_index, double scale,
                        void* per_row, double* row_losses, void* d_logits, int device) {
  check(op, dtype, rows, device);
  if (rows == 0) return;
  dispatch_floating(dtype, op, [&](auto tag) {
    using T = decltype(tag);
    cross_entropy_kernel<<<grid_blocks(rows), kBlockThreads, 0, cuda_stream(device)>>>(
        rows, classes, static_cast<const T*>(logits), labels, has_ignore, ignore_index, scale,
        static_cast<T*>(per_row), row_losses, static_cast<T*>(d_logits));
  });
  ICD_CUDA_CHECK(cudaGetLastError());
}

}  // namespace icd::cuda
