// Elementwise ops.
//
// Forward: out[i] = f(a[i], b[i]) over the broadcast shape. A size-1 (or missing) dimension of an input
// is read with stride 0, so it is reused along that dimension without being copied.
//
// Backward of a broadcasting op: an input element that was reused along a broadcast dimension received
// gradient from every output it fed, so its gradient is the partial derivative times g, summed over
// the broadcast dimensions: grad_a = sum_to(g * df/da, shape(a)). The partials:
//   add: 1, 1            sub: 1, -1            mul: b, a           div: 1/b, -a/b^2
//   pow: b a^(b-1), a^b ln a                   maximum/minimum: g goes to the selected input
//   exp: y   log: 1/x   sqrt: 1/(2y)   abs: sign(x)   relu: [x > 0]   sigmoid: y(1-y)   tanh: 1-y^2
//   clamp: [low <= x <= high]                  where: [c != 0] to a, [c == 0] to b
// (y is the saved output; at the kinks of relu, abs and clamp the subgradient chosen is the one above.)
#include "engine/ops/elementwise.h"

#include <array>
#include <stdexcept>
#include <utility>

#include "engine/autograd.h"
#include "engine/cpu/strided.h"
#include "engine/cuda_ops.h"
#include "engine/dispatch.h"
#include "engine/factory.h"
#include "engine/kernels/binary_op.h"
#include "engine/kernels/elementwise_math.h"
#include "engine/kernels/unary_op.h"
#include "engine/ops/reduce.h"

namespace icd {

Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
  std::size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (std::size_t i = 0; i < n; ++i) {
    int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    if (da != db && da != 1 && db != 1)
      throw std::invalid_argument(std::string(op) + ": shapes " + shape_str(a) + " and " + shape_str(b) +
                                  " cannot be broadcast together");
    out[i] = da == 1 ? db : da;
  }
  return out;
}

namespace {

// Strides that read tensor t as if it had shape `shape` (t's shape broadcasts to it).
Shape broadcast_strides(const Tensor& t, const Shape& shape) {
  Shape strides(shape.size(), 0);
  std::size_t lead = shape.size() - t.shape().size();
  for (std::size_t i = 0; i < t.shape().size(); ++i)
    strides[lead + i] = t.shape()[i] == 1 ? 0 : t.strides()[i];
  return strides;
}

// out = op(inputs...) elementwise, into `out` whose shape is the broadcast of all inputs.
template <std::size_t N, class Op, std::size_t... I>
void map_into(Tensor& out, const std::array<Tensor, N>& in, Op op, std::index_sequence<I...>) {
  dispatch_floating(out.dtype(), "elementwise", [&](auto tag) {
    using T = decltype(tag);
    T* o = out.data<T>();
    std::array<const T*, N> src{in[I].template data<T>()...};
    std::array<Shape, N + 1> strides{out.strides(), broadcast_strides(in[I], out.shape())...};
    cpu::for_each_row<N + 1>(out.shape(), strides, [&](const auto& off, int64_t n, const auto& st) {
      const bool unit = ((st[0] == 1) && ... && (st[I + 1] == 1));
      if (unit) {
        T* dst = o + off[0];
        std::array<const T*, N> p{(src[I] + off[I + 1])...};
        for (int64_t i = 0; i < n; ++i)
          dst[i] = op(p[I][i]...);
      } else {
        for (int64_t i = 0; i < n; ++i)
          o[off[0] + i * st[0]] = op(src[I][off[I + 1] + i * st[I + 1]]...);
      }
    });
  });
}

template <std::size_t N, class Op>
Tensor map_elements(const char* name, const std::array<Tensor, N>& in, Op op) {
  Shape shape = in[0].shape();
  for (std::size_t k = 1; k < N; ++k)
    shape = broadcast_shapes(shape, in[k].shape(), name);
  Tensor out = empty(shape, in[0].options());
  map_into(out, in, op, std::make_index_sequence<N>{});
  return out;
}

// On a CUDA device the functor crosses to the backend by name (kernels::binary_op_call / unary_op_call).
Tensor map_binary(const char* name, const Tensor& a, const Tensor& b, auto op) {
  if (op_device(name, {{"a", a}, {"b", b}}).is_cuda()) {
    Tensor out = empty(broadcast_shapes(a.shape(), b.shape(), name), a.options());
    cuda_ops::map_binary(name, kernels::binary_op_call(op), a, b, out);
    return out;
  }
  return map_elements<2>(name, {a, b}, op);
}

Tensor map_unary(const char* name, const Tensor& x, auto op) {
  if (op_device(name, {{"x", x}}).is_cuda()) {
    Tensor out = empty(x.shape(), x.options());
    cuda_ops::map_unary(name, kernels::unary_op_call(op), x, out);
    return out;
  }
  return map_elements<1>(name, {x}, op);
}

Tensor scalar_like(double value, const Tensor& t) {
  return scalar_tensor(value, t.options());
}

// Records a unary op whose gradient is grad_op(g, saved).
void record_unary(Tensor& y, const char* name, const Tensor& x, const Tensor& saved, auto grad_op) {
  autograd::record(y, name, {x}, [saved, grad_op, name](const Tensor& g) -> std::vector<Tensor> {
    return {map_binary(name, g, saved, grad_op)};
  });
}

}  // namespace

