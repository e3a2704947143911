// Ops that move data between shapes without arithmetic (engine/ops/shape.cpp), with torch's semantics:
// concatenation, stacking, splitting, gathering by index, constant padding. They work for f32, f64 and
// i64 tensors; gradients flow to every floating input. Index tensors are i64; an index outside the
// indexed dimension (negative ones included) is an std::out_of_range error naming the op.
#pragma once
#include <vector>

#include "engine/tensor.h"

namespace icd {

// Joins tensors along `dim`; all share dtype, device and every size but dim's. A new tensor.
Tensor cat(const std::vector<Tensor>& tensors, int64_t dim = 0);
// Joins same-shaped tensors along a new dimension `dim` (in [-(ndim + 1), ndim]).
Tensor stack(const std::vector<Tensor>& tensors, int64_t dim = 0);

// Views (narrow) of x along `dim`: chunks of split_size, the last one smaller if the size does not
// divide. Note that split(x, {5}, d) picks this overload (split_size 5), not the next.
std::vector<Tensor> split(const Tensor& x, int64_t split_size, int64_t dim = 0);
// Views of x along `dim` with the given sizes, which must sum to x.size(dim).
std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim = 0);

// out = x with dimension `dim` replaced by the entries index[k] (index: 1-D, or 0-D for one entry).
Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index);
// out has index's shape; out[..., k, ...] = x[..., index[..., k, ...], ...] along `dim`, the other
// coordinates shared. index has x's number of dims and index.size(d) <= x.size(d) for d != dim.
Tensor gather(const Tensor& x, int64_t dim, const Tensor& index);

// Pads with `value`: pads = {left, right} for the last dim, then {top, bottom} for the one before, ...
// (torch.nn.functional.pad order, at most 2 per dim). Negative amounts crop, as in torch.
Tensor pad(const Tensor& x, const std::vector<int64_t>& pads, double value = 0.0);

}  // namespace icd
