// CUDA kernels for index_select and gather and their backward (engine/cuda/indexing.cu), running the
// bodies of engine/kernels/index_math.h. Host-only declarations with no CUDA headers. Every pointer is
// contiguous in the memory of `device` (index arrays are i64 and already checked to be in range); work is
// queued on the device's stream. The forward copies take any dtype (they move bits); the backward sums
// take f32 or f64 and add each dx element's contributions in a fixed order, without atomics.
// `op` names the caller in errors: std::invalid_argument for a dtype not taken, std::runtime_error when
// CUDA is unavailable or the launch fails.
#pragma once
#include <cstdint>

#include "engine/dtype.h"
#include "engine/kernels/index_math.h"

namespace icd::cuda {

// out [outer, K, inner] = x [outer, D, inner] at index[k] along the middle dimension.
void cuda_index_select(const char* op, DType dtype, const void* x, const int64_t* index, int64_t outer,
                       int64_t D, int64_t K, int64_t inner, void* out, int device);
// dx [outer, D, inner] from g [outer, K, inner]: the positions k with index[k] == j are
// positions[starts[j] .. starts[j + 1]) (kernels::group_by_target over D targets).
void cuda_index_select_backward(const char* op, DType dtype, const void* g, const int64_t* starts,
                                const int64_t* positions, int64_t outer, int64_t D, int64_t K, int64_t inner,
                                void* dx, int device);
// out (contiguous, layout.numel elements) per kernels::gather_element.
void cuda_gather(const char* op, DType dtype, const kernels::StridedLayout<2>& layout, const void* x,
                 const int64_t* index, int64_t dim_stride, void* out, int device);
// dx[q] for q < n per kernels::segment_sum_element.
void cuda_segment_sum(const char* op, DType dtype, const void* g, const int64_t* starts,
                      const int64_t* sources, int64_t n, void* dx, int device);

}  // namespace icd::cuda
