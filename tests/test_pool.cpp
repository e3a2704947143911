// Pooling: max_pool2d, avg_pool2d, adaptive_avg_pool2d. Hand-computed values (padding, ceil_mode, ties),
// parity with torch (tests/fixtures/pool.json, outputs and gradients), f64 gradient checks on inputs
// with distinct values (no ties, so max pooling is differentiable there), and bad arguments.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "engine/factory.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/pool.h"
#include "engine/ops/reduce.h"
#include "fixture.h"
#include "gradcheck.h"

using namespace icd;
using icd::testing::f64;
using icd::testing::max_relative_error;
using Inputs = std::vector<Tensor>;

namespace {
std::vector<double> values(const Tensor& t) {
  return t.to_vector<double>();
}

// A leaf whose values are a random permutation of an evenly spaced grid in [-0.5, 0.5): every pair of
// values differs by at least 1/n, far more than the gradient check's step, so no window has a tie.
Tensor distinct_leaf(const Shape& shape, uint64_t seed) {
  const int64_t n = shape_numel(shape);
  Generator gen(seed);
  std::vector<double> keys = rand({n}, gen, {DType::f64}).to_vector<double>();
  std::vector<int64_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return keys[a] < keys[b]; });
  std::vector<double> v(n);
  for (int64_t rank = 0; rank < n; ++rank)
    v[order[rank]] = static_cast<double>(rank) / n - 0.5;
  Tensor t = f64(v, shape);
  t.set_requires_grad(true);
  return t;
}
}  // namespace

TEST_CASE("max_pool2d: values, -inf padding, ceil_mode, dilation") {
  Tensor x = arange(16, {DType::f64}).reshape({1, 1, 4, 4});
  CHECK(values(max_pool2d(x, {.kernel = 2})) == std::vector<double>{5, 7, 13, 15});
  // Padding reads -inf, not 0: with all-negative inputs the corner window still returns an input value.
  Tensor negative = sub(neg(x), 1.0);
  CHECK(values(max_pool2d(negative, {.kernel = 3, .stride = 2, .padding = 1})) ==
        std::vector<double>{-1, -2, -5, -6});
  // 5x5 with kernel 2, stride 2: 2x2 normally, 3x3 in ceil mode (partial last windows).
  Tensor five = arange(25, {DType::f64}).reshape({1, 5, 5});
  CHECK(max_pool2d(five, {.kernel = 2}).shape() == Shape{1, 2, 2});
  Tensor ceil = max_pool2d(five, {.kernel = 2, .ceil_mode = true});
  CHECK(ceil.shape() == Shape{1, 3, 3});
  CHECK(values(ceil) == std::vector<double>{6, 8, 9, 16, 18, 19, 21, 23, 24});
  // Dilation 2: the 2x2 window reads positions {0, 2} x {0, 2}.
  CHECK(values(max_pool2d(x, {.kernel = 2, .stride = 1, .dilation = 2})) ==
        std::vector<double>{10, 11, 14, 15});
  // Rectangular window and stride.
  CHECK(values(max_pool2d(x, {.kernel = {1, 4}, .stride = {2, 1}})) == std::vector<double>{3, 11});
  CHECK(max_pool2d(zeros({2, 3, 9, 9}), {.kernel = 3, .stride = 2, .padding = 1}).shape() ==
        Shape{2, 3, 5, 5});
}

TEST_CASE("max_pool2d: the gradient goes to the first maximum of each window") {
  Tensor x = f64({1, 1, 1, 1}, {1, 1, 2, 2});
  x.set_requires_grad(true);
  sum(max_pool2d(x, {.kernel = 2})).backward();
  CHECK(values(x.grad()) == std::vector<double>{1, 0, 0, 0});
  // Overlapping windows that pick the same element add their gradients.
  Tensor y = f64({0, 0, 0, 0, 9, 0, 0, 0, 0}, {1, 1, 3, 3});
  y.set_requires_grad(true);
  max_pool2d(y, {.kernel = 2, .stride = 1}).backward(f64({1, 2, 3, 4}, {1, 1, 2, 2}));
  CHECK(values(y.grad()) == std::vector<double>{0, 0, 0, 0, 10, 0, 0, 0, 0});
}

TEST_CASE("max_pool2d: with and without a gradient to track, the same maxima; NaN wins as in torch") {
  Generator gen(3);
  Tensor x = randn({2, 3, 11, 9}, gen);
  Tensor tracked = x.detach();
  tracked.set_requires_grad(true);
  const Pool2dOptions options{.kernel = 3, .stride = 2, .padding = 1};
  CHECK(values(max_pool2d(x, options)) == values(max_pool2d(tracked, options)));
  // A NaN anywhere in a window makes that window's maximum NaN, on both paths.
  Tensor with_nan = f64({1, std::nan(""), 3, 4}, {1, 1, 2, 2});
  CHECK(std::isnan(values(max_pool2d(with_nan, {.kernel = 2}))[0]));
  with_nan.set_requires_grad(true);
  CHECK(std::isnan(values(max_pool2d(with_nan, {.kernel = 2}))[0]));
  // With two NaNs in a window the gradient goes to the last one (torch: `v > best || isnan(v)` in order).
  Tensor two_nans = f64({std::nan(""), 1, std::nan(""), 2}, {1, 1, 2, 2});
  two_nans.set_requires_grad(true);
  sum(max_pool2d(two_nans, {.kernel = 2})).backward();
  CHECK(values(two_nans.grad()) == std::vector<double>{0, 0, 1, 0});
  // Column windows of [[1, NaN], [3, 4]]: only the second holds the NaN.
  const std::vector<double> columns =
      values(max_pool2d(f64({1, std::nan(""), 3, 4}, {1, 1, 2, 2}), {.kernel = {2, 1}}));
  CHECK(columns[0] == 3);
  CHECK(std::isnan(columns[1]));
}

