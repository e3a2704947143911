// Reductions.
//
// sum:  y[o] = sum over the reduced dims of x[o, r]. Every x element feeds exactly one y element with
//       weight 1, so dL/dx = dL/dy broadcast back over the reduced dims (an expand, no copy).
// mean: y = sum / R with R the number of reduced elements, so dL/dx = (dL/dy) / R broadcast.
// f32 sums accumulate in double: a reduction over 10^6 elements keeps all of f32's digits. On a CUDA
// device the same sums run in a fixed order too (engine/kernels/reduce_sum.h), no atomics.
//
// max/min along a dimension: y[o, i] = x[o, k*, i], k* the (first) position of the extreme along k.
//       y depends on that one element with slope 1, so dL/dx[o, k, i] = [k == k*] dL/dy[o, i]: the
//       gradient is scattered back to the saved indices.
// amax/amin over dims: the same where the extreme is unique; where several elements tie, torch splits
//       the gradient evenly among them: dL/dx = [x == y] g / (number of ties).
// logsumexp: y = log S, S = sum_k exp(x_k). dy/dx_k = exp(x_k) / S = exp(x_k - y) (the softmax), so
//       dL/dx = g exp(x - y), g and y broadcast over the reduced dimension.
// softmax: y_k = exp(x_k) / S. dy_k/dx_j = y_k ([k == j] - y_j), so
//       dL/dx_j = sum_k g_k y_k ([k == j] - y_j) = y_j (g_j - sum_k g_k y_k).
// log_softmax: y_k = x_k - log S. dy_k/dx_j = [k == j] - softmax_j = [k == j] - exp(y_j), so
//       dL/dx_j = g_j - exp(y_j) sum_k g_k.
// All of them subtract the maximum m before exponentiating: exp(x - m) <= 1 cannot overflow, and
// S >= 1 cannot underflow to zero, so log S is finite; the identities above are unchanged by m.
//
// The one-dimension kernels see x (made contiguous) as [outer, n, inner] around the reduced dimension
// of size n. With inner == 1 each output reads one contiguous row; otherwise a tile of up to kLaneTile
// neighbouring outputs is computed together, so the inner loops still walk contiguous memory.
// On a CUDA device the same lanes go to engine/cuda/reduce_dim.cu (bodies in engine/kernels/
// reduce_dim.h), deterministic: max/min, their indices and backward agree with the CPU bit for bit; the
// sums of exponentials accumulate in double in a fixed tree order.
#include "engine/ops/reduce.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

#include "engine/autograd.h"
#include "engine/cpu/strided.h"
#include "engine/cuda_ops.h"
#include "engine/dispatch.h"
#include "engine/factory.h"
#include "engine/kernels/reduce_dim.h"
#include "engine/ops/elementwise.h"

namespace icd {
namespace {

// Which dimensions a reduction covers, as a mask over x's dimensions.
std::vector<bool> reduced_mask(const Tensor& x, const std::vector<int64_t>& dims, const char* op) {
  std::vector<bool> mask(x.dim(), dims.empty());
  for (int64_t d : dims) {
    int64_t w = wrap_dim(d, x.dim(), op);
    if (mask[w])
      throw std::invalid_argument(std::string(op) + ": dimension " + std::to_string(d) + " repeated");
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
#pragma omp simd reduction(+ : acc)
        for (int64_t i = 0; i < per_output; ++i)
          acc += base[i];
      } else {
        cpu::for_each_offset(inner_shape, inner_strides, [&](int64_t off) { acc += base[off]; });
      }
      dst[o] = static_cast<T>(acc);
    }
  });
  return out;
}