Tensor add(const Tensor& a, const Tensor& b) {
  Tensor out = map_binary("add", a, b, kernels::AddOp{});
  autograd::record(out, "add", {a, b},
                   [sa = a.shape(), sb = b.shape()](const Tensor& g) -> std::vector<Tensor> {
                     return {sum_to(g, sa), sum_to(g, sb)};
                   });
  return out;
}

Tensor sub(const Tensor& a, const Tensor& b) {
  Tensor out = map_binary("sub", a, b, kernels::SubOp{});
  autograd::record(out, "sub", {a, b},
                   [sa = a.shape(), sb = b.shape()](const Tensor& g) -> std::vector<Tensor> {
                     return {sum_to(g, sa), sum_to(neg(g), sb)};
                   });
  return out;
}

Tensor mul(const Tensor& a, const Tensor& b) {
  Tensor out = map_binary("mul", a, b, kernels::MulOp{});
  autograd::record(out, "mul", {a, b},
                   [a = a.detach(), b = b.detach()](const Tensor& g) -> std::vector<Tensor> {
                     return {sum_to(mul(g, b), a.shape()), sum_to(mul(g, a), b.shape())};
                   });
  return out;
}

Tensor div(const Tensor& a, const Tensor& b) {
  Tensor out = map_binary("div", a, b, kernels::DivOp{});
  autograd::record(
      out, "div", {a, b},
      [a = a.detach(), b = b.detach(), y = out.detach()](const Tensor& g) -> std::vector<Tensor> {
        Tensor ga = div(g, b);
        return {sum_to(ga, a.shape()), sum_to(neg(mul(ga, y)), b.shape())};  // -g a / b^2
      });
  return out;
}

Tensor pow(const Tensor& a, const Tensor& b) {
  Tensor out = map_binary("pow", a, b, kernels::PowOp{});
  autograd::record(
      out, "pow", {a, b},
      [a = a.detach(), b = b.detach(), y = out.detach()](const Tensor& g) -> std::vector<Tensor> {
        Tensor ga = mul(mul(g, b), pow(a, sub(b, scalar_like(1.0, b))));
        Tensor gb = mul(mul(g, y), log(a));
        return {sum_to(ga, a.shape()), sum_to(gb, b.shape())};
      });
  return out;
}

// Ties send the whole gradient to a (maximum) / a (minimum), matching the forward's choice.
Tensor maximum(const Tensor& a, const Tensor& b) {
  Tensor out = map_binary("maximum", a, b, kernels::MaximumOp{});
  autograd::record(out, "maximum", {a, b},
                   [a = a.detach(), b = b.detach()](const Tensor& g) -> std::vector<Tensor> {
                     Tensor take_a = ge(a, b);
                     return {sum_to(mul(g, take_a), a.shape()),
                             sum_to(mul(g, sub(scalar_like(1.0, take_a), take_a)), b.shape())};
                   });
  return out;
}

Tensor minimum(const Tensor& a, const Tensor& b) {
  Tensor out = map_binary("minimum", a, b, kernels::MinimumOp{});
  autograd::record(out, "minimum", {a, b},
                   [a = a.detach(), b = b.detach()](const Tensor& g) -> std::vector<Tensor> {
                     Tensor take_a = le(a, b);
                     return {sum_to(mul(g, take_a), a.shape()),
                             sum_to(mul(g, sub(scalar_like(1.0, take_a), take_a)), b.shape())};
                   });
  return out;
}

Tensor add(const Tensor& a, double b) {
  return add(a, scalar_like(b, a));
}
Tensor sub(const Tensor& a, double b) {
  return sub(a, scalar_like(b, a));
}
Tensor mul(const Tensor& a, double b) {
  return mul(a, scalar_like(b, a));
}
Tensor div(const Tensor& a, double b) {
  return div(a, scalar_like(b, a));
}

