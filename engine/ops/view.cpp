// Views: new shapes and strides over the same storage, no data moved. Each is differentiable, and its
// backward is the inverse rearrangement of the gradient:
//   reshape/view/unsqueeze/squeeze/flatten: reshape g back      permute: permute g by the inverse
//   narrow/select: g into a zero tensor at the same place      expand: sum g over the expanded dims
//   contiguous/clone: g itself                                   to(dtype): g converted back
#include <numeric>
#include <stdexcept>

#include "engine/autograd.h"
#include "engine/factory.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/reduce.h"
#include "engine/tensor.h"

namespace icd {
namespace {

Tensor make_view(const Tensor& base, Shape shape, Shape strides, int64_t offset) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = base.impl()->storage;
  impl->shape = std::move(shape);
  impl->strides = std::move(strides);
  impl->offset = offset;
  impl->dtype = base.dtype();
  return Tensor(std::move(impl));
}

// Resolves one -1 entry so the shape holds exactly `numel` elements.
Shape infer_shape(Shape shape, int64_t numel, const char* op) {
  int64_t known = 1, infer_at = -1;
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      if (infer_at >= 0)
        throw std::invalid_argument(std::string(op) + ": more than one -1 in " + shape_str(shape));
      infer_at = static_cast<int64_t>(i);
    } else {
      known *= shape[i];
    }
  }
  if (infer_at >= 0 && known != 0 && numel % known == 0) shape[infer_at] = numel / known;
  if (shape_numel(shape) != numel)
    throw std::invalid_argument(std::string(op) + ": shape " + shape_str(shape) + " is invalid for " +
                                std::to_string(numel) + " elements");
  return shape;
}

void record_reshape_back(Tensor& out, const char* op, const Tensor& x) {
  autograd::record(out, op, {x}, [shape = x.shape()](const Tensor& g) -> std::vector<Tensor> {
    return {g.reshape(shape)};
  });
}

}  // namespace

Tensor Tensor::view(Shape new_shape) const {
  new_shape = infer_shape(std::move(new_shape), numel(), "view");
  if (!is_contiguous())
    throw std::invalid_argument("view: tensor of shape " + shape_str(shape()) +
                                " is not contiguous; use reshape() to copy");
  Tensor out = make_view(*this, new_shape, contiguous_strides(new_shape), offset());
  record_reshape_back(out, "view", *this);
  return out;
}

Tensor Tensor::reshape(Shape new_shape) const {
  if (is_contiguous()) return view(std::move(new_shape));
  return contiguous().view(std::move(new_shape));
}

Tensor Tensor::permute(const std::vector<int64_t>& dims) const {
  if (static_cast<int64_t>(dims.size()) != dim())
    throw std::invalid_argument("permute: " + std::to_string(dims.size()) + " dims for a tensor of " +
                                std::to_string(dim()));
  Shape new_shape(dim()), new_strides(dim());
  std::vector<int64_t> inverse(dim(), -1);
  for (int64_t i = 0; i < dim(); ++i) {
    int64_t d = wrap_dim(dims[i], dim(), "permute");
    if (inverse[d] >= 0) throw std::invalid_argument("permute: dimension repeated");
    inverse[d] = i;
    new_shape[i] = shape()[d];
    new_strides[i] = strides()[d];
  }
  Tensor out = make_view(*this, new_shape, new_strides, offset());
  autograd::record(out, "permute", {*this},
                   [inverse](const Tensor& g) -> std::vector<Tensor> { return {g.permute(inverse)}; });
  return out;
}

Tensor Tensor::transpose(int64_t dim0, int64_t dim1) const {
  std::vector<int64_t> dims(dim());
  std::iota(dims.begin(), dims.end(), 0);
  std::swap(dims[wrap_dim(dim0, dim(), "transpose")], dims[wrap_dim(dim1, dim(), "transpose")]);
  return permute(dims);
}

Tensor Tensor::narrow(int64_t d, int64_t start, int64_t length) const {
  d = wrap_dim(d, dim(), "narrow");
  if (start < 0) start += size(d);
  if (start < 0 || length < 0 || start + length > size(d))
    throw std::out_of_range("narrow: [" + std::to_string(start) + ", " + std::to_string(start + length) +
                            ") is outside dimension " + std::to_string(d) + " of size " +
                            std::to_string(size(d)));
  Shape new_shape = shape();
  new_shape[d] = length;
  Tensor out = make_view(*this, new_shape, strides(), offset() + start * stride(d));
  autograd::record(out, "narrow", {*this},
                   [shape = shape(), d, start, length](const Tensor& g) -> std::vector<Tensor> {
                     Tensor full_grad = zeros(shape, g.options());
                     Tensor window = full_grad.narrow(d, start, length);
                     copy_(window, g);
                     return {full_grad};
                   });
  return out;
}

