// Names for the unary functors of engine/kernels/elementwise_math.h (see binary_op.h for why): the
// enum crosses from host-compiled ops to the CUDA backend, visit_unary_op turns it back into the
// functor, unary_op_call turns a functor into it. Functors with parameters (PowScalarOp, ClampOp,
// ScaleOp) carry them in the call.
#pragma once
#include <stdexcept>
#include <string>

#include "engine/kernels/elementwise_math.h"
#include "engine/kernels/half_math.h"

namespace icd::kernels {

enum class UnaryOp {
  neg,
  exp,
  log,
  sqrt,
  abs,
  relu,
  tanh,
  sigmoid,
  pow_scalar,  // param0: the exponent
  clamp,       // param0, param1: low, high
  scale,       // param0: the factor (mul_)
  round_f16,   // to the nearest f16 value (mixed precision)
  round_bf16,  // to the nearest bf16 value
};
constexpr int kUnaryOpCount = int(UnaryOp::round_bf16) + 1;

struct UnaryOpCall {
  UnaryOp op;
  double param0 = 0, param1 = 0;
  UnaryOpCall(UnaryOp op, double param0 = 0, double param1 = 0) : op(op), param0(param0), param1(param1) {}
  bool operator==(const UnaryOpCall&) const = default;
};

inline const char* unary_op_name(UnaryOp op) {
  constexpr const char* names[kUnaryOpCount] = {"neg",   "exp",       "log",       "sqrt",       "abs",
                                                "relu",  "tanh",      "sigmoid",   "pow_scalar", "clamp",
                                                "scale", "round_f16", "round_bf16"};
  int index = int(op);
  return index >= 0 && index < kUnaryOpCount ? names[index] : "?";
}

template <class F>
decltype(auto) visit_unary_op(UnaryOpCall call, F&& f) {
  switch (call.op) {
    case UnaryOp::neg:
      return f(NegOp{});
    case UnaryOp::exp:
      return f(ExpOp{});
    case UnaryOp::log:
      return f(LogOp{});
    case UnaryOp::sqrt:
      return f(SqrtOp{});
    case UnaryOp::abs:
      return f(AbsOp{});
    case UnaryOp::relu:
      return f(ReluOp{});
    case UnaryOp::tanh:
      return f(TanhOp{});
    case UnaryOp::sigmoid:
      return f(SigmoidOp{});
    case UnaryOp::pow_scalar:
      return f(PowScalarOp{call.param0});
    case UnaryOp::clamp:
      return f(ClampOp{call.param0, call.param1});
    case UnaryOp::scale:
      return f(ScaleOp{call.param0});
    case UnaryOp::round_f16:
      return f(RoundF16Op{});
    case UnaryOp::round_bf16:
      return f(RoundBf16Op{});
  }
  throw std::invalid_argument("visit_unary_op: unknown op " + std::to_string(int(call.op)));
}

inline UnaryOpCall unary_op_call(NegOp) {
  return UnaryOp::neg;
}
inline UnaryOpCall unary_op_call(ExpOp) {
  return UnaryOp::exp;
}
inline UnaryOpCall unary_op_call(LogOp) {
  return UnaryOp::log;
}
inline UnaryOpCall unary_op_call(SqrtOp) {
  return UnaryOp::sqrt;
}
inline UnaryOpCall unary_op_call(AbsOp) {
  return UnaryOp::abs;
}
inline UnaryOpCall unary_op_call(ReluOp) {
  return UnaryOp::relu;
}
inline UnaryOpCall unary_op_call(TanhOp) {
  return UnaryOp::tanh;
}
inline UnaryOpCall unary_op_call(SigmoidOp) {
  return UnaryOp::sigmoid;
}
inline UnaryOpCall unary_op_call(PowScalarOp f) {
  return {UnaryOp::pow_scalar, f.exponent};
}
inline UnaryOpCall unary_op_call(ClampOp f) {
  return {UnaryOp::clamp, f.low, f.high};
}
inline UnaryOpCall unary_op_call(ScaleOp f) {
  return {UnaryOp::scale, f.factor};
}
inline UnaryOpCall unary_op_call(RoundF16Op) {
  return UnaryOp::round_f16;
}
inline UnaryOpCall unary_op_call(RoundBf16Op) {
  return UnaryOp::round_bf16;
}

}  // namespace icd::kernels
