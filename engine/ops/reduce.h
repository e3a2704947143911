// Reductions (engine/ops/reduce.cpp). `dims` may be negative; an empty `dims` means every dimension.
// With keepdim the reduced dimensions stay as size 1, so the result broadcasts against the input.
#pragma once
#include <vector>

#include "engine/tensor.h"

namespace icd {

Tensor sum(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim = false);
Tensor sum(const Tensor& x);  // all elements, a 0-d tensor
Tensor mean(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim = false);
Tensor mean(const Tensor& x);
// Sums x over the dimensions along which `shape` was broadcast to x's shape (the adjoint of expand).
Tensor sum_to(const Tensor& x, const Shape& shape);

}  // namespace icd
