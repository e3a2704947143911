// The CPU launch of the kernel bodies the CUDA backend runs: every binary and unary functor of
// engine/kernels/elementwise_math.h, reached through its BinaryOp / UnaryOp name as the CUDA entry points
// reach it, in f32 and f64; the strided offsets of views (engine/kernels/strided_index.h); strided maps,
// copies and fills; the sum in the GPU's fixed order (engine/kernels/reduce_sum.h); the losses
// (loss_math.h), the reductions along a dimension (reduce_dim.h), the indexing ops (index_math.h) and
// the sort key of topk (sort_key.h).
// All against values worked out by hand. Runs on every machine, GPU or not.
#include <doctest/doctest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <set>
#include <string>
#include <vector>

#include "engine/kernels/binary_op.h"
#include "engine/kernels/gemm_plan.h"
#include "engine/kernels/index_math.h"
#include "engine/kernels/launch.h"
#include "engine/kernels/loss_math.h"
#include "engine/kernels/reduce_dim.h"
#include "engine/kernels/reduce_sum.h"
#include "engine/kernels/sort_key.h"
#include "engine/kernels/strided_index.h"
#include "engine/kernels/unary_op.h"

using namespace icd::kernels;

namespace {
// Inputs exactly representable in f32, chosen so every expected value below is exact too.
const std::vector<double> kA = {1.5, -2, 3, 0.25, 4};
const std::vector<double> kB = {0.5, 4, 3, -2, 2};
// pow gets positive bases, so every result is real.
const std::vector<double> kPowBase = {2, 9, 0.25, 4, 1.5};
const std::vector<double> kPowExponent = {3, 0.5, -1, -0.5, 2};

struct Case {
  BinaryOpCall call;
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
      // g * 2 * x^1, and the gradient of clamp to [-2, 3]: passes where -2 <= x <= 3.
      {{BinaryOp::pow_scalar_grad, 2.0}, kA, kB, {1.5, -16, 18, -1, 16}},
      {{BinaryOp::clamp_grad, -2.0, 3.0}, kA, {0.5, 4, 3, -2, -2.5}, {1.5, 0, 3, 0.25, 0}},
      {{BinaryOp::add_scaled, -0.5}, kA, kB, {1.25, -4, 1.5, 1.25, 3}},  // dst + alpha src
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
  visit_binary_op(c.call,
                  [&](auto f) { cpu_launch_binary(f, a.data(), b.data(), out.data(), int64_t(a.size())); });
  for (std::size_t i = 0; i < out.size(); ++i) {
    CAPTURE(i);
    if (c.call.op == BinaryOp::pow)  // std::pow need not be exact; within a few ulps of the exact value
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
    covered.insert(int(c.call.op));
    names.insert(binary_op_name(c.call.op));
    // The functor visit_binary_op hands out maps back to the same call, parameters included.
    CHECK(visit_binary_op(c.call, [](auto f) { return binary_op_call(f); }) == c.call);
  }
  CHECK(int(covered.size()) == kBinaryOpCount);
  CHECK(int(names.size()) == kBinaryOpCount);
  CHECK(names.count("?") == 0);
  CHECK(std::string(binary_op_name(BinaryOp(kBinaryOpCount))) == "?");
  CHECK_THROWS_AS(visit_binary_op(BinaryOp(kBinaryOpCount), [](auto) { return 0; }), std::invalid_argument);
}

TEST_CASE("cpu_launch_binary runs each functor over f32 and f64 arrays") {
  for (const Case& c : cases()) {
    CAPTURE(binary_op_name(c.call.op));
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

namespace {
struct UnaryCase {
  UnaryOpCall call;
  std::vector<double> x, expected;
};

const std::vector<UnaryCase>& unary_cases() {
  static const std::vector<UnaryCase> all = {
      {UnaryOp::neg, {1.5, -2, 0}, {-1.5, 2, 0}},
      {UnaryOp::exp, {0, 1}, {1, 2.718281828459045}},
      {UnaryOp::log, {1, 0.25}, {0, -1.3862943611198906}},
      {UnaryOp::sqrt, {4, 0.25, 0}, {2, 0.5, 0}},
      {UnaryOp::abs, {-1.5, 2, 0}, {1.5, 2, 0}},
      {UnaryOp::relu, {-1.5, 2, 0}, {0, 2, 0}},
      {UnaryOp::tanh, {0, 0.5}, {0, 0.46211715726000974}},
      {UnaryOp::sigmoid, {0, -1, 1}, {0.5, 0.2689414213699951, 0.7310585786300049}},
      {{UnaryOp::pow_scalar, 3.0}, {2, -0.5, 1.5}, {8, -0.125, 3.375}},
      {{UnaryOp::clamp, -1.0, 0.5}, {-2, 0.25, 3}, {-1, 0.25, 0.5}},
      {{UnaryOp::scale, -2.0}, {1.5, -0.25, 0}, {-3, 0.5, 0}},
      // Ties to even: 1 + 2^-11 lies halfway between 1 and 1 + 2^-10, 1 + 3 2^-11 between 1 + 2^-10 and
      // 1 + 2^-9; likewise for bf16 with 2^-8 steps. 0.1 rounds down in f16, up in bf16.
      {UnaryOp::round_f16, {1.00048828125, 1.00146484375, 0.1, -2}, {1, 1.001953125, 0.0999755859375, -2}},
      {UnaryOp::round_bf16, {1.00390625, 1.01171875, 0.1, -2}, {1, 1.015625, 0.10009765625, -2}},
  };
  return all;
}

// A one-dimensional contiguous layout of n elements for `operands` operands.
template <int N>
StridedLayout<N> contiguous_layout(int64_t n) {
  std::array<std::vector<int64_t>, N> strides;
  for (auto& s : strides)
    s = {1};
  return make_strided_layout<N>({n}, strides, "test");
}

template <class T>
void check_unary_case(const UnaryCase& c) {
  std::vector<T> x = as<T>(c.x), out(x.size(), T(-99));
  visit_unary_op(c.call, [&](auto f) {
    cpu_launch_strided_map(f, contiguous_layout<2>(int64_t(x.size())), out.data(), x.data());
  });
  for (std::size_t i = 0; i < out.size(); ++i) {
    CAPTURE(i);
    CHECK(out[i] == doctest::Approx(T(c.expected[i])).epsilon(sizeof(T) == 4 ? 1e-6 : 1e-14));
  }
}
}  // namespace

TEST_CASE("every UnaryOp has a name, a hand-checked case, and maps back from its functor") {
  std::set<int> covered;
  std::set<std::string> names;
  for (const UnaryCase& c : unary_cases()) {
    CAPTURE(unary_op_name(c.call.op));
    covered.insert(int(c.call.op));
    names.insert(unary_op_name(c.call.op));
    CHECK(visit_unary_op(c.call, [](auto f) { return unary_op_call(f); }) == c.call);
    check_unary_case<float>(c);
    check_unary_case<double>(c);
  }
  CHECK(int(covered.size()) == kUnaryOpCount);
  CHECK(int(names.size()) == kUnaryOpCount);
  CHECK(std::string(unary_op_name(UnaryOp(kUnaryOpCount))) == "?");
  CHECK_THROWS_AS(visit_unary_op(UnaryOp(kUnaryOpCount), [](auto) { return 0; }), std::invalid_argument);
}

TEST_CASE("strided offsets of permuted, sliced and expanded views") {
  // A row-major [2, 3, 4] tensor: strides 12, 4, 1. Its permutation (2, 0, 1) has shape [4, 2, 3] and
  // strides 1, 12, 4: element i = (a, b, c) row-major over [4, 2, 3] lives at a + 12 b + 4 c.
  StridedLayout<1> permuted;
  permuted.ndim = 3;
  permuted.numel = 24;
  const int64_t sizes[3] = {4, 2, 3}, strides[3] = {1, 12, 4};
  for (int d = 0; d < 3; ++d) {
    permuted.sizes[d] = sizes[d];
    permuted.strides[0][d] = strides[d];
  }
  CHECK(permuted.offset(0, 0) == 0);
  CHECK(permuted.offset(0, 1) == 4);    // (0, 0, 1)
  CHECK(permuted.offset(0, 3) == 12);   // (0, 1, 0)
  CHECK(permuted.offset(0, 6) == 1);    // (1, 0, 0)
  CHECK(permuted.offset(0, 23) == 23);  // (3, 1, 2): 3 + 12 + 8

  // narrow(1, 1, 2) of a [3, 5] row-major tensor: shape [3, 2], strides 5, 1 (the start offset 1 is in
  // the pointer the kernel gets, not in the layout).
  StridedLayout<1> sliced = make_strided_layout<1>({3, 2}, {std::vector<int64_t>{5, 1}}, "test");
  CHECK(sliced.ndim == 2);
  const std::vector<int64_t> sliced_offsets = {0, 1, 5, 6, 10, 11};
  for (int64_t i = 0; i < 6; ++i)
    CHECK(sliced.offset(0, i) == sliced_offsets[i]);

  // A [3] vector expanded to [2, 3] (stride 0 along the new dim) next to a contiguous [2, 3] output.
  StridedLayout<2> expanded =
      make_strided_layout<2>({2, 3}, {std::vector<int64_t>{3, 1}, std::vector<int64_t>{0, 1}}, "test");
  int64_t off[2];
  const std::vector<std::array<int64_t, 2>> expected = {{0, 0}, {1, 1}, {2, 2}, {3, 0}, {4, 1}, {5, 2}};
  for (int64_t i = 0; i < 6; ++i) {
    expanded.offsets(i, off);
    CHECK(off[0] == expected[i][0]);
    CHECK(off[1] == expected[i][1]);
    CHECK(expanded.offset(1, i) == expected[i][1]);
  }
}

TEST_CASE("make_strided_layout merges back-to-back dims, drops size-1 dims, caps the dimension count") {
  // Contiguous [2, 3, 4] in two operands: one dimension of 24.
  StridedLayout<2> flat = make_strided_layout<2>(
      {2, 3, 4}, {std::vector<int64_t>{12, 4, 1}, std::vector<int64_t>{12, 4, 1}}, "test");
  CHECK(flat.ndim == 1);
  CHECK(flat.numel == 24);
  CHECK(flat.sizes[0] == 24);
  CHECK(flat.strides[1][0] == 1);
  // The second operand has its last two dims transposed, so nothing merges; the size-1 dim is dropped.
  StridedLayout<2> mixed = make_strided_layout<2>(
      {2, 1, 3, 4}, {std::vector<int64_t>{12, 12, 4, 1}, std::vector<int64_t>{12, 99, 1, 3}}, "test");
  CHECK(mixed.ndim == 3);
  CHECK(mixed.numel == 24);
  // 0-d: one element at offset 0; an empty shape anywhere: nothing to visit.
  StridedLayout<1> scalar = make_strided_layout<1>({}, {std::vector<int64_t>{}}, "test");
  CHECK(scalar.ndim == 0);
  CHECK(scalar.numel == 1);
  CHECK(scalar.offset(0, 0) == 0);
  CHECK(make_strided_layout<1>({3, 0}, {std::vector<int64_t>{0, 1}}, "test").numel == 0);
  // Nine dims that cannot merge (every stride 3x too large) exceed kMaxDims; the error names the op.
  std::vector<int64_t> shape(9, 2), strides(9);
  for (int d = 8, s = 1; d >= 0; --d, s *= 6)
    strides[d] = s;
  CHECK_THROWS_WITH_AS(make_strided_layout<1>(shape, {strides}, "my_op"), doctest::Contains("my_op"),
                       std::invalid_argument);
  CHECK_THROWS_AS(make_strided_layout<1>({2, 2}, {std::vector<int64_t>{1}}, "test"), std::invalid_argument);
}

TEST_CASE("cpu_launch_strided_map: broadcast binary, where, converting copy, fill of a strided view") {
  // out[2, 3] = a[2, 1] - b[3] (a broadcast along columns, b along rows).
  const std::vector<double> a = {10, 20}, b = {1, 2, 3};
  std::vector<double> out(6, -1);
  StridedLayout<3> layout = make_strided_layout<3>(
      {2, 3}, {std::vector<int64_t>{3, 1}, std::vector<int64_t>{1, 0}, std::vector<int64_t>{0, 1}}, "test");
  cpu_launch_strided_map(SubOp{}, layout, out.data(), a.data(), b.data());
  CHECK(out == std::vector<double>{9, 8, 7, 19, 18, 17});

  // where(condition[3], x[2, 3] transposed from [3, 2], y = scalar).
  const std::vector<float> condition = {1, 0, 2}, x_storage = {1, 2, 3, 4, 5, 6}, y = {-1};
  std::vector<float> selected(6, 0);
  StridedLayout<4> where_layout =
      make_strided_layout<4>({2, 3},
                             {std::vector<int64_t>{3, 1}, std::vector<int64_t>{0, 1},
                              std::vector<int64_t>{1, 2}, std::vector<int64_t>{0, 0}},
                             "test");
  cpu_launch_strided_map(WhereOp{}, where_layout, selected.data(), condition.data(), x_storage.data(),
                         y.data());
  CHECK(selected == std::vector<float>{1, -1, 5, 2, -1, 6});

  // A copy that converts f64 to i64 (truncating, as static_cast does) in reversed order.
  const std::vector<double> source = {1.75, -2.5, 3.0};
  std::vector<int64_t> converted(3, 0);
  StridedLayout<2> reversed =
      make_strided_layout<2>({3}, {std::vector<int64_t>{1}, std::vector<int64_t>{-1}}, "test");
  cpu_launch_strided_map(CopyOp{}, reversed, converted.data(), source.data() + 2);
  CHECK(converted == std::vector<int64_t>{3, -2, 1});

  // fill the second column of a [3, 2] buffer.
  std::vector<double> grid(6, 0);
  cpu_launch_strided_map(ConstantOp<double>{7},
                         make_strided_layout<1>({3}, {std::vector<int64_t>{2}}, "test"), grid.data() + 1);
  CHECK(grid == std::vector<double>{0, 7, 0, 7, 0, 7});
}

namespace {
// x[o, j] = o * 1000 + j over a [outputs, per_output] tensor stored transposed (strides 1, outputs),
// summed over j: every partial sum is an integer below 2^53, so any order gives the exact value.
void check_sum(int64_t outputs, int64_t per_output, const SumPlan& plan) {
  CAPTURE(outputs);
  CAPTURE(per_output);
  CAPTURE(plan.threads);
  CAPTURE(plan.chunks);
  std::vector<double> x(outputs * per_output);
  for (int64_t o = 0; o < outputs; ++o)
    for (int64_t j = 0; j < per_output; ++j)
      x[j * outputs + o] = double(o * 1000 + j);
  SumLayout layout{make_strided_layout<1>({outputs}, {std::vector<int64_t>{1}}, "test"),
                   make_strided_layout<1>({per_output}, {std::vector<int64_t>{outputs}}, "test")};
  std::vector<double> out(outputs, -1);
  cpu_launch_sum(x.data(), layout, plan, out.data());
  for (int64_t o = 0; o < outputs; ++o)
    CHECK(out[o] == double(o * 1000 * per_output + per_output * (per_output - 1) / 2));
}
}  // namespace

TEST_CASE("cpu_launch_sum: serial, tree and chunked plans give the exact sums") {
  check_sum(5, 7, plan_sum(5, 7));  // short outputs: one thread each
  CHECK(plan_sum(5, 7).threads == 1);
  check_sum(3, 1000, plan_sum(3, 1000));  // one block per output, a tree of kSumThreads partials
  CHECK(plan_sum(3, 1000).threads == kSumThreads);
  CHECK(plan_sum(3, 1000).chunks == 1);
  SumPlan chunked{4, 3, 5};  // 3 chunks of 5 (the last one short), 4 threads each
  check_sum(2, 13, chunked);
  check_sum(4, 0, plan_sum(4, 0));  // a sum of nothing is 0
}

TEST_CASE("plan_sum splits few long outputs into chunks that cover every element once") {
  for (int64_t outputs : {int64_t(1), int64_t(3), int64_t(5000)}) {
    for (int64_t per_output : {int64_t(33), int64_t(100000), int64_t(1) << 24}) {
      CAPTURE(outputs);
      CAPTURE(per_output);
      SumPlan plan = plan_sum(outputs, per_output);
      CHECK(plan.chunks * plan.chunk_length >= per_output);
      CHECK((plan.chunks - 1) * plan.chunk_length < per_output);
      CHECK((plan.threads & (plan.threads - 1)) == 0);
      if (outputs == 1 && per_output == (int64_t(1) << 24)) CHECK(plan.chunks > 1);
      if (outputs == 5000) CHECK(plan.chunks == 1);
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// Losses (engine/kernels/loss_math.h), reductions along a dimension (reduce_dim.h), indexing
// (index_math.h): the bodies the CUDA kernels run, on the CPU.

namespace {
// |actual - expected| <= relative |expected| (relative 0: exactly equal).
void check_close(double actual, double expected, double relative) {
  CHECK(std::abs(actual - expected) <= relative * std::abs(expected));
}

template <class T>
void check_terms(const LossTerms<T>& r, double loss, double d_input, double d_target, double relative) {
  check_close(double(r.loss), loss, relative);
  check_close(double(r.d_input), d_input, relative);
  check_close(double(r.d_target), d_target, relative);
}

template <class T>
void check_loss_bodies() {
  const double relative = sizeof(T) == 4 ? 1e-6 : 1e-14;
  // Regression losses on d = x - y, exact in both types.
  check_terms(MseBody{}(T(3), T(1)), 4, 4, -4, 0);
  check_terms(L1Body{}(T(1.5), T(2)), 0.5, -1, 1, 0);
  check_terms(L1Body{}(T(2), T(2)), 0, 0, 0, 0);  // sign(0) = 0, as torch
  check_terms(SmoothL1Body{1.0}(T(1.5), T(1)), 0.125, 0.5, -0.5, 0);
  check_terms(SmoothL1Body{1.0}(T(4), T(1)), 2.5, 1, -1, 0);
  check_terms(SmoothL1Body{0.5}(T(-1), T(0)), 0.75, -1, 1, 0);
  // BCE: at x = 0, p = q = 1/2; at x = 2, t = 0 it is softplus(2) with slope sigmoid(2).
  check_terms(BceBody{}(T(0), T(1)), std::log(2.0), -0.5, 0, relative);
  const double sigmoid2 = 1 / (1 + std::exp(-2.0));
  check_terms(BceBody{}(T(2), T(0)), std::log1p(std::exp(2.0)), sigmoid2, -2, relative);
  check_terms(BceBody{}(T(-1), T(0.25)), std::log1p(std::exp(-1.0)) + 0.25, 1 / (1 + std::exp(1.0)) - 0.25, 1,
              relative);
  // A confident correct logit: the loss log1p(e^-40) ~ 4e-18 is not rounded away, derivatives stay finite.
  const LossTerms<T> confident = BceBody{}(T(-40), T(0));
  check_close(double(confident.loss), std::exp(-40.0), relative);
  check_close(double(confident.d_input), std::exp(-40.0), relative);
  // Focal (alpha 0.25, gamma 2) at x = 0, t = 1: m = 1/2, loss = 0.25 log2 m^2; the derivative
  // 0.25 (d_ce m^2 + ce 2 m^2 (dm/dx / m)) with d_ce = -1/2, dm/dx / m = p q (1 - 2t) / m = -1/2.
  check_terms(FocalBody{0.25, 2.0}(T(0), T(1)), 0.25 * std::log(2.0) * 0.25,
              0.25 * (-0.5 * 0.25 + std::log(2.0) * 2 * 0.25 * -0.5), 0, relative);
  // alpha < 0 (no weighting) and gamma 0: plain BCE.
  check_terms(FocalBody{-1.0, 0.0}(T(2), T(0)), std::log1p(std::exp(2.0)), sigmoid2, 0, relative);
  // m = 1 - p_t underflows (to 0 in f32) for a very confident correct prediction: loss and slope
  // vanish instead of turning into NaN.
  const LossTerms<T> saturated = FocalBody{0.25, 2.0}(T(200), T(1));
  CHECK(saturated.loss >= T(0));
  CHECK(double(saturated.loss) < 1e-30);
  CHECK(std::isfinite(double(saturated.d_input)));
  CHECK(std::abs(double(saturated.d_input)) < 1e-30);
}

template <class T>
void check_pointwise_element() {
  // w = 2, scale = 1/2 (a mean over 2 elements) on MSE(3, 1) = 4.
  T per_element[2] = {-1, -1}, d_input[2] = {-1, -1}, d_target[2] = {-1, -1}, d_weight[2] = {-1, -1};
  const PointwiseLossOutputs<T> all{per_element, d_input, d_target, d_weight};
  CHECK(pointwise_loss_element(MseBody{}, T(3), T(1), T(2), T(0.5), 1, all) == T(8));
  CHECK(per_element[1] == T(8));
  CHECK(d_input[1] == T(4));
  CHECK(d_target[1] == T(-4));
  CHECK(d_weight[1] == T(2));
  CHECK(per_element[0] == T(-1));  // only element i is written
  const PointwiseLossOutputs<T> none{nullptr, nullptr, nullptr, nullptr};
  CHECK(pointwise_loss_element(L1Body{}, T(1), T(4), T(1), T(1), 0, none) == T(3));
}
}  // namespace

TEST_CASE("loss bodies: hand-checked values and derivatives, stable at large logits, f32 and f64") {
  check_loss_bodies<float>();
  check_loss_bodies<double>();
  check_pointwise_element<float>();
  check_pointwise_element<double>();
}

TEST_CASE("loss_call and visit_pointwise_loss name each body and its parameters") {
  auto round_trip = [](const PointwiseLossCall& call) {
    return visit_pointwise_loss(call, [](auto body) { return loss_call(body); });
  };
  const PointwiseLossCall focal = round_trip(loss_call(FocalBody{0.3, 1.5}));
  CHECK(focal.loss == PointwiseLoss::focal);
  CHECK(focal.alpha == 0.3);
  CHECK(focal.gamma == 1.5);
  const PointwiseLossCall smooth = round_trip(loss_call(SmoothL1Body{0.75}));
  CHECK(smooth.loss == PointwiseLoss::smooth_l1);
  CHECK(smooth.beta == 0.75);
  CHECK(round_trip(loss_call(BceBody{})).loss == PointwiseLoss::bce);
  CHECK(round_trip(loss_call(L1Body{})).loss == PointwiseLoss::l1);
  CHECK(round_trip(loss_call(MseBody{})).loss == PointwiseLoss::mse);
  CHECK_THROWS_AS(visit_pointwise_loss(PointwiseLossCall{PointwiseLoss(99)}, [](auto) { return 0; }),
                  std::invalid_argument);
}

TEST_CASE("cross_entropy_row: loss, gradient times scale, ties, ignored rows") {
  const std::vector<double> row = {1, 2, 3};
  std::vector<double> drow(3, -1);
  double loss = -1;
  const double expected = std::log(1 + std::exp(-1.0) + std::exp(-2.0));  // lse - x[2]
  CHECK(cross_entropy_row(row.data(), 3, 2, true, 0.5, &loss, drow.data()) == doctest::Approx(expected));
  CHECK(loss == doctest::Approx(expected));
  const double total = std::exp(1.0) + std::exp(2.0) + std::exp(3.0);
  CHECK(drow[0] == doctest::Approx(0.5 * std::exp(1.0) / total));
  CHECK(drow[1] == doctest::Approx(0.5 * std::exp(2.0) / total));
  CHECK(drow[2] == doctest::Approx(0.5 * (std::exp(3.0) / total - 1)));
  // All logits tied: softmax 1/2 each.
  const std::vector<float> tie = {4, 4};
  std::vector<float> dtie(2);
  float tie_loss = -1;
  CHECK(cross_entropy_row(tie.data(), 2, 0, true, 1.0, &tie_loss, dtie.data()) ==
        doctest::Approx(std::log(2.0)).epsilon(1e-6));
  CHECK(dtie == std::vector<float>{-0.5f, 0.5f});
  // An ignored row: its label (here out of range) is not read; loss and gradient 0.
  CHECK(cross_entropy_row(row.data(), 3, -100, false, 0.5, &loss, drow.data()) == 0.0);
  CHECK(loss == 0.0);
  CHECK(drow == std::vector<double>{0, 0, 0});
  CHECK(cross_entropy_row(row.data(), 3, 0, true, 1.0, &loss, static_cast<double*>(nullptr)) ==
        doctest::Approx(std::log(total) - 1));
}

namespace {
// The GPU's way through one lane: `threads` partial extremes (thread t takes t, t + threads, ...),
// combined in the kernel's tree order.
template <bool kMax>
ExtremeAt<double> tree_extreme(const std::vector<double>& lane, int threads) {
  std::vector<ExtremeAt<double>> part(threads);
  for (int t = 0; t < threads; ++t)
    part[t] = extreme_of_lane<kMax>(lane.data(), 1, t, int64_t(lane.size()), threads);
  for (int s = threads / 2; s > 0; s >>= 1)
    for (int t = 0; t < s; ++t)
      part[t] = combine_extremes<kMax>(part[t], part[t + s]);
  return part[0];
}
}  // namespace

TEST_CASE("extreme bodies: first index on ties, NaN first, the same for every thread count") {
  const double nan = std::nan("");
  struct LaneCase {
    std::vector<double> lane;
    int64_t max_at, min_at;
  };
  const std::vector<LaneCase> lanes = {
      {{2, 5, 1, 5, 5, 1, 0, 5}, 1, 6},
      {{3, 3, 3}, 0, 0},
      {{1, nan, 7, nan, -2}, 1, 1},  // the first NaN, for max and min alike
      {{-INFINITY, 4, INFINITY, INFINITY, -INFINITY}, 2, 0},
      {{9}, 0, 0},
  };
  for (const LaneCase& c : lanes) {
    for (int threads : {1, 2, 4, 8, 16}) {
      CAPTURE(threads);
      CAPTURE(c.lane.size());
      CHECK(tree_extreme<true>(c.lane, threads).index == c.max_at);
      CHECK(tree_extreme<false>(c.lane, threads).index == c.min_at);
    }
    const ExtremeAt<double> serial = extreme_of_lane<true>(c.lane.data(), 1, 0, int64_t(c.lane.size()), 1);
    CHECK(serial.index == c.max_at);
  }
  // Strided lanes: lane 5 of [outer 2, n 3, inner 4] starts at 1 * 12 + 1 and steps by 4.
  const LaneLayout layout{2, 3, 4};
  CHECK(layout.lanes() == 8);
  CHECK(layout.start(5) == 13);
  std::vector<float> x(24);
  for (int64_t e = 0; e < 24; ++e)
    x[e] = float(e % 5);
  const ExtremeAt<float> strided = extreme_of_lane<true>(x.data() + layout.start(5), 4, 0, 3, 1);
  CHECK(strided.value == 3.0f);  // elements 13, 17, 21 hold 3, 2, 1
  CHECK(strided.index == 0);
  // No element seen loses to any element.
  CHECK(combine_extremes<true>(ExtremeAt<double>{0, -1}, ExtremeAt<double>{-5, 3}).index == 3);
  CHECK(combine_extremes<true>(ExtremeAt<double>{-5, 3}, ExtremeAt<double>{0, -1}).index == 3);
}

TEST_CASE("scatter_along_element puts g at the saved index and 0 elsewhere") {
  const LaneLayout layout{1, 3, 2};  // dx [1, 3, 2], g and the indices [1, 2]
  const std::vector<double> g = {10, 20};
  const std::vector<int64_t> at = {2, 0};
  std::vector<double> dx(6);
  for (int64_t e = 0; e < 6; ++e)
    dx[e] = scatter_along_element(g.data(), at.data(), layout, e);
  CHECK(dx == std::vector<double>{0, 20, 0, 0, 10, 0});
}

TEST_CASE("logsumexp and softmax bodies: values, infinities, NaN, backward") {
  const std::vector<double> x = {0, std::log(3.0)};
  const double shift = exp_shift(max_of_lane(x.data(), 1, 0, 2, 1));
  CHECK(shift == std::log(3.0));
  const double s = sum_exp_of_lane(x.data(), 1, shift, 0, 2, 1);
  CHECK(s == doctest::Approx(4.0 / 3.0));
  CHECK(logsumexp_of(shift, s) == doctest::Approx(std::log(4.0)));
  // Split over two threads (each a partial sum, added in the tree): the same value.
  CHECK(sum_exp_of_lane(x.data(), 1, shift, 0, 2, 2) + sum_exp_of_lane(x.data(), 1, shift, 1, 2, 2) ==
        doctest::Approx(s));
  std::vector<double> y(2), log_y(2);
  softmax_write_lane<false>(x.data(), y.data(), 1, shift, softmax_finish<false, double>(s), 0, 2, 1);
  softmax_write_lane<true>(x.data(), log_y.data(), 1, shift, softmax_finish<true, double>(s), 0, 2, 1);
  CHECK(y[0] == doctest::Approx(0.25));
  CHECK(y[1] == doctest::Approx(0.75));
  CHECK(log_y[0] == doctest::Approx(std::log(0.25)));
  CHECK(log_y[1] == doctest::Approx(std::log(0.75)));
  // Backward with g = (1, 0): softmax y (g - sum g y) = (0.1875, -0.1875); log_softmax g - exp(y) sum g.
  const std::vector<double> g = {1, 0};
  std::vector<double> dx(2);
  const double gy = softmax_backward_sum<false>(g.data(), y.data(), 1, 0, 2, 1);
  CHECK(gy == doctest::Approx(0.25));
  softmax_backward_write<false>(g.data(), y.data(), dx.data(), 1, gy, 0, 2, 1);
  CHECK(dx[0] == doctest::Approx(0.1875));
  CHECK(dx[1] == doctest::Approx(-0.1875));
  const double g_sum = softmax_backward_sum<true>(g.data(), log_y.data(), 1, 0, 2, 1);
  CHECK(g_sum == 1.0);
  softmax_backward_write<true>(g.data(), log_y.data(), dx.data(), 1, g_sum, 0, 2, 1);
  CHECK(dx[0] == doctest::Approx(0.75));
  CHECK(dx[1] == doctest::Approx(-0.75));
  // +inf in gives +inf; an all -inf lane gives -inf; the maximum ignores NaN; no element: -inf.
  const std::vector<float> inf_lane = {INFINITY, 1}, minus_inf = {-INFINITY, -INFINITY}, with_nan = {NAN, 1};
  const float inf_shift = exp_shift(max_of_lane(inf_lane.data(), 1, 0, 2, 1));
  CHECK(inf_shift == 0.0f);
  CHECK(logsumexp_of(inf_shift, sum_exp_of_lane(inf_lane.data(), 1, inf_shift, 0, 2, 1)) == INFINITY);
  const float minus_shift = exp_shift(max_of_lane(minus_inf.data(), 1, 0, 2, 1));
  CHECK(logsumexp_of(minus_shift, sum_exp_of_lane(minus_inf.data(), 1, minus_shift, 0, 2, 1)) == -INFINITY);
  CHECK(max_of_lane(with_nan.data(), 1, 0, 2, 1) == 1.0f);
  CHECK(std::isnan(sum_exp_of_lane(with_nan.data(), 1, 1.0f, 0, 2, 1)));
  CHECK(max_of_lane(with_nan.data(), 1, 2, 2, 1) == -INFINITY);
}

TEST_CASE("index bodies: index_select, gather and their grouped backward") {
  // x [outer 2, D 3, inner 2] = 0 .. 11; index {2, 0, 2} (K 3) with a repeat.
  std::vector<double> x(12);
  for (int64_t e = 0; e < 12; ++e)
    x[e] = double(e);
  const std::vector<int64_t> index = {2, 0, 2};
  std::vector<double> out(12, -1);
  for (int64_t e = 0; e < 12; ++e)
    index_select_element(x.data(), index.data(), 3, 3, 2, e, out.data());
  CHECK(out == std::vector<double>{4, 5, 0, 1, 4, 5, 10, 11, 6, 7, 10, 11});

  const TargetGroups groups = group_by_target(index, 3);
  CHECK(groups.starts == std::vector<int64_t>{0, 1, 1, 3});
  CHECK(groups.sources == std::vector<int64_t>{1, 0, 2});
  // dx[o, j, i] = the sum of g[o, k, i] over k with index[k] == j; g = 1 .. 12.
  std::vector<double> g(12), dx(12);
  for (int64_t e = 0; e < 12; ++e)
    g[e] = double(e + 1);
  for (int64_t e = 0; e < 12; ++e)
    dx[e] = index_select_backward_element(g.data(), groups.starts.data(), groups.sources.data(), 3, 3, 2, e);
  CHECK(dx == std::vector<double>{3, 4, 0, 0, 1 + 5, 2 + 6, 9, 10, 0, 0, 7 + 11, 8 + 12});

  // gather along dim 1 of x [2, 3] (strides 3, 1): index [[2, 0], [1, 1]].
  const std::vector<int64_t> gather_index = {2, 0, 1, 1};
  const StridedLayout<2> layout =
      make_strided_layout<2>({2, 2}, {std::vector<int64_t>{2, 1}, std::vector<int64_t>{3, 0}}, "test");
  std::vector<double> gathered(4, -1);
  for (int64_t p = 0; p < 4; ++p)
    gather_element(x.data(), gather_index.data(), layout, 1, p, gathered.data());
  CHECK(gathered == std::vector<double>{2, 0, 4, 4});
  // Its backward: the targets of the four reads are 2, 0, 4, 4 (x row-major); element 4 collects two.
  const TargetGroups reads = group_by_target({2, 0, 4, 4}, 6);
  const std::vector<double> g4 = {1, 2, 3, 4};
  std::vector<double> dx6(6);
  for (int64_t q = 0; q < 6; ++q)
    dx6[q] = segment_sum_element(g4.data(), reads.starts.data(), reads.sources.data(), q);
  CHECK(dx6 == std::vector<double>{2, 0, 1, 0, 7, 0});
}

namespace {
// Column-major C = op(X) op(Y) (C m x n, op(X) m x k, op(Y) k x n) exactly as BLAS defines it, with
// plain loops: element (r, c) of a column-major matrix with leading dimension ld is at r + c ld. This is
// what cuBLAS computes from a ColumnMajorGemm.
void column_major_product(const ColumnMajorGemm& g, const std::vector<double>& first,
                          const std::vector<double>& second, std::vector<double>& c) {
  for (int64_t j = 0; j < g.n; ++j)
    for (int64_t i = 0; i < g.m; ++i) {
      double acc = 0;
      for (int64_t p = 0; p < g.k; ++p) {
        const double x = g.trans_first ? first[p + i * g.ld_first] : first[i + p * g.ld_first];
        const double y = g.trans_second ? second[j + p * g.ld_second] : second[p + j * g.ld_second];
        acc += x * y;
      }
      c[i + j * g.ldc] = acc;
    }
}
}  // namespace

TEST_CASE(
    "column_major_gemm: cuBLAS's column-major product of the planned operands is the row-major C = op(A) "
    "op(B)") {
  const int64_t M = 3, N = 4, K = 5;
  for (bool trans_a : {false, true}) {
    for (bool trans_b : {false, true}) {
      CAPTURE(trans_a);
      CAPTURE(trans_b);
      // Stored rows are padded by 2 (a sub-matrix), C's by 1; the padding holds values that must not leak in.
      const int64_t lda = (trans_a ? M : K) + 2, ldb = (trans_b ? K : N) + 2, ldc = N + 1;
      std::vector<double> a((trans_a ? K : M) * lda), b((trans_b ? N : K) * ldb);
      for (std::size_t i = 0; i < a.size(); ++i)
        a[i] = double(i % 7) - 3;
      for (std::size_t i = 0; i < b.size(); ++i)
        b[i] = double(i % 5) - 1;
      const ColumnMajorGemm g = column_major_gemm(trans_a, trans_b, M, N, K, lda, ldb, ldc, "test");
      CHECK(g.m == N);
      CHECK(g.n == M);
      CHECK(g.k == K);
      std::vector<double> c(M * ldc, -99.0);
      column_major_product(g, b, a, c);  // cuBLAS's first operand is B
      for (int64_t m = 0; m < M; ++m) {
        for (int64_t n = 0; n < N; ++n) {
          double expected = 0;
          for (int64_t k = 0; k < K; ++k)
            expected +=
                (trans_a ? a[k * lda + m] : a[m * lda + k]) * (trans_b ? b[n * ldb + k] : b[k * ldb + n]);
          CHECK(c[m * ldc + n] == expected);
        }
        CHECK(c[m * ldc + N] == -99.0);  // C's padding is not written
      }
    }
  }
}

TEST_CASE(
    "column_major_gemm: leading dimensions shorter than a stored row, and negative sizes, are refused") {
  CHECK_NOTHROW(column_major_gemm(false, false, 3, 4, 5, 5, 4, 4, "matmul"));
  CHECK_NOTHROW(column_major_gemm(true, true, 3, 4, 5, 3, 5, 4, "matmul"));
  CHECK_NOTHROW(column_major_gemm(false, false, 3, 4, 0, 1, 4, 4, "matmul"));  // K = 0: ld at least 1
  CHECK_THROWS_WITH_AS(column_major_gemm(false, false, 3, 4, 5, 4, 4, 4, "matmul"),
                       doctest::Contains("matmul (cuBLAS GEMM): lda = 4"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(column_major_gemm(true, false, 3, 4, 5, 2, 4, 4, "matmul"),
                       doctest::Contains("lda = 2"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(column_major_gemm(false, false, 3, 4, 5, 5, 3, 4, "matmul"),
                       doctest::Contains("ldb = 3"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(column_major_gemm(false, true, 3, 4, 5, 5, 4, 4, "matmul"),
                       doctest::Contains("ldb = 4"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(column_major_gemm(false, false, 3, 4, 5, 5, 4, 3, "matmul"),
                       doctest::Contains("ldc = 3"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(column_major_gemm(false, false, 3, 4, 0, 0, 4, 4, "matmul"),
                       doctest::Contains("lda = 0"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(column_major_gemm(false, false, -1, 4, 5, 5, 4, 4, "bmm"),
                       doctest::Contains("bmm (cuBLAS GEMM): negative size"), std::invalid_argument);
}

namespace {
// Every product's offsets, rebuilt from the runs, are the given ones, and the runs tile the batch in order.
void check_runs_cover(const std::vector<int64_t>& a_offsets, const std::vector<int64_t>& b_offsets,
                      const std::vector<GemmRun>& runs) {
  int64_t next = 0;
  for (const GemmRun& run : runs) {
    CHECK(run.first == next);
    CHECK(run.count >= 1);
    for (int64_t j = 0; j < run.count; ++j) {
      CHECK(run.a_offset + j * run.a_stride == a_offsets[run.first + j]);
      CHECK(run.b_offset + j * run.b_stride == b_offsets[run.first + j]);
    }
    next += run.count;
  }
  CHECK(next == int64_t(a_offsets.size()));
}
}  // namespace

TEST_CASE("plan_gemm_runs: equally spaced batches are one run, broadcast patterns a few, in order") {
  // A contiguous batch, and one with a broadcast (repeated) B: one strided-batched call each.
  std::vector<GemmRun> runs = plan_gemm_runs({0, 12, 24, 36}, {0, 20, 40, 60});
  REQUIRE(runs.size() == 1);
  CHECK(runs[0].count == 4);
  CHECK(runs[0].a_stride == 12);
  CHECK(runs[0].b_stride == 20);
  runs = plan_gemm_runs({0, 12, 24}, {7, 7, 7});
  REQUIRE(runs.size() == 1);
  CHECK(runs[0].b_offset == 7);
  CHECK(runs[0].b_stride == 0);
  // [2, 1, M, K] x [3, K, N]: batch [2, 3]; A repeats each matrix 3 times, B cycles through 3.
  const std::vector<int64_t> a = {0, 0, 0, 12, 12, 12}, b = {0, 20, 40, 0, 20, 40};
  runs = plan_gemm_runs(a, b);
  REQUIRE(runs.size() == 2);
  CHECK(runs[1].first == 3);
  CHECK(runs[1].a_offset == 12);
  CHECK(runs[1].a_stride == 0);
  check_runs_cover(a, b, runs);
  // An irregular pattern still splits into runs that rebuild every offset.
  const std::vector<int64_t> odd_a = {5, 1, 9, 13, 17, 2, 2}, odd_b = {0, 0, 0, 3, 6, 1, 8};
  check_runs_cover(odd_a, odd_b, plan_gemm_runs(odd_a, odd_b));
  // One product; no products.
  runs = plan_gemm_runs({5}, {9});
  REQUIRE(runs.size() == 1);
  CHECK(runs[0].count == 1);
  CHECK(runs[0].a_offset == 5);
  CHECK(runs[0].b_offset == 9);
  CHECK(plan_gemm_runs({}, {}).empty());
  CHECK_THROWS_AS(plan_gemm_runs({0, 1}, {0}), std::invalid_argument);
}

// ------------------------------------------------------------------------------------------------------------
// The 16-bit formats of mixed precision (engine/kernels/half_math.h), over every one of their values.

namespace {

// Checks f32 -> 16-bit rounding around every finite positive 16-bit value v and its successor w: both
// round-trip, the midpoint goes to the one with the even code, and the f32 values just either side of it
// go to the nearer one. Negative values mirror these through the sign bit.
template <class ToBits, class ToFloat>
void check_rounding_between_neighbours(uint16_t largest_finite, ToBits to_bits, ToFloat to_float) {
  for (uint32_t code = 0; code < largest_finite; ++code) {
    const uint16_t lo = static_cast<uint16_t>(code), hi = static_cast<uint16_t>(code + 1);
    const float v = to_float(lo), w = to_float(hi);
    const float mid = static_cast<float>((static_cast<double>(v) + static_cast<double>(w)) / 2);  // exact
    const uint16_t even = (lo & 1u) ? hi : lo;
    if (to_bits(v) != lo || to_bits(w) != hi || to_bits(mid) != even ||
        to_bits(std::nextafter(mid, 0.0f)) != lo || to_bits(std::nextafter(mid, INFINITY)) != hi ||
        to_bits(-mid) != (even | 0x8000u) || to_float(static_cast<uint16_t>(lo | 0x8000u)) != -v) {
      FAIL("rounding around code " << code << " (" << v << ", " << w << ")");
      return;
    }
  }
}

}  // namespace

TEST_CASE("f16: every value round-trips; f32 rounds to nearest, ties to even; overflow, NaN, subnormals") {
  for (uint32_t code = 0; code < 0x10000u; ++code) {
    const uint16_t h = static_cast<uint16_t>(code);
    const float x = f16_bits_to_f32(h);
    if (std::isnan(x)) {
      CHECK((h & 0x7c00u) == 0x7c00u);
      continue;
    }
    if (f32_to_f16_bits(x) != h) FAIL("f16 code " << code << " does not round-trip");
  }
  check_rounding_between_neighbours(0x7bffu, f32_to_f16_bits, f16_bits_to_f32);
  CHECK(f16_bits_to_f32(0x7bffu) == 65504.0f);
  CHECK(f16_bits_to_f32(0x0001u) == std::ldexp(1.0f, -24));  // the smallest subnormal
  CHECK(f16_bits_to_f32(0x0400u) == std::ldexp(1.0f, -14));  // the smallest normal
  CHECK(f32_to_f16_bits(65519.99f) == 0x7bffu);
  CHECK(f32_to_f16_bits(65520.0f) == 0x7c00u);  // the midpoint to the next power: ties to even, to inf
  CHECK(f32_to_f16_bits(1e30f) == 0x7c00u);
  CHECK(f32_to_f16_bits(-INFINITY) == 0xfc00u);
  CHECK(f32_to_f16_bits(std::ldexp(1.0f, -25)) == 0x0000u);  // half the smallest subnormal: to even, 0
  CHECK(f32_to_f16_bits(std::nextafter(std::ldexp(1.0f, -25), 1.0f)) == 0x0001u);
  CHECK(f32_to_f16_bits(1e-30f) == 0x0000u);
  CHECK(f32_to_f16_bits(-0.0f) == 0x8000u);
  CHECK(std::isnan(round_to_f16(NAN)));
  CHECK(std::isinf(round_to_f16(INFINITY)));
}

TEST_CASE("bf16: every value round-trips; f32 rounds to nearest, ties to even; NaN stays NaN") {
  for (uint32_t code = 0; code < 0x10000u; ++code) {
    const uint16_t b = static_cast<uint16_t>(code);
    const float x = bf16_bits_to_f32(b);
    if (std::isnan(x)) {
      CHECK(std::isnan(bf16_bits_to_f32(f32_to_bf16_bits(x))));
      continue;
    }
    if (f32_to_bf16_bits(x) != b) FAIL("bf16 code " << code << " does not round-trip");
  }
  check_rounding_between_neighbours(0x7f7fu, f32_to_bf16_bits, bf16_bits_to_f32);
  CHECK(f32_to_bf16_bits(std::numeric_limits<float>::max()) == 0x7f80u);  // above the largest bf16: inf
  CHECK(f32_to_bf16_bits(-0.0f) == 0x8000u);
  // A NaN whose payload lies only in the dropped bits must not become infinity.
  CHECK(std::isnan(round_to_bf16(bits_float(0x7f800001u))));
  CHECK(std::isinf(round_to_bf16(-INFINITY)));
}

TEST_CASE("topk_key: -0 ties +0, every NaN is one bit pattern, other values are themselves") {
  auto bits32 = [](float x) { return std::bit_cast<uint32_t>(x); };
  auto bits64 = [](double x) { return std::bit_cast<uint64_t>(x); };
  const float nan32 = topk_key(std::numeric_limits<float>::quiet_NaN());
  CHECK(std::isnan(nan32));
  CHECK(std::signbit(nan32) == false);
  for (uint32_t pattern : {0x7fc00000u, 0xffc00000u, 0x7fc00007u, 0x7f800001u, 0xffffffffu})
    CHECK(bits32(topk_key(std::bit_cast<float>(pattern))) == bits32(nan32));
  const double nan64 = topk_key(std::numeric_limits<double>::quiet_NaN());
  for (uint64_t pattern : {uint64_t{0x7ff8000000000000}, uint64_t{0xfff8000000000000},
                           uint64_t{0x7ff8000100000000}, uint64_t{0x7ff0000000000001}})
    CHECK(bits64(topk_key(std::bit_cast<double>(pattern))) == bits64(nan64));
  CHECK(bits32(topk_key(-0.0f)) == bits32(0.0f));
  CHECK(bits64(topk_key(-0.0)) == bits64(0.0));
  for (double x : {-double(INFINITY), -2.5, -1e-300, 1e-300, 3.0, double(INFINITY)})
    CHECK(bits64(topk_key(x)) == bits64(x));
  CHECK(topk_before(nan64, 5, double(INFINITY), 0));                                     // NaN first
  CHECK(topk_before(nan64, 2, topk_key(-std::numeric_limits<double>::quiet_NaN()), 3));  // NaNs tie: by index
  CHECK_FALSE(topk_before(1.0, 4, 1.0, 3));
}