Tensor pow(const Tensor& x, double exponent) {
  Tensor y = map_unary("pow", x, kernels::PowScalarOp{exponent});
  record_unary(y, "pow", x, x.detach(), kernels::PowScalarGradOp{exponent});
  return y;
}

Tensor neg(const Tensor& x) {
  Tensor y = map_unary("neg", x, kernels::NegOp{});
  autograd::record(y, "neg", {x}, [](const Tensor& g) -> std::vector<Tensor> { return {neg(g)}; });
  return y;
}

Tensor exp(const Tensor& x) {
  Tensor y = map_unary("exp", x, kernels::ExpOp{});
  record_unary(y, "exp", x, y.detach(), kernels::MulOp{});
  return y;
}

Tensor log(const Tensor& x) {
  Tensor y = map_unary("log", x, kernels::LogOp{});
  record_unary(y, "log", x, x.detach(), kernels::DivOp{});
  return y;
}

Tensor sqrt(const Tensor& x) {
  Tensor y = map_unary("sqrt", x, kernels::SqrtOp{});
  record_unary(y, "sqrt", x, y.detach(), kernels::SqrtGradOp{});
  return y;
}

Tensor abs(const Tensor& x) {
  Tensor y = map_unary("abs", x, kernels::AbsOp{});
  record_unary(y, "abs", x, x.detach(), kernels::AbsGradOp{});
  return y;
}

Tensor relu(const Tensor& x) {
  Tensor y = map_unary("relu", x, kernels::ReluOp{});
  record_unary(y, "relu", x, y.detach(), kernels::ReluGradOp{});  // y > 0 exactly where x > 0
  return y;
}

Tensor sigmoid(const Tensor& x) {
  Tensor y = map_unary("sigmoid", x, kernels::SigmoidOp{});
  record_unary(y, "sigmoid", x, y.detach(), kernels::SigmoidGradOp{});
  return y;
}

Tensor tanh(const Tensor& x) {
  Tensor y = map_unary("tanh", x, kernels::TanhOp{});
  record_unary(y, "tanh", x, y.detach(), kernels::TanhGradOp{});
  return y;
}

Tensor clamp(const Tensor& x, double low, double high) {
  if (low > high) throw std::invalid_argument("clamp: low > high");
  Tensor y = map_unary("clamp", x, kernels::ClampOp{low, high});
  record_unary(y, "clamp", x, x.detach(), kernels::ClampGradOp{low, high});
  return y;
}

Tensor where(const Tensor& condition, const Tensor& a, const Tensor& b) {
  Tensor out;
  if (op_device("where", {{"condition", condition}, {"a", a}, {"b", b}}).is_cuda()) {
    out = empty(broadcast_shapes(broadcast_shapes(condition.shape(), a.shape(), "where"), b.shape(), "where"),
                a.options());
    cuda_ops::where("where", condition, a, b, out);
  } else {
    out = map_elements<3>("where", {condition, a, b}, kernels::WhereOp{});
  }
  autograd::record(
      out, "where", {a, b},
      [c = condition.detach(), sa = a.shape(), sb = b.shape()](const Tensor& g) -> std::vector<Tensor> {
        Tensor zero = scalar_like(0.0, g);
        return {sum_to(where(c, g, zero), sa), sum_to(where(c, zero, g), sb)};
      });
  return out;
}

Tensor masked_fill(const Tensor& x, const Tensor& mask, double value) {
  if (broadcast_shapes(mask.shape(), x.shape(), "masked_fill") != x.shape())
    throw std::invalid_argument("masked_fill: mask " + shape_str(mask.shape()) + " does not broadcast to " +
                                shape_str(x.shape()));
  return where(mask, scalar_like(value, x), x);
}

Tensor eq(const Tensor& a, const Tensor& b) {
  return map_binary("eq", a, b, kernels::EqOp{});
}
Tensor ne(const Tensor& a, const Tensor& b) {
  return map_binary("ne", a, b, kernels::NeOp{});
}
Tensor lt(const Tensor& a, const Tensor& b) {
  return map_binary("lt", a, b, kernels::LtOp{});
}
Tensor le(const Tensor& a, const Tensor& b) {
  return map_binary("le", a, b, kernels::LeOp{});
}
Tensor gt(const Tensor& a, const Tensor& b) {
  return map_binary("gt", a, b, kernels::GtOp{});
}
Tensor ge(const Tensor& a, const Tensor& b) {
  return map_binary("ge", a, b, kernels::GeOp{});
}
Tensor gt(const Tensor& a, double b) {
  return gt(a, scalar_like(b, a));
}
Tensor lt(const Tensor& a, double b) {
  return lt(a, scalar_like(b, a));
}

