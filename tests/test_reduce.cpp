// Reductions: sum, mean, sum_to; max/min/amax/amin/argmax/argmin; logsumexp, softmax, log_softmax.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "engine/factory.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/reduce.h"
#include "engine/ops/topk.h"
#include "fixture.h"
#include "gradcheck.h"

using namespace icd;
using icd::testing::f64;
using icd::testing::max_relative_error;
using icd::testing::random_leaf;
using Inputs = std::vector<Tensor>;

namespace {
std::vector<int64_t> ints(const Tensor& t) {
  return t.to_vector<int64_t>();
}
// A leaf with distinct values (a shuffled grid, no ties) so max/min gradients are away from their kinks.
Tensor distinct_leaf(const Shape& shape, uint64_t seed) {
  const int64_t n = shape_numel(shape);
  std::vector<double> values(n);
  for (int64_t i = 0; i < n; ++i)
    values[i] = static_cast<double>((i * 37 + seed) % n) / n - 0.5;
  Tensor t = f64(values, shape);
  t.set_requires_grad(true);
  return t;
}
}  // namespace

TEST_CASE("sum and mean: forward over chosen dims") {
  Tensor x = arange(24, {DType::f64}).reshape({2, 3, 4});
  CHECK(sum(x).item() == 276);
  CHECK(mean(x).item() == 11.5);
  CHECK(sum(x, {0}).shape() == Shape{3, 4});
  CHECK(sum(x, {0}).to_vector<double>()[0] == 12);
  CHECK(sum(x, {-1}, true).shape() == Shape{2, 3, 1});
  CHECK(sum(x, {-1}).to_vector<double>() == std::vector<double>{6, 22, 38, 54, 70, 86});
  CHECK(sum(x, {0, 2}).to_vector<double>() == std::vector<double>{60, 92, 124});
  CHECK(mean(x, {1}).to_vector<double>()[0] == 4);
  CHECK(sum(x.transpose(0, 2), {0}).to_vector<double>() ==
        sum(x, {2}).transpose(0, 1).contiguous().to_vector<double>());
  CHECK_THROWS_AS(sum(x, {0, 0}), std::invalid_argument);
  CHECK_THROWS_AS(sum(x, {3}), std::out_of_range);
}

TEST_CASE("f32 sums keep their digits over many elements") {
  Tensor x = full({1 << 20}, 0.1f);
  CHECK(sum(x).item() == doctest::Approx(0.1f * (1 << 20)).epsilon(1e-7));
}

TEST_CASE("sum_to undoes broadcasting") {
  Tensor g = ones({2, 3, 4}, {DType::f64});
  CHECK(sum_to(g, {3, 1}).to_vector<double>() == std::vector<double>{8, 8, 8});
  CHECK(sum_to(g, {4}).shape() == Shape{4});
  CHECK(sum_to(g, {}).item() == 24);
  CHECK_THROWS_AS(sum_to(g, {5}), std::invalid_argument);
}

TEST_CASE("gradcheck: sum and mean") {
  Tensor x = random_leaf({2, 3, 4}, 1);
  CHECK_GRADCHECK([](const Inputs& in) { return sum(in[0]); }, {x});
  CHECK_GRADCHECK([](const Inputs& in) { return sum(in[0], {1}); }, {x});
  CHECK_GRADCHECK([](const Inputs& in) { return sum(in[0], {0, 2}, true); }, {x});
  CHECK_GRADCHECK([](const Inputs& in) { return mean(in[0], {-1}); }, {x});
  CHECK_GRADCHECK([](const Inputs& in) { return mean(in[0].permute({2, 0, 1}), {1, 2}); }, {x});
  CHECK_GRADCHECK([](const Inputs& in) { return sum_to(in[0], {3, 1}); }, {x});
}

