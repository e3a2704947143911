// Grid-stride CUDA kernels for index_select, gather and their backward: a thread per output element,
// running the ICD_HD bodies of engine/kernels/index_math.h. The backward kernels gather each dx element's
// contributions in the order the host grouped them (ascending, as the CPU adds them): no atomics, so the
// sums are the CPU's bit for bit and the same on every run.
#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "engine/cuda/cuda_check.h"
#include "engine/cuda/device_memory.h"
#include "engine/cuda/grid.h"
#include "engine/cuda/indexing_kernels.h"
#include "engine/cuda/runtime.h"

namespace icd::cuda {
namespace {

template <class T>
__global__ void index_select_kernel(const T* x, const int64_t* index, int64_t D, int64_t K, int64_t inner,
                                    int64_t n, T* out) {
  const int64_t stride = int64_t(blockDim.x) * gridDim.x;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < n; e += stride)
    kernels::index_select_element(x, index, D, K, inner, e, out);
}

template <class T>
__global__ void index_select_backward_kernel(const T* g, const int64_t* starts, const int64_t* positions,
                                             int64_t D, int64_t K, int64_t inner, int64_t n, T* dx) {
  const int64_t stride = int64_t(blockDim.x) * gridDim.x;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < n; e += stride)
    dx[e] = kernels::index_select_backward_element(g, starts, positions, D, K, inner, e);
}

template <class T>
__global__ void gather_kernel(kernels::StridedLayout<2> layout, const T* x, const int64_t* index,
                              int64_t dim_stride, T* out) {
  const int64_t stride = int64_t(blockDim.x) * gridDim.x;
  for (int64_t p = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; p < layout.numel; p += stride)
    kernels::gather_element(x, index, layout, dim_stride, p, out);
}

template <class T>
__global__ void segment_sum_kernel(const T* g, const int64_t* starts, const int64_t* sources, int64_t n,
                                   T* dx) {
  const int64_t stride = int64_t(blockDim.x) * gridDim.x;
  for (int64_t q = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; q < n; q += stride)
    dx[q] = kernels::segment_sum_element(g, starts, sources, q);
}

// Calls f with the unsigned integer type of the dtype's size: the forward copies move bits.
template <class F>
void dispatch_bits(DType dtype, F&& f) {
  switch (dtype_size(dtype)) {
    case 2:
      return f(uint16_t{});
    case 4:
      return f(uint32_t{});
    default:
      return f(uint64_t{});
  }
}

void require_floating(const char* op, DType dtype) {
  if (dtype != DType::f32 && dtype != DType::f64)
    throw std::invalid_argument(std::string(op) + " (CUDA): dtype " + dtype_name(dtype) +
                                " is not supported (f32 and f64 are)");
}
}  // namespace

void cuda_index_select(const char* op, DType dtype, const void* x, const int64_t* index, int64_t outer,
                       int64_t D, int64_t K, int64_t inner, void* out, int device) {
  use_device(op, device);
  const int64_t n = outer * K * inner;
  if (n == 0) return;
  dispatch_bits(dtype, [&](auto tag) {
    using T = decltype(tag);
    index_select_kernel<<<grid_blocks(n), kBlockThreads, 0, cuda_stream(device)>>>(
        static_cast<const T*>(x), index, D, K, inner, n, static_cast<T*>(out));
  });
  ICD_CUDA_CHECK(cudaGetLastError());
}

void cuda_index_select_backward(const char* op, DType dtype, const void* g, const int64_t* starts,
                                const int64_t* positions, int64_t outer, int64_t D, int64_t K, int64_t inner,
                                void* dx, int device) {
  require_floating(op, dtype);
  use_device(op, device);
  const int64_t n = outer * D * inner;
  if (n == 0) return;
  dispatch_floating(dtype, op, [&](auto tag) {
    using T = decltype(tag);
    index_select_backward_kernel<<<grid_blocks(n), kBlockThreads, 0, cuda_stream(device)>>>(
        static_cast<const T*>(g), starts, positions, D, K, inner, n, static_cast<T*>(dx));
  });
  ICD_CUDA_CHECK(cudaGetLastError());
}

void cuda_gather(const char* op, DType dtype, const kernels::StridedLayout<2>& layout, const void* x,
                 const int64_t* index, int64_t dim_stride, void* out, int device) {
  use_device(op, device);
  if (layout.numel == 0) return;
  dispatch_bits(dtype, [&](auto tag) {
    using T = decltype(tag);
    gather_kernel<<<grid_blocks(layout.numel), kBlockThreads, 0, cuda_stream(device)>>>(
        layout, static_cast<const T*>(x), index, dim_stride, static_cast<T*>(out));
  });
  ICD_CUDA_CHECK(cudaGetLastError());
}

void cuda_segment_sum(const char* op, DType dtype, const void* g, const int64_t* starts,
                      const int64_t* sources, int64_t n, void* dx, int device) {
  require_floating(op, dtype);
  use_device(op, device);
  if (n == 0) return;
  dispatch_floating(dtype, op, [&](auto tag) {
    using T = decltype(tag);
    segment_sum_kernel<<<grid_blocks(n), kBlockThreads, 0, cuda_stream(device)>>>(
        static_cast<const T*>(g), starts, sources, n, static_cast<T*>(dx));
  });
  ICD_CUDA_CHECK(cudaGetLastError());
}

}  // namespace icd::cuda
