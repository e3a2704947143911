// The CPU launch of the kernel bodies the CUDA backend runs: every binary functor of
// engine/kernels/elementwise_math.h, reached through its BinaryOp name as the CUDA entry point reaches
// it, in f32 and f64, against values worked out by hand. Runs on every machine, GPU or not.
#include <doctest/doctest.h>

#include <cmath>
#include <set>
#include <string>
#include <vector>

#include "engine/kernels/binary_op.h"
#include "engine/kernels/launch.h"

using namespace icd::kernels;

namespace {
// Inputs exactly representable in f32, chosen so every expected value below is exact too.
const std::vector<double> kA = {1.5, -2, 3, 0.25, 4};
const std::vector<double> kB = {0.5, 4, 3, -2, 2};
// pow gets positive bases, so every result is real.
const std::vector<double> kPowBase = {2, 9, 0.25, 4, 1.5};
const std::vector<double> kPowExponent = {3, 0.5, -1, -0.5, 2};

struct Case {
  BinaryOp op;
  std::vector<double> a, b, expected;
};

const std::vector<Case>& cases() {
  static const std::vector<Case> all = {
      {BinaryOp::add, kA, kB, {2, 2, 6, -1.75, 6}},
      {BinaryOp::sub, kA, kB, {1, -6, 0, 2.25, 2}},
      {BinaryOp::mul, kA, kB, {0.75, -8, 9, -0.5, 8}},
      {BinaryOp::div, kA, kB, {3, -0.5, 1, -0.125, 2}},
      {BinaryOp::pow, kPowBase, kPowExponent, {8, 3, 4, 0.5, 2.25}},
      {BinaryOp::maximum, kA, kB, {1.5, 4, 3, 0.25, 4}},
      {BinaryOp::minimum, kA, kB, {0.5, -2, 3, -2, 2}},
      {BinaryOp::eq, kA, kB, {0, 0, 1, 0, 0}},
      {BinaryOp::ne, kA, kB, {1, 1, 0, 1, 1}},
      {BinaryOp::lt, kA, kB, {0, 1, 0, 0, 0}},
      {BinaryOp::le, kA, kB, {0, 1, 1, 0, 0}},
      {BinaryOp::gt, kA, kB, {1, 0, 0, 1, 1}},
      {BinaryOp::ge, kA, kB, {1, 0, 1, 1, 1}},
      // Backward bodies f(g, saved): g = kA, saved = kB (x for relu/abs, y for sigmoid/tanh/sqrt).
      {BinaryOp::relu_grad, kA, {0.5, 4, 0, -2, 2}, {1.5, -2, 0, 0, 4}},     // x = 0 passes nothing
      {BinaryOp::sigmoid_grad, kA, kB, {0.375, 24, -18, -1.5, -8}},          // g y (1 - y)
      {BinaryOp::tanh_grad, kA, kB, {1.125, 30, -24, -0.75, -12}},           // g (1 - y^2)
      {BinaryOp::sqrt_grad, kA, kB, {1.5, -0.25, 0.5, -0.0625, 1}},          // g / (2 y)
      {BinaryOp::abs_grad, kA, {0.5, 4, 0, -2, 2}, {1.5, -2, 0, -0.25, 4}},  // sign(x) g, 0 at 0
  };
  return all;
}

template <class T>
std::vector<T> as(const std::vector<double>& values) {
  return std::vector<T>(values.begin(), values.end());
}

template <class T>
void check_case(const Case& c) {
  std::vector<T> a = as<T>(c.a), b = as<T>(c.b), out(a.size(), T(-99));
  visit_binary_op(c.op,
                  [&](auto f) { cpu_launch_binary(f, a.data(), b.data(), out.data(), int64_t(a.size())); });
  for (std::size_t i = 0; i < out.size(); ++i) {
    CAPTURE(i);
    if (c.op == BinaryOp::pow)  // std::pow need not be exact; within a few ulps of the exact value
      CHECK(out[i] == doctest::Approx(T(c.expected[i])).epsilon(sizeof(T) == 4 ? 1e-6 : 1e-14));
    else
      CHECK(out[i] == T(c.expected[i]));
  }
}
}  // namespace

TEST_CASE("every BinaryOp has a name and a hand-checked case") {
  std::set<int> covered;
  std::set<std::string> names;
  for (const Case& c : cases()) {
    covered.insert(int(c.op));
    names.insert(binary_op_name(c.op));
  }
  CHECK(int(covered.size()) == kBinaryOpCount);
  CHECK(int(names.size()) == kBinaryOpCount);
  CHECK(names.count("?") == 0);
  CHECK(std::string(binary_op_name(BinaryOp(kBinaryOpCount))) == "?");
  CHECK_THROWS_AS(visit_binary_op(BinaryOp(kBinaryOpCount), [](auto) { return 0; }), std::invalid_argument);
}

TEST_CASE("cpu_launch_binary runs each functor over f32 and f64 arrays") {
  for (const Case& c : cases()) {
    CAPTURE(binary_op_name(c.op));
    check_case<float>(c);
    check_case<double>(c);
  }
}

TEST_CASE("cpu_launch_binary: n = 0 writes nothing, and out may alias an input") {
  std::vector<double> a = {1, 2, 3}, b = {10, 20, 30};
  std::vector<double> out = {-1, -1, -1};
  cpu_launch_binary(AddOp{}, a.data(), b.data(), out.data(), 0);
  CHECK(out == std::vector<double>{-1, -1, -1});
  cpu_launch_binary(MulOp{}, a.data(), b.data(), a.data(), 3);
  CHECK(a == std::vector<double>{10, 40, 90});
}

TEST_CASE("comparison bodies on NaN, division by zero") {
  const double nan = std::nan("");
  // NaN compares false with everything, itself included; maximum/minimum still give NaN when either
  // argument is NaN, as torch.maximum / torch.minimum do (and the GPU runs this same body).
  CHECK(EqOp{}(nan, nan) == 0.0);
  CHECK(NeOp{}(nan, nan) == 1.0);
  CHECK(LtOp{}(nan, 1.0) == 0.0);
  CHECK(std::isnan(MaximumOp{}(nan, 1.0)));
  CHECK(std::isnan(MaximumOp{}(1.0, nan)));
  CHECK(std::isnan(MinimumOp{}(nan, 1.0)));
  CHECK(std::isnan(MinimumOp{}(1.0, nan)));
  CHECK(MaximumOp{}(-0.5f, 2.0f) == 2.0f);
  CHECK(MinimumOp{}(-0.5f, 2.0f) == -0.5f);
  CHECK(DivOp{}(1.0f, 0.0f) == INFINITY);
  CHECK(SqrtGradOp{}(1.0, 0.0) == INFINITY);
}
