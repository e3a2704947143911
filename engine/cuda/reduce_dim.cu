// CUDA kernels for the reductions along one dimension: max/min with indices, logsumexp, softmax,
// log_softmax and their backward, running the ICD_HD bodies of engine/kernels/reduce_dim.h.
//
// A block is threads x lanes_per_block threads (threads * lanes_per_block = kBlockThreads), and each of
// its lanes_per_block lanes gets `threads` threads: thread t takes the lane's elements t, t + threads,
// ..., and the partial results combine in a fixed shared-memory tree. Short lanes get one thread each
// (the CPU's serial order exactly); `threads` grows with the lane's length. The plan depends on the
// shapes alone and nothing is atomic, so every run gives the same bits.
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "engine/cuda/cuda_check.h"
#include "engine/cuda/device_memory.h"
#include "engine/cuda/reduce_dim_kernels.h"
#include "engine/cuda/runtime.h"

namespace icd::cuda {
namespace {
constexpr int kBlockThreads = 256;
constexpr int64_t kElementsPerThread = 16;  // a lane gets more threads only beyond this many elements each
constexpr int64_t kMaxBlocks = 65535;       // the grid-stride loops cover the rest

using kernels::LaneLayout;

// Combines the `threads` partials of one lane, part[base .. base + threads), pairwise in the fixed order
// s = threads/2, ..., 1: part[t] = combine(part[t], part[t + s]), and returns the result to every thread.
// Every thread of the block calls it (it synchronises the block).
template <class V, class Combine>
__device__ V combine_in_tree(V* part, int base, int t, int threads, const V& mine, Combine combine) {
  part[base + t] = mine;
  __syncthreads();
  for (int s = threads / 2; s > 0; s >>= 1) {
    if (t < s) part[base + t] = combine(part[base + t], part[base + t + s]);
    __syncthreads();
  }
  const V result = part[base];
  __syncthreads();  // everyone has read it before the array is reused
  return result;
}

template <bool kMax, class T>
struct CombineExtremes {
  __device__ kernels::ExtremeAt<T> operator()(const kernels::ExtremeAt<T>& a,
                                              const kernels::ExtremeAt<T>& b) const {
    return kernels::combine_extremes<kMax>(a, b);
  }
};
template <class T>
struct Larger {  // partial maxima are never NaN (max_of_lane ignores NaN)
  __device__ T operator()(T a, T b) const { return b > a ? b : a; }
};
struct Plus {
  __device__ double operator()(double a, double b) const { return a + b; }
};

template <bool kMax, class T>
__global__ void extreme_kernel(LaneLayout layout, const T* x, T* values, int64_t* indices) {
  __shared__ kernels::ExtremeAt<T> part[kBlockThreads];
  const int threads = blockDim.x, t = threadIdx.x, base = threadIdx.y * blockDim.x;
  // Every thread of the block runs the same rounds (the trees synchronise the whole block).
  for (int64_t first = int64_t(blockIdx.x) * blockDim.y; first < layout.lanes();
       first += int64_t(gridDim.x) * blockDim.y) {
    const int64_t lane = first + threadIdx.y;
    const bool active = lane < layout.lanes();
    kernels::ExtremeAt<T> mine{T(0), -1};
    if (active)
      mine = kernels::extreme_of_lane<kMax>(x + layout.start(lane), layout.inner, t, layout.n, threads);
    const kernels::ExtremeAt<T> best =
        combine_in_tree(part, base, t, threads, mine, CombineExtremes<kMax, T>{});
    if (t == 0 && active) {
      if (values) values[lane] = best.value;
      indices[lane] = best.index;
    }
  }
}

template <class T>
__global__ void scatter_along_kernel(LaneLayout layout, const T* g, const int64_t* indices, T* dx) {
  const int64_t numel = layout.outer * layout.n * layout.inner;
  const int64_t stride = int64_t(blockDim.x) * gridDim.x;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < numel; e += stride)
    dx[e] = kernels::scatter_along_element(g, indices, layout, e);
}

// The shift (the lane's maximum, made finite by exp_shift) and the sum of exp(x - shift) of a lane.
template <class T>
struct ShiftAndSum {
  T shift;
  double exp_sum;
};

template <class T>
__device__ ShiftAndSum<T> shift_and_sum(const LaneLayout& layout, const T* lane_x, bool active, int base,
                                        int t, int threads, T* maxima, double* sums) {
  const T maximum = combine_in_tree(
      maxima, base, t, threads,
      active ? kernels::max_of_lane(lane_x, layout.inner, t, layout.n, threads) : -T(INFINITY), Larger<T>{});
  const T shift = kernels::exp_shift(maximum);
  const double exp_sum = combine_in_tree(
      sums, base, t, threads,
      active ? kernels::sum_exp_of_lane(lane_x, layout.inner, shift, t, layout.n, threads) : 0.0, Plus{});
  return {shift, exp_sum};
}

template <class T>
__global__ void logsumexp_kernel(LaneLayout layout, const T* x, T* out) {
  __shared__ T maxima[kBlockThreads];
  __shared__ double sums[kBlockThreads];
  const int threads = blockDim.x, t = threadIdx.x, base = threadIdx.y * blockDim.x;
  // Every thread of the block runs the same rounds (the trees synchronise the whole block).
  for (int64_t first = int64_t(blockIdx.x) * blockDim.y; first < layout.lanes();
       first += int64_t(gridDim.x) * blockDim.y) {
    const int64_t lane = first + threadIdx.y;
    const bool active = lane < layout.lanes();
    const T* lane_x = x + (active ? layout.start(lane) : 0);
    const ShiftAndSum<T> r = shift_and_sum(layout, lane_x, active, base, t, threads, maxima, sums);
    if (t == 0 && active) out[lane] = kernels::logsumexp_of(r.shift, r.exp_sum);
  }
}

template <bool kLog, class T>
__global__ void softmax_kernel(LaneLayout layout, const T* x, T* y) {
  __shared__ T maxima[kBlockThreads];
  __shared__ double sums[kBlockThreads];
  const int threads = blockDim.x, t = threadIdx.x, base = threadIdx.y * blockDim.x;
  // Every thread of the block runs the same rounds (the trees synchronise the whole block).
  for (int64_t first = int64_t(blockIdx.x) * blockDim.y; first < layout.lanes();
       first += int64_t(gridDim.x) * blockDim.y) {
    const int64_t lane = first + threadIdx.y;
    const bool active = lane < layout.lanes();
    const int64_t start = active ? layout.start(lane) : 0;
    const ShiftAndSum<T> r = shift_and_sum(layout, x + start, active, base, t, threads, maxima, sums);
    if (active)
      kernels::softmax_write_lane<kLog>(x + start, y + start, layout.inner, r.shift,
                                        kernels::softmax_finish<kLog, T>(r.exp_sum), t, layout.n, threads);
  }
}

template <bool kLog, class T>
__global__ void softmax_backward_kernel(LaneLayout layout, const T* g, const T* y, T* dx) {
  __shared__ double sums[kBlockThreads];
  const int threads = blockDim.x, t = threadIdx.x, base = threadIdx.y * blockDim.x;
  // Every thread of the block runs the same rounds (the trees synchronise the whole block).
  for (int64_t first = int64_t(blockIdx.x) * blockDim.y; first < layout.lanes();
       first += int64_t(gridDim.x) * blockDim.y) {
    const int64_t lane = first + threadIdx.y;
    const bool active = lane < layout.lanes();
    const int64_t start = active ? layout.start(lane) : 0;
    const double total = combine_in_tree(
        sums, base, t, threads,
        active ? kernels::softmax_backward_sum<kLog>(g + start, y + start, layout.inner, t, layout.n, threads)
               : 0.0,
        Plus{});
    if (active)
      kernels::softmax_backward_write<kLog>(g + start, y + start, dx + start, layout.inner,
                                            static_cast<T>(total), t, layout.n, threads);
  }
}

// threads per lane (a power of two, at most kBlockThreads) x lanes per block.
dim3 lane_block(int64_t n) {
  int threads = 1;
  while (threads < kBlockThreads && threads * kElementsPerThread < n)
    threads *= 2;
  return dim3(threads, kBlockThreads / threads);
}

int lane_grid(int64_t lanes, const dim3& block) {
  const int64_t rounds = (lanes + block.y - 1) / block.y;
  return int(std::max<int64_t>(1, std::min(rounds, kMaxBlocks)));
}

// Checks the dtype, selects the device; false when there is nothing to compute.
bool prepare(const char* op, DType dtype, const LaneLayout& layout, int device) {
  if (dtype != DType::f32 && dtype != DType::f64)
    throw std::invalid_argument(std::string(op) + " (CUDA): dtype " + dtype_name(dtype) +
                                " is not supported (f32 and f64 are)");
  if (layout.outer < 0 || layout.n < 0 || layout.inner < 0)
    throw std::invalid_argument(std::string(op) + " (CUDA): negative lane layout");
  use_device(op, device);
  return layout.lanes() > 0;  // n may be 0: logsumexp of nothing is -inf, the other kernels write nothing
}
}  // namespace

