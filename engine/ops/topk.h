// The k largest elements of a 1-D tensor (engine/ops/topk.cpp), as torch.topk(x, k, sorted=True):
// values largest first and their indices (i64). Equal values come in increasing index order, the order
// of a stable sort, on both devices; NaN ranks above every number, and -0 ties with +0
// (engine/kernels/sort_key.h). k larger than the length is clamped to it.
//
// No gradient (the result is detached): detectors use it to pick candidates, after which nothing flows
// back. f32 or f64, on the CPU (a partial sort, O(n log k)) or CUDA (CUB's radix sort of the whole
// tensor). Throws std::invalid_argument for a tensor that is not 1-D or a negative k.
#pragma once
#include <cstdint>

#include "engine/ops/reduce.h"

namespace icd {

ValuesIndices topk(const Tensor& x, int64_t k);

}  // namespace icd