namespace {

void check_writable(const Tensor& dst, const char* op) {
  if (dst.requires_grad() && autograd::grad_enabled())
    throw std::logic_error(std::string(op) +
                           ": in-place update of a tensor that requires grad while grad mode is on "
                           "(use NoGradGuard, e.g. in an optimizer step)");
}

void check_broadcasts_to(const Tensor& src, const Tensor& dst, const char* op) {
  if (broadcast_shapes(src.shape(), dst.shape(), op) != dst.shape())
    throw std::invalid_argument(std::string(op) + ": source " + shape_str(src.shape()) +
                                " does not broadcast to destination " + shape_str(dst.shape()));
}

}  // namespace

void add_(Tensor& dst, const Tensor& src, double alpha) {
  check_writable(dst, "add_");
  const Device device = op_device("add_", {{"dst", dst}, {"src", src}});
  check_broadcasts_to(src, dst, "add_");
  if (device.is_cuda()) {
    cuda_ops::map_binary("add_", kernels::binary_op_call(kernels::AddScaledOp{alpha}), dst, src, dst);
    return;
  }
  dispatch_floating(dst.dtype(), "add_", [&](auto tag) {
    using T = decltype(tag);
    T* d = dst.data<T>();
    const T* s = src.data<T>();
    const T a = static_cast<T>(alpha);
    cpu::for_each_row<2>(dst.shape(), {dst.strides(), broadcast_strides(src, dst.shape())},
                         [&](const auto& off, int64_t n, const auto& st) {
                           if (st[0] == 1 && st[1] == 1) {
                             for (int64_t i = 0; i < n; ++i)
                               d[off[0] + i] += a * s[off[1] + i];
                           } else {
                             for (int64_t i = 0; i < n; ++i)
                               d[off[0] + i * st[0]] += a * s[off[1] + i * st[1]];
                           }
                         });
  });
}

void copy_(Tensor& dst, const Tensor& src) {
  check_writable(dst, "copy_");
  if (dst.device() != src.device())
    throw std::invalid_argument("copy_: src is on " + src.device().str() + " but dst is on " +
                                dst.device().str() + " (to_device copies between devices)");
  check_broadcasts_to(src, dst, "copy_");
  if (dst.device().is_cuda()) {
    cuda_ops::copy("copy_", src, dst);
    return;
  }
  dispatch_all(dst.dtype(), "copy_", [&](auto dtag) {
    using D = decltype(dtag);
    dispatch_all(src.dtype(), "copy_", [&](auto stag) {
      using S = decltype(stag);
      D* d = dst.data<D>();
      const S* s = src.data<S>();
      cpu::for_each_row<2>(dst.shape(), {dst.strides(), broadcast_strides(src, dst.shape())},
                           [&](const auto& off, int64_t n, const auto& st) {
                             for (int64_t i = 0; i < n; ++i)
                               d[off[0] + i * st[0]] = static_cast<D>(s[off[1] + i * st[1]]);
                           });
    });
  });
}

void fill_(Tensor& dst, double value) {
  check_writable(dst, "fill_");
  if (op_device("fill_", {{"dst", dst}}).is_cuda()) {
    cuda_ops::fill("fill_", dst, value);
    return;
  }
  dispatch_all(dst.dtype(), "fill_", [&](auto tag) {
    using T = decltype(tag);
    T* d = dst.data<T>();
    const T v = static_cast<T>(value);
    cpu::for_each_row<1>(dst.shape(), {dst.strides()}, [&](const auto& off, int64_t n, const auto& st) {
      for (int64_t i = 0; i < n; ++i)
        d[off[0] + i * st[0]] = v;
    });
  });
}

void mul_(Tensor& dst, double s) {
  check_writable(dst, "mul_");
  if (op_device("mul_", {{"dst", dst}}).is_cuda()) {
    cuda_ops::map_unary("mul_", kernels::unary_op_call(kernels::ScaleOp{s}), dst, dst);
    return;
  }
  dispatch_floating(dst.dtype(), "mul_", [&](auto tag) {
    using T = decltype(tag);
    T* d = dst.data<T>();
    const T v = static_cast<T>(s);
    cpu::for_each_row<1>(dst.shape(), {dst.strides()}, [&](const auto& off, int64_t n, const auto& st) {
      for (int64_t i = 0; i < n; ++i)
        d[off[0] + i * st[0]] *= v;
    });
  });
}

}  // namespace icd