TEST_CASE("max and min along a dimension: values, indices, first index on ties") {
  Tensor x = f64({3, 1, 3, 0,  //
                  -1, 5, 2, 5},
                 {2, 4});
  ValuesIndices m = max(x, 1);
  CHECK(m.values.shape() == Shape{2});
  CHECK(m.values.to_vector<double>() == std::vector<double>{3, 5});
  CHECK(m.indices.dtype() == DType::i64);
  CHECK(ints(m.indices) == std::vector<int64_t>{0, 1});  // ties: the first index, as torch on the CPU
  ValuesIndices n = min(x, 0, true);
  CHECK(n.values.shape() == Shape{1, 4});
  CHECK(n.values.to_vector<double>() == std::vector<double>{-1, 1, 2, 0});
  CHECK(ints(n.indices) == std::vector<int64_t>{1, 0, 1, 0});
  // Non-contiguous input and a middle dimension (the tiled path).
  Tensor y = arange(24, {DType::f64}).reshape({2, 3, 4}).transpose(0, 2);  // [4, 3, 2]
  ValuesIndices mid = max(y, 1);
  CHECK(mid.values.shape() == Shape{4, 2});
  CHECK(mid.values.to_vector<double>() == std::vector<double>{8, 20, 9, 21, 10, 22, 11, 23});
  CHECK(ints(mid.indices) == std::vector<int64_t>(8, 2));
  CHECK(ints(argmin(y, -1)) == std::vector<int64_t>(12, 0));
  // NaN propagates and its position is reported
  const double nan = std::numeric_limits<double>::quiet_NaN();
  ValuesIndices with_nan = max(f64({1, nan, 7, nan}, {4}), 0);
  CHECK(std::isnan(with_nan.values.item()));
  CHECK(with_nan.indices.item() == 1);
  CHECK(min(f64({1, nan, -7}, {3}), 0).indices.item() == 1);
  // 0-d input: dim 0 is allowed, as in torch
  ValuesIndices scalar = max(f64({4}, {}), 0);
  CHECK(scalar.values.shape() == Shape{});
  CHECK(scalar.values.item() == 4);
  // f32 and a long row that runs in parallel
  Tensor big = arange(100000, {DType::f32}).reshape({100, 1000});
  CHECK(ints(argmax(big, 1)) == std::vector<int64_t>(100, 999));
  CHECK(ints(argmin(big.transpose(0, 1), 1)) == std::vector<int64_t>(1000, 0));
  CHECK_THROWS_AS(max(zeros({2, 0}), 1), std::invalid_argument);
  CHECK_THROWS_AS(max(x, 2), std::out_of_range);
}

TEST_CASE("amax, amin, argmax, argmin") {
  Tensor x = f64({3, 1, 9, 0, -4, 5}, {2, 3});
  CHECK(amax(x).shape() == Shape{});
  CHECK(amax(x).item() == 9);
  CHECK(amin(x).item() == -4);
  CHECK(amax(x, {0}).to_vector<double>() == std::vector<double>{3, 1, 9});
  CHECK(amin(x, {1}, true).shape() == Shape{2, 1});
  CHECK(amin(x, {1}, true).to_vector<double>() == std::vector<double>{1, -4});
  Tensor cube = arange(24, {DType::f64}).reshape({2, 3, 4});
  CHECK(amax(cube, {0, 2}).to_vector<double>() == std::vector<double>{15, 19, 23});
  CHECK(amin(cube.permute({2, 0, 1}), {0, 2}, true).to_vector<double>() == std::vector<double>{0, 12});
  CHECK(argmax(x).shape() == Shape{});
  CHECK(argmax(x).item() == 2);  // index into the flattened tensor
  CHECK(argmin(x).item() == 4);
  CHECK(ints(argmax(x, 1)) == std::vector<int64_t>{2, 2});
  CHECK(ints(argmin(x, 0)) == std::vector<int64_t>{1, 1, 1});
  CHECK(argmin(x, 1, true).shape() == Shape{2, 1});
  CHECK_THROWS_AS(amax(zeros({0, 3})), std::invalid_argument);
  CHECK_THROWS_AS(amax(x, {1, 1}), std::invalid_argument);
  CHECK_THROWS_AS(argmax(zeros({0})), std::invalid_argument);
}

TEST_CASE("max/min send the gradient to the selected element; amax splits it among ties") {
  Tensor x = f64({2, 7, 7, 1}, {4});
  x.set_requires_grad(true);
  max(x, 0).values.backward(f64({3}, {}));
  CHECK(x.grad().to_vector<double>() == std::vector<double>{0, 3, 0, 0});  // the first of the tie
  x.zero_grad();
  amax(x).backward(f64({3}, {}));
  CHECK(x.grad().to_vector<double>() == std::vector<double>{0, 1.5, 1.5, 0});
  x.zero_grad();
  min(x, 0).values.backward();
  CHECK(x.grad().to_vector<double>() == std::vector<double>{0, 0, 0, 1});
  CHECK_FALSE(max(x, 0).indices.requires_grad());
  CHECK_FALSE(argmax(x).requires_grad());
}

