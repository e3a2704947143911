// The CUDA top-k of engine/ops/topk.h (engine/cuda/topk.cu). Host-only declarations with no CUDA headers.
#pragma once
#include <cstdint>

#include "engine/dtype.h"

namespace icd::cuda {

// x: n contiguous values of `dtype` (f32 or f64) on `device`; writes the k <= n largest to values (x's
// original values, largest first) and their indices to indices, ties by increasing index: keys
// (kernels::topk_key) and indices sorted by CUB's stable descending radix sort, the first k kept. Work is
// queued on the device's stream. n must be below 2^31 (CUB's item count).
void cuda_topk(const char* op, DType dtype, const void* x, int64_t n, int64_t k, void* values,
               int64_t* indices, int device);

}  // namespace icd::cuda
