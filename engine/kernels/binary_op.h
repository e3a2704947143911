// Names for the binary functors of engine/kernels/elementwise_math.h, so that code compiled by the host
// compiler can ask the CUDA backend for one of them (a functor type cannot cross that boundary, an enum
// can). visit_binary_op turns the name back into the functor; the CUDA entry point and the tests both
// use it, so the mapping from name to arithmetic is written once and tested on the CPU.
#pragma once
#include <stdexcept>
#include <string>

#include "engine/kernels/elementwise_math.h"

namespace icd::kernels {

// Forward ops f(a, b), comparisons (1/0 in the inputs' dtype) and the backward bodies f(g, saved) of
// the unary ops. Functors that carry parameters (PowScalarGradOp, ClampGradOp) are not listed.
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
};
constexpr int kBinaryOpCount = int(BinaryOp::abs_grad) + 1;

inline const char* binary_op_name(BinaryOp op) {
  constexpr const char* names[kBinaryOpCount] = {
      "add", "sub", "mul", "div", "pow",       "maximum",      "minimum",   "eq",        "ne",
      "lt",  "le",  "gt",  "ge",  "relu_grad", "sigmoid_grad", "tanh_grad", "sqrt_grad", "abs_grad"};
  int index = int(op);
  return index >= 0 && index < kBinaryOpCount ? names[index] : "?";
}

// Calls f(Functor{}) for the functor that `op` names and returns what f returns.
template <class F>
decltype(auto) visit_binary_op(BinaryOp op, F&& f) {
  switch (op) {
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
  }
  throw std::invalid_argument("visit_binary_op: unknown op " + std::to_string(int(op)));
}

}  // namespace icd::kernels