TEST_CASE("logsumexp, softmax and log_softmax: stable forward values") {
  Tensor x = f64({1, 2, 3, 1000, 1001, 1002}, {2, 3});
  const double lse = 3 + std::log(std::exp(-2.0) + std::exp(-1.0) + 1.0);
  Tensor l = logsumexp(x, 1);
  CHECK(l.shape() == Shape{2});
  CHECK(l.to_vector<double>()[0] == doctest::Approx(lse).epsilon(1e-15));
  CHECK(l.to_vector<double>()[1] == doctest::Approx(lse + 999).epsilon(1e-15));  // no overflow
  CHECK(logsumexp(x, 0, true).shape() == Shape{1, 3});
  Tensor s = softmax(x, -1);
  std::vector<double> sv = s.to_vector<double>();
  CHECK(sv[2] == doctest::Approx(std::exp(3 - lse)).epsilon(1e-15));
  CHECK(sv[5] == doctest::Approx(std::exp(3 - lse)).epsilon(1e-15));  // shift invariance
  CHECK(sum(s, {1}).to_vector<double>()[1] == doctest::Approx(1.0).epsilon(1e-15));
  Tensor ls = log_softmax(x, 1);
  CHECK(ls.to_vector<double>()[0] == doctest::Approx(1 - lse).epsilon(1e-15));
  CHECK(ls.to_vector<double>()[3] == doctest::Approx(1 - lse).epsilon(1e-15));
  // f32 with huge logits: finite, exact where it must be
  Tensor big = from_vector(std::vector<float>{-1e30f, 0.f, 1e30f}, {3});
  CHECK(softmax(big, 0).to_vector<float>() == std::vector<float>{0.f, 0.f, 1.f});
  CHECK(logsumexp(big, 0).item() == 1e30f);
  // Infinities behave as in torch: -inf contributes nothing; an all -inf lane gives -inf; +inf gives +inf.
  const double inf = std::numeric_limits<double>::infinity();
  CHECK(softmax(f64({-inf, 0}, {2}), 0).to_vector<double>() == std::vector<double>{0, 1});
  CHECK(logsumexp(f64({-inf, -inf}, {2}), 0).item() == -inf);
  CHECK(logsumexp(f64({inf, 1}, {2}), 0).item() == inf);
  // A middle dimension wider than one lane tile, non-contiguous input
  Generator gen(3);
  Tensor wide = randn({3, 5, 150}, gen, {DType::f64});
  Tensor t = wide.permute({1, 0, 2});  // softmax over the 3-long dim 1 of [5, 3, 150]
  Tensor expected = div(exp(t), sum(exp(t), {1}, true));
  CHECK(max_relative_error(softmax(t, 1), expected) < 1e-13);
  CHECK(max_relative_error(log_softmax(t, 1), log(expected)) < 1e-13);
  CHECK(max_relative_error(logsumexp(t, 1), log(sum(exp(t), {1}))) < 1e-13);
  CHECK(softmax(f64({2}, {}), 0).item() == 1);
  CHECK_THROWS_AS(softmax(x, 2), std::out_of_range);
  CHECK_THROWS_AS(log_softmax(arange(3, {DType::i64}), 0), std::invalid_argument);
}

TEST_CASE("gradcheck: max, min, amax, amin away from ties") {
  Tensor x = distinct_leaf({3, 4, 5}, 3);
  CHECK_GRADCHECK([](const Inputs& in) { return max(in[0], 1).values; }, {x});
  CHECK_GRADCHECK([](const Inputs& in) { return min(in[0], -1, true).values; }, {x});
  CHECK_GRADCHECK([](const Inputs& in) { return max(in[0].permute({2, 0, 1}), 2).values; }, {x});
  CHECK_GRADCHECK([](const Inputs& in) { return amax(in[0]); }, {x});
  CHECK_GRADCHECK([](const Inputs& in) { return amax(in[0], {0, 2}, true); }, {x});
  CHECK_GRADCHECK([](const Inputs& in) { return amin(in[0].transpose(0, 1), {1}); }, {x});
}

TEST_CASE("gradcheck: logsumexp, softmax, log_softmax") {
  Tensor x = random_leaf({3, 4, 5}, 21, -3.0, 3.0);
  for (int64_t dim : {0, 1, 2}) {
    INFO("dim " << dim);
    CHECK_GRADCHECK([dim](const Inputs& in) { return logsumexp(in[0], dim); }, {x});
    CHECK_GRADCHECK([dim](const Inputs& in) { return softmax(in[0], dim); }, {x});
    CHECK_GRADCHECK([dim](const Inputs& in) { return log_softmax(in[0], dim); }, {x});
  }
  CHECK_GRADCHECK([](const Inputs& in) { return logsumexp(in[0].transpose(0, 2), 1, true); }, {x});
  CHECK_GRADCHECK([](const Inputs& in) { return softmax(in[0].permute({1, 2, 0}), -1); }, {x});
  CHECK_GRADCHECK([](const Inputs& in) { return log_softmax(in[0].narrow(1, 1, 2), 1); }, {x});
  // Large logits: the stable forms keep the gradient exact too.
  Tensor big = random_leaf({2, 6}, 22, 500.0, 520.0);
  CHECK_GRADCHECK([](const Inputs& in) { return log_softmax(in[0], 1); }, {big});
  // A composite: softmax feeding a reduction that sums the gradient back over the dimension.
  CHECK_GRADCHECK([](const Inputs& in) { return mul(softmax(in[0], 1), in[0]); }, {x});
}