void cuda_extreme_along(const char* op, DType dtype, bool is_max, const LaneLayout& layout, const void* x,
                        void* values, int64_t* indices, int device) {
  if (!prepare(op, dtype, layout, device)) return;
  const dim3 block = lane_block(layout.n);
  const int grid = lane_grid(layout.lanes(), block);
  cudaStream_t stream = cuda_stream(device);
  dispatch_floating(dtype, op, [&](auto tag) {
    using T = decltype(tag);
    if (is_max)
      extreme_kernel<true>
          <<<grid, block, 0, stream>>>(layout, static_cast<const T*>(x), static_cast<T*>(values), indices);
    else
      extreme_kernel<false>
          <<<grid, block, 0, stream>>>(layout, static_cast<const T*>(x), static_cast<T*>(values), indices);
  });
  ICD_CUDA_CHECK(cudaGetLastError());
}

void cuda_scatter_along(const char* op, DType dtype, const LaneLayout& layout, const void* g,
                        const int64_t* indices, void* dx, int device) {
  if (!prepare(op, dtype, layout, device)) return;
  const int64_t numel = layout.outer * layout.n * layout.inner;
  if (numel == 0) return;
  const int grid = int(std::min<int64_t>((numel + kBlockThreads - 1) / kBlockThreads, kMaxBlocks));
  dispatch_floating(dtype, op, [&](auto tag) {
    using T = decltype(tag);
    scatter_along_kernel<<<grid, kBlockThreads, 0, cuda_stream(device)>>>(layout, static_cast<const T*>(g),
                                                                          indices, static_cast<T*>(dx));
  });
  ICD_CUDA_CHECK(cudaGetLastError());
}

