// Grid-stride CUDA kernels for the optimizers' updates. The arithmetic is the ICD_HD body shared with the
// CPU loops (engine/kernels/optimizer_math.h); this file only decides which thread updates which element.
#include <algorithm>
#include <stdexcept>
#include <string>

#include "engine/cuda/cuda_check.h"
#include "engine/cuda/device_memory.h"
#include "engine/cuda/grid.h"
#include "engine/cuda/optimizer_kernels.h"
#include "engine/cuda/runtime.h"

namespace icd::cuda {
namespace {

template <class T>
__global__ void sgd_kernel(kernels::SgdUpdate<T> update, T* p, const T* g, T* buffer, int64_t n) {
  const int64_t stride = int64_t(blockDim.x) * gridDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    update(p[i], g[i], buffer ? buffer + i : nullptr);
}

template <class T>
__global__ void adamw_kernel(kernels::AdamWUpdate<T> update, T* p, const T* g, T* m, T* v, int64_t n) {
  const int64_t stride = int64_t(blockDim.x) * gridDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    update(p[i], g[i], m[i], v[i]);
}

template <class T>
__global__ void clip_kernel(T low, T high, T* g, int64_t n) {
  const int64_t stride = int64_t(blockDim.x) * gridDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    g[i] = kernels::clip_to(g[i], low, high);
}

void check(const char* op, DType dtype, int64_t n, int device) {
  if (n < 0) throw std::invalid_argument(std::string(op) + ": n < 0");
  if (dtype != DType::f32 && dtype != DType::f64)
    throw std::invalid_argument(std::string(op) + ": dtype " + dtype_name(dtype) +
                                " is not supported (f32 and f64 are)");
  use_device(op, device);
}

}  // namespace

void cuda_sgd_update(const kernels::SgdUpdate<double>& update, DType dtype, void* param, const void* grad,
                     void* momentum_buffer, int64_t n, int device) {
  check("cuda_sgd_update", dtype, n, device);
  if (n == 0) return;
  dispatch_floating(dtype, "cuda_sgd_update", [&](auto tag) {
    using T = decltype(tag);
    sgd_kernel<<<grid_blocks(n), kBlockThreads, 0, cuda_stream(device)>>>(
        update.as<T>(), static_cast<T*>(param), static_cast<const T*>(grad), static_cast<T*>(momentum_buffer),
        n);
  });
  ICD_CUDA_CHECK(cudaGetLastError());
}

void cuda_adamw_update(const kernels::AdamWUpdate<double>& update, DType dtype, void* param, const void* grad,
                       void* exp_avg, void* exp_avg_sq, int64_t n, int device) {
  check("cuda_adamw_update", dtype, n, device);
  if (n == 0) return;
  dispatch_floating(dtype, "cuda_adamw_update", [&](auto tag) {
    using T = decltype(tag);
    adamw_kernel<<<grid_blocks(n), kBlockThreads, 0, cuda_stream(device)>>>(
        update.as<T>(), static_cast<T*>(param), static_cast<const T*>(grad), static_cast<T*>(exp_avg),
        static_cast<T*>(exp_avg_sq), n);
  });
  ICD_CUDA_CHECK(cudaGetLastError());
}

void cuda_clip_by_value(double clip_value, DType dtype, void* grad, int64_t n, int device) {
  check("cuda_clip_by_value", dtype, n, device);
  if (n == 0) return;
  dispatch_floating(dtype, "cuda_clip_by_value", [&](auto tag) {
    using T = decltype(tag);
    clip_kernel<<<grid_blocks(n), kBlockThreads, 0, cuda_stream(device)>>>(T(-clip_value), T(clip_value),
                                                                           static_cast<T*>(grad), n);
  });
  ICD_CUDA_CHECK(cudaGetLastError());
}

}  // namespace icd::cuda
