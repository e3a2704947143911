// Reductions.
//
// sum:  y[o] = sum over the reduced dims of x[o, r]. Every x element feeds exactly one y element with
//       weight 1, so dL/dx = dL/dy broadcast back over the reduced dims (an expand, no copy).
// mean: y = sum / R with R the number of reduced elements, so dL/dx = (dL/dy) / R broadcast.
// f32 sums accumulate in double: a reduction over 10^6 elements keeps all of f32's digits.
#include "engine/ops/reduce.h"

#include <algorithm>
#include <stdexcept>

#include "engine/autograd.h"
#include "engine/cpu/strided.h"
#include "engine/dispatch.h"
#include "engine/factory.h"
#include "engine/ops/elementwise.h"

namespace icd {
namespace {

// Which dimensions a reduction covers, as a mask over x's dimensions.
std::vector<bool> reduced_mask(const Tensor& x, const std::vector<int64_t>& dims, const char* op) {
  std::vector<bool> mask(x.dim(), dims.empty());
  for (int64_t d : dims) {
    int64_t w = wrap_dim(d, x.dim(), op);
    if (mask[w]) throw std::invalid_argument(std::string(op) + ": dimension " + std::to_string(d) + " repeated");
    mask[w] = true;
  }
  return mask;
}

Shape keepdim_shape(const Tensor& x, const std::vector<bool>& mask) {
  Shape shape = x.shape();
  for (int64_t d = 0; d < x.dim(); ++d)
    if (mask[d]) shape[d] = 1;
  return shape;
}

Shape drop_reduced(const Shape& shape, const std::vector<bool>& mask) {
  Shape out;
  for (std::size_t d = 0; d < shape.size(); ++d)
    if (!mask[d]) out.push_back(shape[d]);
  return out;
}

// Sum over the masked dims into a tensor of keepdim shape, without autograd.
Tensor sum_kernel(const Tensor& x, const std::vector<bool>& mask) {
  Shape out_shape = keepdim_shape(x, mask);
  Tensor out = empty(out_shape, x.options());
  Shape outer_shape, outer_strides, inner_shape, inner_strides;
  for (int64_t d = 0; d < x.dim(); ++d) {
    (mask[d] ? inner_shape : outer_shape).push_back(x.size(d));
    (mask[d] ? inner_strides : outer_strides).push_back(x.stride(d));
  }
  const int64_t outputs = shape_numel(outer_shape);
  const int64_t per_output = shape_numel(inner_shape);
  dispatch_floating(x.dtype(), "sum", [&](auto tag) {
    using T = decltype(tag);
    const T* src = x.data<T>();
    T* dst = out.data<T>();  // keepdim layout is row-major over the outer dims in order
    std::vector<int64_t> outer_offsets;
    outer_offsets.reserve(outputs);
    cpu::for_each_offset(outer_shape, outer_strides, [&](int64_t off) { outer_offsets.push_back(off); });
    const cpu::RowLayout<1> inner = cpu::coalesce<1>(inner_shape, {inner_strides});
    const bool inner_unit = inner.shape.size() == 1 && inner.strides[0][0] == 1;
#pragma omp parallel for schedule(static) if (outputs > 1 && outputs * per_output >= cpu::kParallelGrain)
    for (int64_t o = 0; o < outputs; ++o) {
      double acc = 0.0;
      const T* base = src + outer_offsets[o];
      if (inner_unit) {
        for (int64_t i = 0; i < per_output; ++i) acc += base[i];
      } else {
        cpu::for_each_offset(inner_shape, inner_strides, [&](int64_t off) { acc += base[off]; });
      }
      dst[o] = static_cast<T>(acc);
    }
  });
  return out;
}

Tensor reduce_sum(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim, double scale, const char* op) {
  require_cpu(op, {{"x", x}});
  std::vector<bool> mask = reduced_mask(x, dims, op);
  Tensor kept = sum_kernel(x, mask);
  if (scale != 1.0) mul_(kept, scale);
  Tensor out = keepdim ? kept : kept.detach().reshape(drop_reduced(kept.shape(), mask));
  autograd::record(out, op, {x}, [kept_shape = kept.shape(), x_shape = x.shape(), scale](const Tensor& g) -> std::vector<Tensor> {
    Tensor gk = g.reshape(kept_shape);
    if (scale != 1.0) gk = mul(gk, scale);
    return {gk.expand(x_shape)};
  });
  return out;
}

int64_t reduced_count(const Tensor& x, const std::vector<int64_t>& dims, const char* op) {
  std::vector<bool> mask = reduced_mask(x, dims, op);
  int64_t n = 1;
  for (int64_t d = 0; d < x.dim(); ++d)
    if (mask[d]) n *= x.size(d);
  return n;
}

}  // namespace

Tensor sum(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  return reduce_sum(x, dims, keepdim, 1.0, "sum");
}
Tensor sum(const Tensor& x) { return sum(x, {}, false); }

Tensor mean(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  int64_t n = reduced_count(x, dims, "mean");
  if (n == 0) throw std::invalid_argument("mean: reduction over zero elements of " + shape_str(x.shape()));
  return reduce_sum(x, dims, keepdim, 1.0 / static_cast<double>(n), "mean");
}
Tensor mean(const Tensor& x) { return mean(x, {}, false); }

Tensor sum_to(const Tensor& x, const Shape& shape) {
  if (x.shape() == shape) return x;
  if (broadcast_shapes(shape, x.shape(), "sum_to") != x.shape())
    throw std::invalid_argument("sum_to: " + shape_str(shape) + " does not broadcast to " + shape_str(x.shape()));
  const int64_t lead = x.dim() - static_cast<int64_t>(shape.size());
  std::vector<int64_t> dims;
  for (int64_t d = 0; d < x.dim(); ++d)
    if (d < lead || (shape[d - lead] == 1 && x.size(d) != 1)) dims.push_back(d);
  if (dims.empty()) return x.reshape(shape);
  return sum(x, dims, true).reshape(shape);
}

}  // namespace icd