Tensor reduce_sum(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim, double scale,
                  const char* op) {
  const Device device = op_device(op, {{"x", x}});
  std::vector<bool> mask = reduced_mask(x, dims, op);
  Tensor kept;
  if (device.is_cuda()) {
    kept = empty(keepdim_shape(x, mask), x.options());
    cuda_ops::sum(op, x, mask, kept);
  } else {
    kept = sum_kernel(x, mask);
  }
  if (scale != 1.0) mul_(kept, scale);
  Tensor out = keepdim ? kept : kept.detach().reshape(drop_reduced(kept.shape(), mask));
  autograd::record(
      out, op, {x},
      [kept_shape = kept.shape(), x_shape = x.shape(), scale](const Tensor& g) -> std::vector<Tensor> {
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
Tensor sum(const Tensor& x) {
  return sum(x, {}, false);
}

Tensor mean(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  int64_t n = reduced_count(x, dims, "mean");
  if (n == 0) throw std::invalid_argument("mean: reduction over zero elements of " + shape_str(x.shape()));
  return reduce_sum(x, dims, keepdim, 1.0 / static_cast<double>(n), "mean");
}
Tensor mean(const Tensor& x) {
  return mean(x, {}, false);
}

Tensor sum_to(const Tensor& x, const Shape& shape) {
  if (x.shape() == shape) return x;
  if (broadcast_shapes(shape, x.shape(), "sum_to") != x.shape())
    throw std::invalid_argument("sum_to: " + shape_str(shape) + " does not broadcast to " +
                                shape_str(x.shape()));
  const int64_t lead = x.dim() - static_cast<int64_t>(shape.size());
  std::vector<int64_t> dims;
  for (int64_t d = 0; d < x.dim(); ++d)
    if (d < lead || (shape[d - lead] == 1 && x.size(d) != 1)) dims.push_back(d);
  if (dims.empty()) return x.reshape(shape);
  return sum(x, dims, true).reshape(shape);
}

namespace {

// A contiguous tensor seen as [outer, n, inner] around one dimension of size n.
struct DimLayout {
  int64_t outer = 1, n = 1, inner = 1;
};

DimLayout dim_layout(const Shape& shape, int64_t dim) {
  DimLayout layout;
  for (int64_t d = 0; d < static_cast<int64_t>(shape.size()); ++d) {
    if (d < dim)
      layout.outer *= shape[d];
    else if (d == dim)
      layout.n = shape[d];
    else
      layout.inner *= shape[d];
  }
  return layout;
}

// The shape after reducing `dim` (a 0-d tensor stays 0-d, as in torch).
Shape reduced_shape(Shape shape, int64_t dim, bool keepdim) {
  if (shape.empty()) return shape;
  if (keepdim)
    shape[dim] = 1;
  else
    shape.erase(shape.begin() + dim);
  return shape;
}

// Like wrap_dim, but a 0-d tensor accepts dim 0 and -1 (it is treated as one element along dim 0).
int64_t wrap_reduce_dim(const Tensor& x, int64_t dim, const char* op) {
  return wrap_dim(dim, std::max<int64_t>(x.dim(), 1), op);
}

constexpr int64_t kLaneTile = 64;

// Calls body(o, i0, i1) for every outer index o and every tile [i0, i1) of inner positions; the
// pieces are shared among OpenMP threads when the whole job is big enough.
template <class Body>
void for_each_lane_tile(const DimLayout& layout, Body&& body) {
  if (layout.outer == 0 || layout.inner == 0) return;
  const int64_t tile = std::min(layout.inner, kLaneTile);
  const int64_t tiles = (layout.inner + tile - 1) / tile;
  const int64_t pieces = layout.outer * tiles;
  const bool parallel = pieces > 1 && layout.outer * layout.n * layout.inner >= cpu::kParallelGrain;
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t p = 0; p < pieces; ++p) {
    const int64_t o = p / tiles, i0 = (p % tiles) * tile;
    body(o, i0, std::min(i0 + tile, layout.inner));
  }
}

// The element rules shared with the CUDA kernels (engine/kernels/reduce_dim.h): which element is the
// extreme so far (first of equals, NaN first), and the shift before exp.
using kernels::better;
using kernels::exp_shift;

// x (contiguous) as the CUDA kernels see it: lanes of n elements, `inner` apart.
kernels::LaneLayout lanes_of(const DimLayout& layout) {
  return {layout.outer, layout.n, layout.inner};
}

template <bool kMax, class T>
void extreme_kernel(const T* x, const DimLayout& layout, T* values, int64_t* indices) {
  const int64_t n = layout.n, inner = layout.inner;
  for_each_lane_tile(layout, [&](int64_t o, int64_t i0, int64_t i1) {
    const T* block = x + o * n * inner;
    if (inner == 1) {
      T best = block[0];
      int64_t at = 0;
      for (int64_t k = 1; k < n; ++k) {
        if (better<kMax>(block[k], best)) {
          best = block[k];
          at = k;
        }
      }
      if (values) values[o] = best;
      if (indices) indices[o] = at;
      return;
    }
    const int64_t width = i1 - i0;
    T best[kLaneTile];
    int64_t at[kLaneTile];
    for (int64_t j = 0; j < width; ++j) {
      best[j] = block[i0 + j];
      at[j] = 0;
    }
    for (int64_t k = 1; k < n; ++k) {
      const T* row = block + k * inner + i0;
      for (int64_t j = 0; j < width; ++j) {
        if (better<kMax>(row[j], best[j])) {
          best[j] = row[j];
          at[j] = k;
        }
      }
    }
    for (int64_t j = 0; j < width; ++j) {
      if (values) values[o * inner + i0 + j] = best[j];
      if (indices) indices[o * inner + i0 + j] = at[j];
    }
  });
}

// The extreme of x along `dim` (already wrapped), in the shape reduced_shape(x, dim, keepdim). Either
// output may be skipped. No graph is recorded.
ValuesIndices extreme_along(const Tensor& x, int64_t dim, bool keepdim, bool is_max, bool want_values,
                            const char* op) {
  Tensor xc = x.detach().contiguous();
  const DimLayout layout = dim_layout(xc.shape(), dim);
  if (layout.n == 0)
    throw std::invalid_argument(std::string(op) + ": cannot reduce dimension " + std::to_string(dim) +
                                " of size 0 in x of shape " + shape_str(x.shape()));
  const Shape out_shape = reduced_shape(x.shape(), dim, keepdim);
  ValuesIndices out;
  if (want_values) out.values = empty(out_shape, x.options());
  out.indices = empty(out_shape, {DType::i64, x.device()});
  if (x.device().is_cuda()) {
    cuda_ops::extreme_along(op, xc, lanes_of(layout), is_max, want_values ? &out.values : nullptr,
                            out.indices);
    return out;
  }
  dispatch_floating(x.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
    T* values = want_values ? out.values.data<T>() : nullptr;
    if (is_max)
      extreme_kernel<true>(xc.data<T>(), layout, values, out.indices.data<int64_t>());
    else
      extreme_kernel<false>(xc.data<T>(), layout, values, out.indices.data<int64_t>());
  });
  return out;
}

// The adjoint of picking x[o, indices[o, i], i]: a zero tensor of x's shape with g written at the indices.
Tensor scatter_along(const Tensor& g, const Tensor& indices, const Shape& x_shape, int64_t dim) {
  const DimLayout layout = dim_layout(x_shape, dim);
  if (g.device().is_cuda()) {
    Tensor grad = empty(x_shape, g.options());
    cuda_ops::scatter_along("max/min backward", g.contiguous(), indices, lanes_of(layout), grad);
    return grad;
  }
  Tensor grad = zeros(x_shape, g.options());
  Tensor gc = g.contiguous();
  dispatch_floating(g.dtype(), "max/min backward", [&](auto tag) {
    using T = decltype(tag);
    const T* src = gc.data<T>();
    const int64_t* at = indices.data<int64_t>();
    T* dst = grad.data<T>();
    const int64_t n = layout.n, inner = layout.inner;
#pragma omp parallel for schedule(static) if (layout.outer > 1 && layout.outer * inner >= cpu::kParallelGrain)
    for (int64_t o = 0; o < layout.outer; ++o)
      for (int64_t i = 0; i < inner; ++i)
        dst[(o * n + at[o * inner + i]) * inner + i] = src[o * inner + i];
  });
  return grad;
}

ValuesIndices max_min(const Tensor& x, int64_t dim, bool keepdim, bool is_max, const char* op) {
  op_device(op, {{"x", x}});  // extreme_along and scatter_along run on x's device
  dim = wrap_reduce_dim(x, dim, op);
  ValuesIndices out = extreme_along(x, dim, keepdim, is_max, true, op);
  autograd::record(out.values, op, {x},
                   [indices = out.indices, x_shape = x.shape(), dim](const Tensor& g) -> std::vector<Tensor> {
                     return {scatter_along(g, indices, x_shape, dim)};
                   });
  return out;
}

Tensor amax_amin(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim, bool is_max,
                 const char* op) {
  op_device(op, {{"x", x}});  // extreme_along and the backward's elementwise ops run on x's device
  const std::vector<bool> mask = reduced_mask(x, dims, op);
  std::vector<int64_t> reduced_dims, order;  // order: kept dimensions first, then the reduced ones
  for (int64_t d = 0; d < x.dim(); ++d)
    if (!mask[d]) order.push_back(d);
  for (int64_t d = 0; d < x.dim(); ++d)
    if (mask[d]) reduced_dims.push_back(d);
  order.insert(order.end(), reduced_dims.begin(), reduced_dims.end());
  const Shape kept_shape = keepdim_shape(x, mask);
  Tensor kept;
  if (reduced_dims.size() == 1) {
    kept = extreme_along(x, reduced_dims[0], true, is_max, true, op).values;
  } else {
    // Several dims: move them to the end and flatten them into one, then reduce rows.
    const int64_t per_output = reduced_count(x, dims, op);
    if (per_output == 0)
      throw std::invalid_argument(std::string(op) + ": reduction over zero elements of " +
                                  shape_str(x.shape()));
    Tensor rows = x.detach().permute(order).contiguous().reshape({shape_numel(kept_shape), per_output});
    kept = extreme_along(rows, 1, true, is_max, true, op).values.reshape(kept_shape);
  }
  Tensor out = keepdim ? kept : kept.reshape(drop_reduced(kept_shape, mask));
  autograd::record(
      out, op, {x},
      [x = x.detach(), y = out.detach(), kept_shape, reduced_dims](const Tensor& g) -> std::vector<Tensor> {
        Tensor hit = eq(x, y.reshape(kept_shape));
        Tensor ties = sum(hit, reduced_dims, true);
        return {mul(hit, div(g.reshape(kept_shape), ties))};
      });
  return out;
}

Tensor arg_extreme(const Tensor& x, int64_t dim, bool keepdim, bool is_max, const char* op) {
  op_device(op, {{"x", x}});  // extreme_along runs on x's device
  return extreme_along(x, wrap_reduce_dim(x, dim, op), keepdim, is_max, false, op).indices;
}

template <class T>
void logsumexp_kernel(const T* x, const DimLayout& layout, T* out) {
  const int64_t n = layout.n, inner = layout.inner;
  for_each_lane_tile(layout, [&](int64_t o, int64_t i0, int64_t i1) {
    const T* block = x + o * n * inner;
    if (inner == 1) {
      T m = -std::numeric_limits<T>::infinity();
#pragma omp simd reduction(max : m)
      for (int64_t k = 0; k < n; ++k)
        m = block[k] > m ? block[k] : m;
      const T shift = exp_shift(m);
      double s = 0.0;
#pragma omp simd reduction(+ : s)
      for (int64_t k = 0; k < n; ++k)
        s += std::exp(block[k] - shift);
      out[o] = static_cast<T>(std::log(s) + shift);
      return;
    }
    const int64_t width = i1 - i0;
    T shift[kLaneTile];
    double s[kLaneTile];
    for (int64_t j = 0; j < width; ++j) {
      shift[j] = -std::numeric_limits<T>::infinity();
      s[j] = 0.0;
    }
    for (int64_t k = 0; k < n; ++k)
      for (int64_t j = 0; j < width; ++j)
        shift[j] = block[k * inner + i0 + j] > shift[j] ? block[k * inner + i0 + j] : shift[j];
    for (int64_t j = 0; j < width; ++j)
      shift[j] = exp_shift(shift[j]);
    for (int64_t k = 0; k < n; ++k)
      for (int64_t j = 0; j < width; ++j)
        s[j] += std::exp(block[k * inner + i0 + j] - shift[j]);
    for (int64_t j = 0; j < width; ++j)
      out[o * inner + i0 + j] = static_cast<T>(std::log(s[j]) + shift[j]);
  });
}

// softmax (kLog false) or log_softmax (kLog true) of x along the middle dimension of `layout`.
template <bool kLog, class T>
void softmax_kernel(const T* x, const DimLayout& layout, T* y) {
  const int64_t n = layout.n, inner = layout.inner;
  for_each_lane_tile(layout, [&](int64_t o, int64_t i0, int64_t i1) {
    const T* xb = x + o * n * inner;
    T* yb = y + o * n * inner;
    if (inner == 1) {
      T m = -std::numeric_limits<T>::infinity();
#pragma omp simd reduction(max : m)
      for (int64_t k = 0; k < n; ++k)
        m = xb[k] > m ? xb[k] : m;
      const T shift = exp_shift(m);
      double s = 0.0;
      if constexpr (kLog) {
#pragma omp simd reduction(+ : s)
        for (int64_t k = 0; k < n; ++k)
          s += std::exp(xb[k] - shift);
        const T log_s = static_cast<T>(std::log(s));
        for (int64_t k = 0; k < n; ++k)
          yb[k] = (xb[k] - shift) - log_s;
      } else {
#pragma omp simd reduction(+ : s)
        for (int64_t k = 0; k < n; ++k) {
          const T e = std::exp(xb[k] - shift);
          yb[k] = e;
          s += e;
        }
        const T inv = static_cast<T>(1.0 / s);
        for (int64_t k = 0; k < n; ++k)
          yb[k] *= inv;
      }
      return;
    }
    const int64_t width = i1 - i0;
    T shift[kLaneTile];
    double s[kLaneTile];
    for (int64_t j = 0; j < width; ++j) {
      shift[j] = -std::numeric_limits<T>::infinity();
      s[j] = 0.0;
    }
    for (int64_t k = 0; k < n; ++k) {
      const T* row = xb + k * inner + i0;
      for (int64_t j = 0; j < width; ++j)
        shift[j] = row[j] > shift[j] ? row[j] : shift[j];
    }
    for (int64_t j = 0; j < width; ++j)
      shift[j] = exp_shift(shift[j]);
    for (int64_t k = 0; k < n; ++k) {
      const T* row = xb + k * inner + i0;
      T* out = yb + k * inner + i0;
      for (int64_t j = 0; j < width; ++j) {
        const T e = std::exp(row[j] - shift[j]);
        if constexpr (!kLog) out[j] = e;
        s[j] += e;
      }
    }
    T finish[kLaneTile];  // softmax: 1 / S; log_softmax: log S
    for (int64_t j = 0; j < width; ++j)
      finish[j] = static_cast<T>(kLog ? std::log(s[j]) : 1.0 / s[j]);
    for (int64_t k = 0; k < n; ++k) {
      const T* row = xb + k * inner + i0;
      T* out = yb + k * inner + i0;
      for (int64_t j = 0; j < width; ++j) {
        if constexpr (kLog)
          out[j] = (row[j] - shift[j]) - finish[j];
        else
          out[j] *= finish[j];
      }
    }
  });
}

// dx from g and the saved output y: softmax y (g - sum g y), log_softmax g - exp(y) sum g.
template <bool kLog, class T>
void softmax_backward_kernel(const T* g, const T* y, const DimLayout& layout, T* dx) {
  const int64_t n = layout.n, inner = layout.inner;
  for_each_lane_tile(layout, [&](int64_t o, int64_t i0, int64_t i1) {
    const int64_t base = o * n * inner;
    const T *gb = g + base, *yb = y + base;
    T* db = dx + base;
    if (inner == 1) {
      double acc = 0.0;
#pragma omp simd reduction(+ : acc)
      for (int64_t k = 0; k < n; ++k)
        acc += kLog ? gb[k] : gb[k] * yb[k];
      const T total = static_cast<T>(acc);
      for (int64_t k = 0; k < n; ++k)
        db[k] = kLog ? gb[k] - std::exp(yb[k]) * total : yb[k] * (gb[k] - total);
      return;
    }
    const int64_t width = i1 - i0;
    double acc[kLaneTile];
    for (int64_t j = 0; j < width; ++j)
      acc[j] = 0.0;
    for (int64_t k = 0; k < n; ++k) {
      const int64_t at = k * inner + i0;
      for (int64_t j = 0; j < width; ++j)
        acc[j] += kLog ? gb[at + j] : gb[at + j] * yb[at + j];
    }
    T total[kLaneTile];
    for (int64_t j = 0; j < width; ++j)
      total[j] = static_cast<T>(acc[j]);
    for (int64_t k = 0; k < n; ++k) {
      const int64_t at = k * inner + i0;
      for (int64_t j = 0; j < width; ++j)
        db[at + j] =
            kLog ? gb[at + j] - std::exp(yb[at + j]) * total[j] : yb[at + j] * (gb[at + j] - total[j]);
    }
  });
}

Tensor softmax_backward(const Tensor& g, const Tensor& y, int64_t dim, bool log) {
  Tensor gc = g.contiguous();
  Tensor dx = empty(y.shape(), y.options());
  const DimLayout layout = dim_layout(y.shape(), dim);
  if (y.device().is_cuda()) {
    cuda_ops::softmax_backward(log ? "log_softmax backward" : "softmax backward", gc, y, lanes_of(layout),
                               log, dx);
    return dx;
  }
  dispatch_floating(y.dtype(), log ? "log_softmax backward" : "softmax backward", [&](auto tag) {
    using T = decltype(tag);
    if (log)
      softmax_backward_kernel<true>(gc.data<T>(), y.data<T>(), layout, dx.data<T>());
    else
      softmax_backward_kernel<false>(gc.data<T>(), y.data<T>(), layout, dx.data<T>());
  });
  return dx;
}

Tensor softmax_family(const Tensor& x, int64_t dim, bool log, const char* op) {
  const Device device = op_device(op, {{"x", x}});
  dim = wrap_reduce_dim(x, dim, op);
  Tensor xc = x.detach().contiguous();
  Tensor y = empty(x.shape(), x.options());
  const DimLayout layout = dim_layout(x.shape(), dim);
  if (device.is_cuda()) {
    cuda_ops::softmax(op, xc, lanes_of(layout), log, y);
  } else {
    dispatch_floating(x.dtype(), op, [&](auto tag) {
      using T = decltype(tag);
      if (log)
        softmax_kernel<true>(xc.data<T>(), layout, y.data<T>());
      else
        softmax_kernel<false>(xc.data<T>(), layout, y.data<T>());
    });
  }
  autograd::record(y, op, {x}, [saved = y.detach(), dim, log](const Tensor& g) -> std::vector<Tensor> {
    return {softmax_backward(g, saved, dim, log)};
  });
  return y;
}

}  // namespace

ValuesIndices max(const Tensor& x, int64_t dim, bool keepdim) {
  return max_min(x, dim, keepdim, true, "max");
}
ValuesIndices min(const Tensor& x, int64_t dim, bool keepdim) {
  return max_min(x, dim, keepdim, false, "min");
}

Tensor amax(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  return amax_amin(x, dims, keepdim, true, "amax");
}
Tensor amin(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  return amax_amin(x, dims, keepdim, false, "amin");
}

Tensor argmax(const Tensor& x, int64_t dim, bool keepdim) {
  return arg_extreme(x, dim, keepdim, true, "argmax");
}
Tensor argmin(const Tensor& x, int64_t dim, bool keepdim) {
  return arg_extreme(x, dim, keepdim, false, "argmin");
}
Tensor argmax(const Tensor& x) {
  return arg_extreme(x.detach().reshape({-1}), 0, false, true, "argmax");
}
Tensor argmin(const Tensor& x) {
  return arg_extreme(x.detach().reshape({-1}), 0, false, false, "argmin");
}

Tensor logsumexp(const Tensor& x, int64_t dim, bool keepdim) {
  const Device device = op_device("logsumexp", {{"x", x}});
  dim = wrap_reduce_dim(x, dim, "logsumexp");
  Tensor xc = x.detach().contiguous();
  Tensor y = empty(reduced_shape(x.shape(), dim, keepdim), x.options());
  if (device.is_cuda()) {
    cuda_ops::logsumexp("logsumexp", xc, lanes_of(dim_layout(x.shape(), dim)), y);
  } else {
    dispatch_floating(x.dtype(), "logsumexp", [&](auto tag) {
      using T = decltype(tag);
      logsumexp_kernel(xc.data<T>(), dim_layout(x.shape(), dim), y.data<T>());
    });
  }
  autograd::record(y, "logsumexp", {x},
                   [x = x.detach(), saved = y.detach(), kept_shape = reduced_shape(x.shape(), dim, true)](
                       const Tensor& g) -> std::vector<Tensor> {
                     return {mul(g.reshape(kept_shape), exp(sub(x, saved.reshape(kept_shape))))};
                   });
  return y;
}

Tensor softmax(const Tensor& x, int64_t dim) {
  return softmax_family(x, dim, false, "softmax");
}
Tensor log_softmax(const Tensor& x, int64_t dim) {
  return softmax_family(x, dim, true, "log_softmax");
}

}  // namespace icd