Tensor Tensor::select(int64_t d, int64_t index) const {
  d = wrap_dim(d, dim(), "select");
  return narrow(d, index, 1).squeeze(d);
}

Tensor Tensor::expand(Shape new_shape) const {
  if (static_cast<int64_t>(new_shape.size()) < dim())
    throw std::invalid_argument("expand: target " + shape_str(new_shape) + " has fewer dims than " +
                                shape_str(shape()));
  const int64_t lead = static_cast<int64_t>(new_shape.size()) - dim();
  Shape new_strides(new_shape.size(), 0);
  for (int64_t i = 0; i < static_cast<int64_t>(new_shape.size()); ++i) {
    if (i < lead) {
      if (new_shape[i] < 0) throw std::invalid_argument("expand: -1 in a new leading dimension");
      continue;
    }
    int64_t old = shape()[i - lead];
    if (new_shape[i] == -1) new_shape[i] = old;
    if (old == new_shape[i]) {
      new_strides[i] = strides()[i - lead];
    } else if (old != 1) {
      throw std::invalid_argument("expand: cannot expand " + shape_str(shape()) + " to " +
                                  shape_str(new_shape));
    }
  }
  Tensor out = make_view(*this, new_shape, new_strides, offset());
  autograd::record(out, "expand", {*this},
                   [shape = shape()](const Tensor& g) -> std::vector<Tensor> { return {sum_to(g, shape)}; });
  return out;
}

Tensor Tensor::unsqueeze(int64_t d) const {
  d = wrap_dim(d, dim() + 1, "unsqueeze");
  Shape new_shape = shape(), new_strides = strides();
  int64_t stride = d < dim() ? shape()[d] * strides()[d] : 1;
  new_shape.insert(new_shape.begin() + d, 1);
  new_strides.insert(new_strides.begin() + d, stride);
  Tensor out = make_view(*this, new_shape, new_strides, offset());
  record_reshape_back(out, "unsqueeze", *this);
  return out;
}

Tensor Tensor::squeeze(int64_t d) const {
  d = wrap_dim(d, dim(), "squeeze");
  if (size(d) != 1)
    throw std::invalid_argument("squeeze: dimension " + std::to_string(d) + " has size " +
                                std::to_string(size(d)));
  Shape new_shape = shape(), new_strides = strides();
  new_shape.erase(new_shape.begin() + d);
  new_strides.erase(new_strides.begin() + d);
  Tensor out = make_view(*this, new_shape, new_strides, offset());
  record_reshape_back(out, "squeeze", *this);
  return out;
}

Tensor Tensor::squeeze() const {
  Shape new_shape, new_strides;
  for (int64_t d = 0; d < dim(); ++d) {
    if (size(d) == 1) continue;
    new_shape.push_back(size(d));
    new_strides.push_back(stride(d));
  }
  Tensor out = make_view(*this, new_shape, new_strides, offset());
  record_reshape_back(out, "squeeze", *this);
  return out;
}

Tensor Tensor::flatten(int64_t start_dim, int64_t end_dim) const {
  if (dim() == 0) return reshape({1});
  start_dim = wrap_dim(start_dim, dim(), "flatten");
  end_dim = wrap_dim(end_dim, dim(), "flatten");
  if (start_dim > end_dim) throw std::invalid_argument("flatten: start_dim after end_dim");
  Shape new_shape(shape().begin(), shape().begin() + start_dim);
  int64_t merged = 1;
  for (int64_t d = start_dim; d <= end_dim; ++d)
    merged *= size(d);
  new_shape.push_back(merged);
  new_shape.insert(new_shape.end(), shape().begin() + end_dim + 1, shape().end());
  return reshape(new_shape);
}

Tensor Tensor::contiguous() const {
  if (is_contiguous()) return *this;
  return clone();
}

Tensor Tensor::clone() const {
  Tensor out = empty(shape(), options());
  copy_(out, detach());
  autograd::record(out, "clone", {*this}, [](const Tensor& g) -> std::vector<Tensor> { return {g}; });
  return out;
}

Tensor Tensor::to(DType target) const {
  if (target == dtype()) return *this;
  Tensor out = empty(shape(), {target, device()});
  copy_(out, detach());
  autograd::record(out, "to", {*this},
                   [source = dtype()](const Tensor& g) -> std::vector<Tensor> { return {g.to(source)}; });
  return out;
}

}  // namespace icd