TEST_CASE("avg_pool2d: count_include_pad and ceil_mode divisors") {
  Tensor ones3 = ones({1, 1, 3, 3}, {DType::f64});
  std::vector<double> include = values(avg_pool2d(ones3, {.kernel = 3, .stride = 1, .padding = 1}));
  CHECK(include[0] == doctest::Approx(4.0 / 9).epsilon(1e-15));
  CHECK(include[1] == doctest::Approx(6.0 / 9).epsilon(1e-15));
  CHECK(include[4] == 1);
  CHECK(values(avg_pool2d(ones3, {.kernel = 3, .stride = 1, .padding = 1, .count_include_pad = false})) ==
        std::vector<double>(9, 1.0));
  Tensor x = arange(16, {DType::f64}).reshape({1, 4, 4});
  CHECK(values(avg_pool2d(x, {.kernel = 2})) == std::vector<double>{2.5, 4.5, 10.5, 12.5});
  // 3x3 input, kernel 2, stride 2, ceil mode: the last window holds one column (or row) of the input
  // and nothing of padding, so its divisor is clipped to the input: 2, not 4 (torch's rule).
  Tensor nine = arange(9, {DType::f64}).reshape({1, 1, 3, 3});
  CHECK(values(avg_pool2d(nine, {.kernel = 2, .ceil_mode = true})) == std::vector<double>{2, 3.5, 6.5, 8});
}

TEST_CASE("adaptive_avg_pool2d: torch's floor/ceil windows") {
  Tensor x = arange(25, {DType::f64}).reshape({1, 1, 5, 5});
  Tensor y = adaptive_avg_pool2d(x, 2, 2);  // windows [0, 3) and [2, 5) in both directions
  CHECK(y.shape() == Shape{1, 1, 2, 2});
  CHECK(values(y) == std::vector<double>{6, 8, 16, 18});
  CHECK(values(adaptive_avg_pool2d(x, 1, 1)) == std::vector<double>{12});
  CHECK(adaptive_avg_pool2d(zeros({3, 4, 6}), 7, 2).shape() == Shape{3, 7, 2});  // more outputs than inputs
  CHECK(max_relative_error(adaptive_avg_pool2d(x, 5, 5), x) == 0);               // identity
}

TEST_CASE("pooling: bad arguments are rejected with clear errors") {
  Tensor x = zeros({1, 2, 5, 5});
  CHECK_THROWS_AS(max_pool2d(zeros({5, 5}), {.kernel = 2}), std::invalid_argument);
  CHECK_THROWS_AS(max_pool2d(zeros({1, 1, 2, 3, 3}), {.kernel = 2}), std::invalid_argument);
  CHECK_THROWS_AS(max_pool2d(zeros({1, 0, 5, 5}), {.kernel = 2}), std::invalid_argument);
  CHECK_THROWS_AS(max_pool2d(x, {}), std::invalid_argument);  // kernel 0
  CHECK_THROWS_AS(max_pool2d(x, {.kernel = 2, .stride = {1, -1}}), std::invalid_argument);
  CHECK_THROWS_AS(max_pool2d(x, {.kernel = 2, .padding = 2}), std::invalid_argument);
  CHECK_THROWS_AS(max_pool2d(x, {.kernel = 2, .dilation = 0}), std::invalid_argument);
  CHECK_THROWS_AS(max_pool2d(x, {.kernel = 6}), std::invalid_argument);  // output smaller than 1
  CHECK_THROWS_AS(max_pool2d(x, {.kernel = 3, .dilation = 3}), std::invalid_argument);
  CHECK_THROWS_AS(avg_pool2d(x, {.kernel = 2, .dilation = 2}), std::invalid_argument);
  CHECK_THROWS_AS(avg_pool2d(x, {.kernel = {2, 7}}), std::invalid_argument);
  CHECK_THROWS_AS(adaptive_avg_pool2d(x, 0, 3), std::invalid_argument);
  CHECK_THROWS_AS(adaptive_avg_pool2d(zeros({4}), 1, 1), std::invalid_argument);
  CHECK_THROWS_AS(max_pool2d(arange(16, {DType::i64}).reshape({1, 4, 4}), {.kernel = 2}),
                  std::invalid_argument);
  try {
    max_pool2d(x, {.kernel = 3, .padding = 2});
    FAIL("no error");
  } catch (const std::invalid_argument& e) {
    CHECK(std::string(e.what()).find("max_pool2d") != std::string::npos);
    CHECK(std::string(e.what()).find("padding (2, 2)") != std::string::npos);
  }
}

