// topk on the GPU: the keys (kernels::topk_key, the CPU's too) and their indices are sorted with CUB's
// radix sort, descending and stable, so equal keys keep increasing index order as the CPU's partial sort
// is told to; the first k indices then gather the original values. The temporary buffers come from the
// device's caching allocator and go back once the work is queued (stream order keeps that safe).
#include <cub/device/device_radix_sort.cuh>

#include <algorithm>
#include <climits>
#include <stdexcept>
#include <string>

#include "engine/cuda/cuda_check.h"
#include "engine/cuda/device_memory.h"
#include "engine/cuda/grid.h"
#include "engine/cuda/runtime.h"
#include "engine/cuda/topk_kernels.h"
#include "engine/kernels/sort_key.h"

namespace icd::cuda {
namespace {

template <class T>
__global__ void prepare_keys(const T* x, int64_t n, T* keys, int64_t* indices) {
  const int64_t stride = int64_t(blockDim.x) * gridDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    keys[i] = kernels::topk_key(x[i]);
    indices[i] = i;
  }
}

template <class T>
__global__ void gather_top(const T* x, const int64_t* sorted_indices, int64_t k, T* values,
                           int64_t* indices) {
  const int64_t stride = int64_t(blockDim.x) * gridDim.x;
  for (int64_t r = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; r < k; r += stride) {
    indices[r] = sorted_indices[r];
    values[r] = x[sorted_indices[r]];
  }
}

template <class T>
void topk_typed(const char* op, const T* x, int64_t n, int64_t k, T* values, int64_t* indices, int device) {
  cudaStream_t stream = cuda_stream(device);
  DeviceBuffer keys(device, sizeof(T) * n), keys_sorted(device, sizeof(T) * n);
  DeviceBuffer order(device, sizeof(int64_t) * n), order_sorted(device, sizeof(int64_t) * n);
  prepare_keys<<<grid_blocks(n), kBlockThreads, 0, stream>>>(x, n, keys.as<T>(), order.as<int64_t>());
  ICD_CUDA_CHECK(cudaGetLastError());
  std::size_t temp_bytes = 0;
  ICD_CUDA_CHECK(cub::DeviceRadixSort::SortPairsDescending(
      nullptr, temp_bytes, keys.as<T>(), keys_sorted.as<T>(), order.as<int64_t>(), order_sorted.as<int64_t>(),
      static_cast<int>(n), 0, int(sizeof(T) * 8), stream));
  DeviceBuffer temp(device, std::max<std::size_t>(temp_bytes, 1));  // never null: null asks for the size
  ICD_CUDA_CHECK(cub::DeviceRadixSort::SortPairsDescending(
      temp.as<void>(), temp_bytes, keys.as<T>(), keys_sorted.as<T>(), order.as<int64_t>(),
      order_sorted.as<int64_t>(), static_cast<int>(n), 0, int(sizeof(T) * 8), stream));
  if (k > 0) {
    gather_top<<<grid_blocks(k), kBlockThreads, 0, stream>>>(x, order_sorted.as<int64_t>(), k, values,
                                                             indices);
    ICD_CUDA_CHECK(cudaGetLastError());
  }
}

}  // namespace

void cuda_topk(const char* op, DType dtype, const void* x, int64_t n, int64_t k, void* values,
               int64_t* indices, int device) {
  if (dtype != DType::f32 && dtype != DType::f64)
    throw std::invalid_argument(std::string(op) + " (CUDA): dtype " + dtype_name(dtype) +
                                " is not supported (f32 and f64 are)");
  if (n >= INT_MAX)
    throw std::invalid_argument(std::string(op) + " (CUDA): " + std::to_string(n) +
                                " elements exceed CUB's 32-bit item count");
  use_device(op, device);
  if (n == 0) return;
  if (dtype == DType::f32)
    topk_typed(op, static_cast<const float*>(x), n, k, static_cast<float*>(values), indices, device);
  else
    topk_typed(op, static_cast<const double*>(x), n, k, static_cast<double*>(values), indices, device);
}

}  // namespace icd::cuda