TEST_CASE("parity with torch (tests/fixtures/reduce.json), f64 and f32") {
  icd::testing::Fixture fixture("reduce.json");
  for (const std::string& name : fixture.case_names()) {
    INFO("case " << name);
    icd::testing::FixtureCase c = fixture[name];
    const std::string op = c.params().at("op").get<std::string>();
    for (DType dtype : {DType::f64, DType::f32}) {
      INFO(dtype_name(dtype));
      if (dtype == DType::f32 && !c.params().value("f32", true)) continue;  // |x| ~ 800: beyond f32's 1e-5
      Tensor x = c.tensor("x", dtype);
      x.set_requires_grad(true);
      Tensor y, indices;
      if (op == "max" || op == "min") {
        const int64_t dim = c.params().at("dim");
        ValuesIndices vi =
            op == "max" ? max(x, dim, c.params().at("keepdim")) : min(x, dim, c.params().at("keepdim"));
        y = vi.values;
        indices = vi.indices;
      } else if (op == "amax" || op == "amin") {
        std::vector<int64_t> dims = c.params().at("dims");
        y = op == "amax" ? amax(x, dims, c.params().at("keepdim")) : amin(x, dims, c.params().at("keepdim"));
      } else if (op == "logsumexp") {
        y = logsumexp(x, c.params().at("dim"), c.params().at("keepdim"));
      } else if (op == "softmax") {
        y = softmax(x, c.params().at("dim"));
      } else {
        REQUIRE(op == "log_softmax");
        y = log_softmax(x, c.params().at("dim"));
      }
      const double tolerance = dtype == DType::f64 ? 1e-10 : 1e-5;
      CHECK(max_relative_error(y, c.tensor("y")) < tolerance);
      if (indices.defined()) CHECK(indices.to_vector<double>() == c.tensor("indices").to_vector<double>());
      y.backward(c.tensor("g", dtype));
      // The backward of the softmax family subtracts nearly equal terms (g - sum g y): in f32 its error is
      // relative to those terms, not to a difference that cancels to near zero, so f32 is compared
      // normwise (relative to the largest expected gradient).
      const Tensor dx = c.tensor("dx");
      const double scale = dtype == DType::f64 ? 1e-6 : amax(abs(dx)).item();
      CHECK(max_relative_error(x.grad(), dx, scale) < tolerance);
    }
  }
}

TEST_CASE("topk: largest first, ties in index order, NaN above everything, -0 tying +0, k clamped") {
  const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
  const Tensor x = f64({0.5, 2.0, -1.0, 2.0, inf, -0.0, 0.0, 0.5, -inf}, {9});
  ValuesIndices top = topk(x, 6);
  CHECK(top.indices.to_vector<int64_t>() == std::vector<int64_t>{4, 1, 3, 0, 7, 5});
  CHECK(top.values.to_vector<double>() == std::vector<double>{inf, 2.0, 2.0, 0.5, 0.5, -0.0});
  CHECK(std::signbit(top.values.to_vector<double>()[5]));  // the original value, not its key
  CHECK(topk(x, 100).indices.to_vector<int64_t>() == std::vector<int64_t>{4, 1, 3, 0, 7, 5, 6, 2, 8});
  CHECK(topk(x, 0).values.numel() == 0);

  // NaN (of either sign) ranks first, in index order among themselves.
  const Tensor with_nan = f64({1.0, -nan, 3.0, nan}, {4});
  CHECK(topk(with_nan, 3).indices.to_vector<int64_t>() == std::vector<int64_t>{1, 3, 2});

  // f32, and agreement with a full sort on random data with many ties.
  Generator gen(7);
  std::vector<float> v(500);
  for (float& value : v)
    value = static_cast<float>(std::floor(gen.uniform() * 20));  // 0..19: ties everywhere
  const Tensor r = from_vector(v, {500});
  const ValuesIndices t = topk(r, 50);
  std::vector<int64_t> order(500);
  for (int64_t i = 0; i < 500; ++i)
    order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return v[a] > v[b]; });
  order.resize(50);
  CHECK(t.indices.to_vector<int64_t>() == order);
  CHECK(t.values.dtype() == DType::f32);

  CHECK_THROWS_WITH_AS(topk(f64({1, 2, 3, 4}, {2, 2}), 1), doctest::Contains("1-D"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(topk(x, -1), doctest::Contains("k must be"), std::invalid_argument);
}
