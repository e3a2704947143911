// CUDA kernels for the reductions along one dimension (engine/cuda/reduce_dim.cu), running the bodies of
// engine/kernels/reduce_dim.h: x is contiguous and seen as [outer, n, inner] by `layout`, and the
// per-lane results are contiguous [outer, inner]. Host-only declarations with no CUDA headers; pointers
// are in the memory of `device`, tensors of `dtype` (f32 or f64). Work is queued on the device's stream.
// `op` names the caller in errors: std::invalid_argument for another dtype, std::runtime_error when CUDA
// is unavailable or the launch fails. Deterministic: no atomics, the same result on every run.
#pragma once
#include <cstdint>

#include "engine/dtype.h"
#include "engine/kernels/reduce_dim.h"

namespace icd::cuda {

// The largest (is_max) or smallest element of each lane and its first index (NaN wins, first NaN
// first); values may be nullptr. layout.n >= 1.
void cuda_extreme_along(const char* op, DType dtype, bool is_max, const kernels::LaneLayout& layout,
                        const void* x, void* values, int64_t* indices, int device);
// dx [outer, n, inner] = g [outer, inner] at the indices, 0 elsewhere (max/min backward).
void cuda_scatter_along(const char* op, DType dtype, const kernels::LaneLayout& layout, const void* g,
                        const int64_t* indices, void* dx, int device);
// out [outer, inner] = logsumexp of each lane.
void cuda_logsumexp(const char* op, DType dtype, const kernels::LaneLayout& layout, const void* x, void* out,
                    int device);
// y [outer, n, inner] = softmax (log false) or log_softmax (log true) of each lane.
void cuda_softmax(const char* op, DType dtype, bool log, const kernels::LaneLayout& layout, const void* x,
                  void* y, int device);
// dx from g and the saved output y (all [outer, n, inner]).
void cuda_softmax_backward(const char* op, DType dtype, bool log, const kernels::LaneLayout& layout,
                           const void* g, const void* y, void* dx, int device);

}  // namespace icd::cuda
