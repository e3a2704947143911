// Names for the binary functors of engine/kernels/elementwise_math.h, so that code compiled by the host
// compiler can ask the CUDA backend for one of them (a functor type cannot cross that boundary, an enum
// can). visit_binary_op turns the name back into the functor; binary_op_call turns a functor into its
// name. The CUDA entry points and the tests both use them, so the mapping is written once and tested on
// the CPU (tests/test_kernel_bodies.cpp checks that the two are inverse).
#pragma once
#include <stdexcept>
#include <string>

#include "engine/kernels/elementwise_math.h"

namespace icd::kernels {

// Forward ops f(a, b), comparisons (1/0 in the inputs' dtype), the backward bodies f(g, saved) of the
// unary ops, and the in-place update of add_ f(dst, src).
enum class BinaryOp {
  add,
  sub,
  mul,
  div,
  pow,
  maximum,
  minimum,
  eq,
  ne,
  lt,
  le,
  gt,
  ge,
  relu_grad,
  sigmoid_grad,
  tanh_grad,
  sqrt_grad,
  abs_grad,
  pow_scalar_grad,  // param0: the exponent
  clamp_grad,       // param0, param1: low, high
  add_scaled,       // param0: alpha
};
constexpr int kBinaryOpCount = int(BinaryOp::add_scaled) + 1;

// An op and the parameters of the functors that carry some (unused ones stay 0). Converts from a bare
// BinaryOp, so parameterless ops are passed by name alone.
struct BinaryOpCall {
  BinaryOp op;
  double param0 = 0, param1 = 0;
  BinaryOpCall(BinaryOp op, double param0 = 0, double param1 = 0) : op(op), param0(param0), param1(param1) {}
  bool operator==(const BinaryOpCall&) const = default;
};

inline const char* binary_op_name(BinaryOp op) {
  constexpr const char* names[kBinaryOpCount] = {"add",
                                                 "sub",
                                                 "mul",
                                                 "div",
                                                 "pow",
                                                 "maximum",
                                                 "minimum",
                                                 "eq",
                                                 "ne",
                                                 "lt",
                                                 "le",
                                                 "gt",
                                                 "ge",
                                                 "relu_grad",
                                                 "sigmoid_grad",
                                                 "tanh_grad",
                                                 "sqrt_grad",
                                                 "abs_grad",
                                                 "pow_scalar_grad",
                                                 "clamp_grad",
                                                 "add_scaled"};
  int index = int(op);
  return index >= 0 && index < kBinaryOpCount ? names[index] : "?";
}

// Calls f(Functor{...}) for the functor that `call` names, with its parameters, and returns what f returns.
template <class F>
decltype(auto) visit_binary_op(BinaryOpCall call, F&& f) {
  switch (call.op) {
    case BinaryOp::add:
      return f(AddOp{});
    case BinaryOp::sub:
      return f(SubOp{});
    case BinaryOp::mul:
      return f(MulOp{});
    case BinaryOp::div:
      return f(DivOp{});
    case BinaryOp::pow:
      return f(PowOp{});
    case BinaryOp::maximum:
      return f(MaximumOp{});
    case BinaryOp::minimum:
      return f(MinimumOp{});
    case BinaryOp::eq:
      return f(EqOp{});
    case BinaryOp::ne:
      return f(NeOp{});
    case BinaryOp::lt:
      return f(LtOp{});
    case BinaryOp::le:
      return f(LeOp{});
    case BinaryOp::gt:
      return f(GtOp{});
    case BinaryOp::ge:
      return f(GeOp{});
    case BinaryOp::relu_grad:
      return f(ReluGradOp{});
    case BinaryOp::sigmoid_grad:
      return f(SigmoidGradOp{});
    case BinaryOp::tanh_grad:
      return f(TanhGradOp{});
    case BinaryOp::sqrt_grad:
      return f(SqrtGradOp{});
    case BinaryOp::abs_grad:
      return f(AbsGradOp{});
    case BinaryOp::pow_scalar_grad:
      return f(PowScalarGradOp{call.param0});
    case BinaryOp::clamp_grad:
      return f(ClampGradOp{call.param0, call.param1});
    case BinaryOp::add_scaled:
      return f(AddScaledOp{call.param0});
  }
  throw std::invalid_argument("visit_binary_op: unknown op " + std::to_string(int(call.op)));
}

// The call that names a functor: the inverse of visit_binary_op, for ops that hold the functor.
inline BinaryOpCall binary_op_call(AddOp) {
  return BinaryOp::add;
}
inline BinaryOpCall binary_op_call(SubOp) {
  return BinaryOp::sub;
}
inline BinaryOpCall binary_op_call(MulOp) {
  return BinaryOp::mul;
}
inline BinaryOpCall binary_op_call(DivOp) {
  return BinaryOp::div;
}
inline BinaryOpCall binary_op_call(PowOp) {
  return BinaryOp::pow;
}
inline BinaryOpCall binary_op_call(MaximumOp) {
  return BinaryOp::maximum;
}
inline BinaryOpCall binary_op_call(MinimumOp) {
  return BinaryOp::minimum;
}
inline BinaryOpCall binary_op_call(EqOp) {
  return BinaryOp::eq;
}
inline BinaryOpCall binary_op_call(NeOp) {
  return BinaryOp::ne;
}
inline BinaryOpCall binary_op_call(LtOp) {
  return BinaryOp::lt;
}
inline BinaryOpCall binary_op_call(LeOp) {
  return BinaryOp::le;
}
inline BinaryOpCall binary_op_call(GtOp) {
  return BinaryOp::gt;
}
inline BinaryOpCall binary_op_call(GeOp) {
  return BinaryOp::ge;
}
inline BinaryOpCall binary_op_call(ReluGradOp) {
  return BinaryOp::relu_grad;
}
inline BinaryOpCall binary_op_call(SigmoidGradOp) {
  return BinaryOp::sigmoid_grad;
}
inline BinaryOpCall binary_op_call(TanhGradOp) {
  return BinaryOp::tanh_grad;
}
inline BinaryOpCall binary_op_call(SqrtGradOp) {
  return BinaryOp::sqrt_grad;
}
inline BinaryOpCall binary_op_call(AbsGradOp) {
  return BinaryOp::abs_grad;
}
inline BinaryOpCall binary_op_call(PowScalarGradOp f) {
  return {BinaryOp::pow_scalar_grad, f.exponent};
}
inline BinaryOpCall binary_op_call(ClampGradOp f) {
  return {BinaryOp::clamp_grad, f.low, f.high};
}
inline BinaryOpCall binary_op_call(AddScaledOp f) {
  return {BinaryOp::add_scaled, f.alpha};
}

}  // namespace icd::kernels
