// Deterministic sums on the GPU, following kernels::plan_sum (engine/kernels/reduce_sum.h): a block per
// (output, chunk) whose threads each sum a strided share of the chunk and then combine in a fixed
// shared-memory tree; a second kernel adds the chunks of each output in order. Or, for short outputs,
// one thread per output. No atomics, so the order (and the result) is the same on every run, and the
// CPU launch cpu_launch_sum reproduces it exactly.
#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "engine/cuda/cuda_check.h"
#include "engine/cuda/device_memory.h"
#include "engine/cuda/runtime.h"
#include "engine/cuda/strided_kernels.h"

namespace icd::cuda {
namespace {
constexpr int64_t kMaxBlocks = 65535;  // grid-stride loops cover the rest
constexpr int kSerialThreads = 256;

template <class T>
__global__ void sum_serial_kernel(const T* x, kernels::SumLayout layout, T* out) {
  const int64_t stride = int64_t(blockDim.x) * gridDim.x;
  const int64_t per_output = layout.inner.numel;
  for (int64_t o = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; o < layout.outer.numel; o += stride)
    out[o] = static_cast<T>(kernels::sum_strided_range<double>(x, layout, o, 0, per_output, 1));
}

// Block b sums chunk b % chunks of output b / chunks; blockDim.x == plan.threads (a power of two).
template <class T>
__global__ void sum_chunks_kernel(const T* x, kernels::SumLayout layout, int64_t chunks, int64_t chunk_length,
                                  double* partials, T* out) {
  extern __shared__ double partial[];
  const int t = threadIdx.x;
  const int64_t per_output = layout.inner.numel;
  const int64_t blocks = layout.outer.numel * chunks;
  for (int64_t b = blockIdx.x; b < blocks; b += gridDim.x) {
    const int64_t o = b / chunks, begin = (b % chunks) * chunk_length;
    const int64_t end = begin + chunk_length < per_output ? begin + chunk_length : per_output;
    partial[t] = kernels::sum_strided_range<double>(x, layout, o, begin + t, end, blockDim.x);
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
      if (t < s) partial[t] += partial[t + s];
      __syncthreads();
    }
    if (t == 0) {
      if (chunks == 1)
        out[o] = static_cast<T>(partial[0]);
      else
        partials[b] = partial[0];
    }
    __syncthreads();  // partial[0] is read before the next block index overwrites it
  }
}

template <class T>
__global__ void sum_partials_kernel(const double* partials, int64_t outputs, int64_t chunks, T* out) {
  const int64_t stride = int64_t(blockDim.x) * gridDim.x;
  for (int64_t o = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; o < outputs; o += stride) {
    double total = 0;
    for (int64_t c = 0; c < chunks; ++c)
      total += partials[o * chunks + c];
    out[o] = static_cast<T>(total);
  }
}

int grid(int64_t items, int64_t per_block) {
  return int(std::max<int64_t>(1, std::min<int64_t>((items + per_block - 1) / per_block, kMaxBlocks)));
}
}  // namespace

void cuda_sum(const char* op, DType dtype, const kernels::SumLayout& layout, const void* x, void* out,
              int device) {
  if (dtype != DType::f32 && dtype != DType::f64)
    throw std::invalid_argument(std::string(op) + " (CUDA): dtype " + dtype_name(dtype) +
                                " is not supported (f32 and f64 are)");
  use_device(op, device);
  const int64_t outputs = layout.outer.numel;
  if (outputs == 0) return;
  const kernels::SumPlan plan = kernels::plan_sum(outputs, layout.inner.numel);
  cudaStream_t stream = cuda_stream(device);
  dispatch_floating(dtype, op, [&](auto tag) {
    using T = decltype(tag);
    const T* src = static_cast<const T*>(x);
    T* dst = static_cast<T*>(out);
    if (plan.threads == 1) {
      sum_serial_kernel<<<grid(outputs, kSerialThreads), kSerialThreads, 0, stream>>>(src, layout, dst);
      ICD_CUDA_CHECK(cudaGetLastError());
      return;
    }
    const std::size_t shared = sizeof(double) * std::size_t(plan.threads);
    if (plan.chunks == 1) {
      sum_chunks_kernel<<<grid(outputs, 1), plan.threads, shared, stream>>>(src, layout, 1, plan.chunk_length,
                                                                            nullptr, dst);
      ICD_CUDA_CHECK(cudaGetLastError());
      return;
    }
    // The partials are released to the caching allocator right after the launches are queued: the
    // allocator hands memory out again only to work queued later on this same stream.
    CachingAllocator& allocator = cuda_caching_allocator(device);
    const int64_t blocks = outputs * plan.chunks;
    auto* partials = static_cast<double*>(allocator.allocate(sizeof(double) * std::size_t(blocks)));
    sum_chunks_kernel<<<grid(blocks, 1), plan.threads, shared, stream>>>(src, layout, plan.chunks,
                                                                         plan.chunk_length, partials, dst);
    cudaError_t launched = cudaGetLastError();
    if (launched == cudaSuccess) {
      sum_partials_kernel<<<grid(outputs, kSerialThreads), kSerialThreads, 0, stream>>>(partials, outputs,
                                                                                        plan.chunks, dst);
      launched = cudaGetLastError();
    }
    allocator.release(partials);
    ICD_CUDA_CHECK(launched);
  });
}

}  // namespace icd::cuda