void cuda_logsumexp(const char* op, DType dtype, const LaneLayout& layout, const void* x, void* out,
                    int device) {
  if (!prepare(op, dtype, layout, device)) return;
  const dim3 block = lane_block(layout.n);
  dispatch_floating(dtype, op, [&](auto tag) {
    using T = decltype(tag);
    logsumexp_kernel<<<lane_grid(layout.lanes(), block), block, 0, cuda_stream(device)>>>(
        layout, static_cast<const T*>(x), static_cast<T*>(out));
  });
  ICD_CUDA_CHECK(cudaGetLastError());
}

void cuda_softmax(const char* op, DType dtype, bool log, const LaneLayout& layout, const void* x, void* y,
                  int device) {
  if (!prepare(op, dtype, layout, device)) return;
  const dim3 block = lane_block(layout.n);
  const int grid = lane_grid(layout.lanes(), block);
  cudaStream_t stream = cuda_stream(device);
  dispatch_floating(dtype, op, [&](auto tag) {
    using T = decltype(tag);
    if (log)
      softmax_kernel<true><<<grid, block, 0, stream>>>(layout, static_cast<const T*>(x), static_cast<T*>(y));
    else
      softmax_kernel<false><<<grid, block, 0, stream>>>(layout, static_cast<const T*>(x), static_cast<T*>(y));
  });
  ICD_CUDA_CHECK(cudaGetLastError());
}

void cuda_softmax_backward(const char* op, DType dtype, bool log, const LaneLayout& layout, const void* g,
                           const void* y, void* dx, int device) {
  if (!prepare(op, dtype, layout, device)) return;
  const dim3 block = lane_block(layout.n);
  const int grid = lane_grid(layout.lanes(), block);
  cudaStream_t stream = cuda_stream(device);
  dispatch_floating(dtype, op, [&](auto tag) {
    using T = decltype(tag);
    const T* gp = static_cast<const T*>(g);
    const T* yp = static_cast<const T*>(y);
    if (log)
      softmax_backward_kernel<true><<<grid, block, 0, stream>>>(layout, gp, yp, static_cast<T*>(dx));
    else
      softmax_backward_kernel<false><<<grid, block, 0, stream>>>(layout, gp, yp, static_cast<T*>(dx));
  });
  ICD_CUDA_CHECK(cudaGetLastError());
}

}  // namespace icd::cuda
