// Grid-stride CUDA kernels for pooling. Thread k computes output element k (forward) or input element k
// (backward, a gather: no atomics) with the ICD_HD bodies of engine/kernels/pool_math.h; this file only
// decides which thread computes which element.
#include <algorithm>
#include <stdexcept>
#include <string>

#include "engine/cuda/cuda_check.h"
#include "engine/cuda/device_memory.h"
#include "engine/cuda/grid.h"
#include "engine/cuda/pool_kernels.h"
#include "engine/cuda/runtime.h"

namespace icd::cuda {
namespace {

template <class T>
__global__ void max_pool_kernel(kernels::PoolGeometry g, const T* x, T* y, int64_t* argmax) {
  const int64_t n = g.out_numel(), stride = int64_t(blockDim.x) * gridDim.x;
  for (int64_t o = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; o < n; o += stride)
    kernels::max_pool_element(x, g, o, y, argmax);
}

template <class T>
__global__ void max_pool_grad_kernel(kernels::PoolGeometry g, const T* grad_out, const int64_t* argmax,
                                     T* grad_x) {
  const int64_t n = g.in_numel(), stride = int64_t(blockDim.x) * gridDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    grad_x[i] = kernels::max_pool_grad_element(grad_out, argmax, g, i);
}

template <class T>
__global__ void avg_pool_kernel(kernels::PoolGeometry g, const T* x, T* y) {
  const int64_t n = g.out_numel(), stride = int64_t(blockDim.x) * gridDim.x;
  for (int64_t o = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; o < n; o += stride)
    y[o] = kernels::avg_pool_element(x, g, o);
}

template <class T>
__global__ void avg_pool_grad_kernel(kernels::PoolGeometry g, const T* grad_out, T* grad_x) {
  const int64_t n = g.in_numel(), stride = int64_t(blockDim.x) * gridDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    grad_x[i] = kernels::avg_pool_grad_element(grad_out, g, i);
}

// Checks the dtype and makes the device current; false when there is nothing to compute.
bool prepare(const char* op, DType dtype, int64_t n, int device) {
  if (dtype != DType::f32 && dtype != DType::f64)
    throw std::invalid_argument(std::string(op) + ": dtype " + dtype_name(dtype) +
                                " is not supported (f32 and f64 are)");
  use_device(op, device);
  return n > 0;
}

}  // namespace

void cuda_max_pool2d(const kernels::PoolGeometry& g, DType dtype, const void* x, void* y, int64_t* argmax,
                     int device) {
  const char* op = "max_pool2d (CUDA)";
  if (!prepare(op, dtype, g.out_numel(), device)) return;
  dispatch_floating(dtype, op, [&](auto tag) {
    using T = decltype(tag);
    max_pool_kernel<<<grid_blocks(g.out_numel()), kBlockThreads, 0, cuda_stream(device)>>>(
        g, static_cast<const T*>(x), static_cast<T*>(y), argmax);
  });
  ICD_CUDA_CHECK(cudaGetLastError());
}

void cuda_max_pool2d_backward(const kernels::PoolGeometry& g, DType dtype, const void* grad_out,
                              const int64_t* argmax, void* grad_x, int device) {
  const char* op = "max_pool2d backward (CUDA)";
  if (!prepare(op, dtype, g.in_numel(), device)) return;
  dispatch_floating(dtype, op, [&](auto tag) {
    using T = decltype(tag);
    max_pool_grad_kernel<<<grid_blocks(g.in_numel()), kBlockThreads, 0, cuda_stream(device)>>>(
        g, static_cast<const T*>(grad_out), argmax, static_cast<T*>(grad_x));
  });
  ICD_CUDA_CHECK(cudaGetLastError());
}

void cuda_avg_pool2d(const kernels::PoolGeometry& g, DType dtype, const void* x, void* y, int device) {
  const char* op = "avg_pool2d (CUDA)";
  if (!prepare(op, dtype, g.out_numel(), device)) return;
  dispatch_floating(dtype, op, [&](auto tag) {
    using T = decltype(tag);
    avg_pool_kernel<<<grid_blocks(g.out_numel()), kBlockThreads, 0, cuda_stream(device)>>>(
        g, static_cast<const T*>(x), static_cast<T*>(y));
  });
  ICD_CUDA_CHECK(cudaGetLastError());
}

void cuda_avg_pool2d_backward(const kernels::PoolGeometry& g, DType dtype, const void* grad_out, void* grad_x,
                              int device) {
  const char* op = "avg_pool2d backward (CUDA)";
  if (!prepare(op, dtype, g.in_numel(), device)) return;
  dispatch_floating(dtype, op, [&](auto tag) {
    using T = decltype(tag);
    avg_pool_grad_kernel<<<grid_blocks(g.in_numel()), kBlockThreads, 0, cuda_stream(device)>>>(
        g, static_cast<const T*>(grad_out), static_cast<T*>(grad_x));
  });
  ICD_CUDA_CHECK(cudaGetLastError());
}

}  // namespace icd::cuda
