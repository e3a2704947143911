// Grid-stride CUDA kernels for resizing. Thread k computes output element k (forward) or input element k
// (backward, a gather: no atomics) with the ICD_HD bodies of engine/kernels/resize_math.h; this file only
// decides which thread computes which element.
#include <algorithm>
#include <stdexcept>
#include <string>

#include "engine/cuda/cuda_check.h"
#include "engine/cuda/device_memory.h"
#include "engine/cuda/grid.h"
#include "engine/cuda/resize_kernels.h"
#include "engine/cuda/runtime.h"

namespace icd::cuda {
namespace {

// Which body a kernel runs.
enum class Resize { nearest, nearest_grad, bilinear, bilinear_grad };

template <Resize kind, class T>
__global__ void resize_kernel(kernels::ResizeGeometry g, const T* src, T* dst, int64_t n) {
  const int64_t stride = int64_t(blockDim.x) * gridDim.x;
  for (int64_t k = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; k < n; k += stride) {
    if constexpr (kind == Resize::nearest)
      dst[k] = kernels::nearest_element(src, g, k);
    else if constexpr (kind == Resize::nearest_grad)
      dst[k] = kernels::nearest_grad_element(src, g, k);
    else if constexpr (kind == Resize::bilinear)
      dst[k] = kernels::bilinear_element(src, g, k);
    else
      dst[k] = kernels::bilinear_grad_element(src, g, k);
  }
}

// Runs the `kind` kernel over n destination elements (the output forward, the input backward).
template <Resize kind>
void launch(const char* op, const kernels::ResizeGeometry& g, DType dtype, const void* src, void* dst,
            int64_t n, int device) {
  if (dtype != DType::f32 && dtype != DType::f64)
    throw std::invalid_argument(std::string(op) + ": dtype " + dtype_name(dtype) +
                                " is not supported (f32 and f64 are)");
  use_device(op, device);
  if (n == 0) return;
  dispatch_floating(dtype, op, [&](auto tag) {
    using T = decltype(tag);
    resize_kernel<kind, T><<<grid_blocks(n), kBlockThreads, 0, cuda_stream(device)>>>(
        g, static_cast<const T*>(src), static_cast<T*>(dst), n);
  });
  ICD_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

void cuda_upsample_nearest2d(const kernels::ResizeGeometry& g, DType dtype, const void* x, void* y,
                             int device) {
  launch<Resize::nearest>("upsample_nearest2d (CUDA)", g, dtype, x, y, g.planes * g.out_plane(), device);
}

void cuda_upsample_nearest2d_backward(const kernels::ResizeGeometry& g, DType dtype, const void* grad_out,
                                      void* grad_x, int device) {
  launch<Resize::nearest_grad>("upsample_nearest2d backward (CUDA)", g, dtype, grad_out, grad_x,
                               g.planes * g.in_plane(), device);
}

void cuda_interpolate_bilinear(const kernels::ResizeGeometry& g, DType dtype, const void* x, void* y,
                               int device) {
  launch<Resize::bilinear>("interpolate_bilinear (CUDA)", g, dtype, x, y, g.planes * g.out_plane(), device);
}

void cuda_interpolate_bilinear_backward(const kernels::ResizeGeometry& g, DType dtype, const void* grad_out,
                                        void* grad_x, int device) {
  launch<Resize::bilinear_grad>("interpolate_bilinear backward (CUDA)", g, dtype, grad_out, grad_x,
                                g.planes * g.in_plane(), device);
}

}  // namespace icd::cuda
