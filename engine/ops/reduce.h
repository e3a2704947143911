// Reductions (engine/ops/reduce.cpp). `dims` may be negative; an empty `dims` means every dimension.
// With keepdim the reduced dimensions stay as size 1, so the result broadcasts against the input.
//
// The max/min family follows torch on the CPU: on ties the first index along the dimension wins, and a
// NaN counts as larger (max) or smaller (min) than everything, so it propagates, first NaN first.
// Reducing a dimension of size zero is an error (there is no maximum of nothing).
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

// The largest (smallest) element along `dim` and its position there, as an i64 tensor of the same shape.
// The gradient of `values` goes to the selected element only; `indices` carries no gradient.
struct ValuesIndices {
  Tensor values, indices;
};
ValuesIndices max(const Tensor& x, int64_t dim, bool keepdim = false);
ValuesIndices min(const Tensor& x, int64_t dim, bool keepdim = false);

// Largest (smallest) value over `dims` (all of them when empty). Unlike max(x, dim), tied maxima share
// the gradient equally, as torch.amax does.
Tensor amax(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
Tensor amin(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);

// Positions (i64, no gradient) of the largest (smallest) element along `dim`; without `dim`, the index
// into the flattened tensor, as a 0-d tensor.
Tensor argmax(const Tensor& x, int64_t dim, bool keepdim = false);
Tensor argmin(const Tensor& x, int64_t dim, bool keepdim = false);
Tensor argmax(const Tensor& x);
Tensor argmin(const Tensor& x);

// log(sum(exp(x))) along `dim`, computed as m + log(sum(exp(x - m))) with m the maximum, so large
// inputs do not overflow. Infinite maxima are handled as torch does (+inf in gives +inf out).
Tensor logsumexp(const Tensor& x, int64_t dim, bool keepdim = false);

// softmax(x)_i = exp(x_i - m) / sum_j exp(x_j - m) along `dim` (m the maximum: exact and overflow-free);
// log_softmax(x)_i = x_i - logsumexp(x). Both keep x's shape.
Tensor softmax(const Tensor& x, int64_t dim);
Tensor log_softmax(const Tensor& x, int64_t dim);

}  // namespace icd