TEST_CASE("f32 on many planes (the threaded path) matches f64") {
  Generator gen(4);
  Tensor x = randn({4, 32, 20, 20}, gen);
  Tensor x64 = x.to(DType::f64);
  Pool2dOptions window{.kernel = 3, .stride = 2, .padding = 1};
  CHECK(values(max_pool2d(x, window)) == values(max_pool2d(x64, window)));  // max is exact
  CHECK(max_relative_error(avg_pool2d(x, window), avg_pool2d(x64, window), 1e-3) < 1e-5);
  CHECK(max_relative_error(adaptive_avg_pool2d(x, 3, 3), adaptive_avg_pool2d(x64, 3, 3), 1e-3) < 1e-5);
}

TEST_CASE("gradcheck: max_pool2d away from ties") {
  Tensor x = distinct_leaf({1, 2, 5, 6}, 1);
  CHECK_GRADCHECK(
      [](const Inputs& in) { return max_pool2d(in[0], {.kernel = 3, .stride = 2, .padding = 1}); }, {x});
  CHECK_GRADCHECK([](const Inputs& in) { return max_pool2d(in[0], {.kernel = 2, .stride = 1}); },
                  {x});  // overlaps
  CHECK_GRADCHECK([](const Inputs& in) { return max_pool2d(in[0], {.kernel = 2, .ceil_mode = true}); }, {x});
  CHECK_GRADCHECK(
      [](const Inputs& in) {
        return max_pool2d(in[0], {.kernel = {2, 3}, .stride = {1, 2}, .padding = {1, 1}, .dilation = {2, 1}});
      },
      {x});
  CHECK_GRADCHECK(
      [](const Inputs& in) {
        return max_pool2d(in[0].permute({1, 0, 3, 2}), {.kernel = 2});
      },
      {x});
  CHECK_GRADCHECK([](const Inputs& in) { return max_pool2d(in[0].select(0, 0), {.kernel = 3, .stride = 2}); },
                  {x});
}

TEST_CASE("gradcheck: avg_pool2d and adaptive_avg_pool2d") {
  Tensor x = testing::random_leaf({2, 1, 5, 7}, 2);
  for (bool include : {true, false}) {
    for (bool ceil : {false, true}) {
      INFO("count_include_pad " << include << " ceil_mode " << ceil);
      CHECK_GRADCHECK(
          [=](const Inputs& in) {
            return avg_pool2d(
                in[0],
                {.kernel = 3, .stride = 2, .padding = 1, .ceil_mode = ceil, .count_include_pad = include});
          },
          {x});
    }
  }
  CHECK_GRADCHECK(
      [](const Inputs& in) {
        return avg_pool2d(in[0], {.kernel = {2, 3}, .stride = {1, 2}});
      },
      {x});
  CHECK_GRADCHECK([](const Inputs& in) { return avg_pool2d(in[0].transpose(2, 3), {.kernel = 2}); }, {x});
  CHECK_GRADCHECK([](const Inputs& in) { return adaptive_avg_pool2d(in[0], 3, 4); }, {x});
  CHECK_GRADCHECK([](const Inputs& in) { return adaptive_avg_pool2d(in[0], 1, 1); }, {x});
  CHECK_GRADCHECK([](const Inputs& in) { return adaptive_avg_pool2d(in[0].select(1, 0), 6, 9); }, {x});
}

TEST_CASE("parity with torch (tests/fixtures/pool.json), f64 and f32") {
  icd::testing::Fixture fixture("pool.json");
  auto pair = [](const nlohmann::json& v) {
    return Pool2dOptions::Pair(v.at(0).get<int64_t>(), v.at(1).get<int64_t>());
  };
  for (const std::string& name : fixture.case_names()) {
    INFO("case " << name);
    icd::testing::FixtureCase c = fixture[name];
    const nlohmann::json& p = c.params();
    const std::string op = p.at("op");
    for (DType dtype : {DType::f64, DType::f32}) {
      INFO(dtype_name(dtype));
      Tensor x = c.tensor("x", dtype);
      x.set_requires_grad(true);
      Tensor y;
      if (op == "adaptive") {
        y = adaptive_avg_pool2d(x, p.at("out_size").at(0), p.at("out_size").at(1));
      } else {
        Pool2dOptions o{.kernel = pair(p.at("kernel")),
                        .stride = pair(p.at("stride")),
                        .padding = pair(p.at("padding")),
                        .ceil_mode = p.at("ceil_mode")};
        if (op == "max") {
          o.dilation = pair(p.at("dilation"));
          y = max_pool2d(x, o);
        } else {
          o.count_include_pad = p.at("count_include_pad");
          y = avg_pool2d(x, o);
        }
      }
      const double tolerance = dtype == DType::f64 ? 1e-10 : 1e-5;
      CHECK(max_relative_error(y, c.tensor("y")) < tolerance);
      y.backward(c.tensor("g", dtype));
      CHECK(max_relative_error(x.grad(), c.tensor("dx")) < tolerance);
    }
  }
}
