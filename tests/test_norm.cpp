// Normalisation ops: batch_norm (training and eval, running statistics), group_norm, layer_norm.
// Hand-checked values, f64 gradient checks of every input and option (non-contiguous views included),
// parity with torch (tests/fixtures/norm.json from tools/make_norm_fixtures.py: outputs, gradients,
// running statistics; f64 and f32), a large f32 run through the parallel paths, and bad arguments.
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "engine/autograd.h"
#include "engine/factory.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/norm.h"
#include "engine/ops/reduce.h"
#include "fixture.h"
#include "gradcheck.h"

using namespace icd;
using icd::testing::max_abs;
using icd::testing::f64;
using icd::testing::max_relative_error;
using icd::testing::random_leaf;
using Inputs = std::vector<Tensor>;

namespace {



// f64 results must match torch's to 1e-10 relative per element. f32 results are measured against the
// tensor's largest magnitude: a gradient element that cancels to ~0 from terms of size ~1 carries the
// rounding of those terms, not of itself.
void check_matches(const Tensor& actual, const Tensor& expected, DType dtype) {
  REQUIRE(actual.defined());
  CHECK(actual.dtype() == dtype);
  if (dtype == DType::f64) {
    CHECK(max_relative_error(actual, expected) < 1e-10);
  } else {
    CHECK(max_relative_error(actual, expected, max_abs(expected)) < 1e-5);
  }
}

}  // namespace

TEST_CASE("batch_norm: hand-checked training step, running statistics, eval mode") {
  // One channel holding 1, 2, 3, 4: mean 2.5, biased variance 1.25, unbiased 5/3.
  Tensor x = f64({1, 2, 3, 4}, {4, 1});
  Tensor rm = f64({0}, {1}), rv = f64({1}, {1});
  Tensor y = batch_norm(x, Tensor(), Tensor(), rm, rv, true, 0.1, 0.0);
  const double s = std::sqrt(1.25);
  std::vector<double> got = y.to_vector<double>();
  std::vector<double> want{-1.5 / s, -0.5 / s, 0.5 / s, 1.5 / s};
  for (int i = 0; i < 4; ++i)
    CHECK(got[i] == doctest::Approx(want[i]).epsilon(1e-15));
  CHECK(rm.item() == doctest::Approx(0.25).epsilon(1e-15));                   // 0.9 * 0 + 0.1 * 2.5
  CHECK(rv.item() == doctest::Approx(0.9 + 0.1 * 5.0 / 3.0).epsilon(1e-15));  // unbiased variance
  // A second step moves the running statistics again; the output does not depend on them.
  Tensor y2 = batch_norm(x, Tensor(), Tensor(), rm, rv, true, 0.5, 0.0);
  CHECK(y2.to_vector<double>() == got);
  CHECK(rm.item() == doctest::Approx(0.5 * 0.25 + 0.5 * 2.5).epsilon(1e-15));

  // Eval: (x - running_mean) / sqrt(running_var + eps) * w + b, running statistics untouched.
  Tensor mean = f64({1, -2}, {2}), var = f64({4, 0.25}, {2});
  Tensor w = f64({2, 3}, {2}), b = f64({0.5, -1}, {2});
  Tensor xe = f64({3, 0, 5, -2}, {2, 2});  // [N=2, C=2]
  Tensor ye = batch_norm(xe, w, b, mean, var, false, 0.1, 0.0);
  CHECK(ye.to_vector<double>() == std::vector<double>{(3 - 1) / 2.0 * 2 + 0.5, (0 + 2) / 0.5 * 3 - 1,
                                                      (5 - 1) / 2.0 * 2 + 0.5, (-2 + 2) / 0.5 * 3 - 1});
  CHECK(mean.to_vector<double>() == std::vector<double>{1, -2});
  CHECK(var.to_vector<double>() == std::vector<double>{4, 0.25});
}

TEST_CASE("batch_norm: running statistics of a non-contiguous x and strided buffers") {
  // x [N=3, C=2, 2] given as a permuted view; running statistics as every other element of a buffer.
  Tensor base = arange(12, {DType::f64}).reshape({2, 3, 2});
  Tensor x = base.permute({1, 0, 2});  // [3, 2, 2]
  Tensor storage = f64({0, 9, 0, 9}, {4});
  Tensor rm = storage.reshape({2, 2}).select(1, 0);  // elements 0 and 2
  Tensor rv_storage = f64({1, 9, 1, 9}, {4});
  Tensor rv = rv_storage.reshape({2, 2}).select(1, 0);
  batch_norm(x, Tensor(), Tensor(), rm, rv, true, 1.0, 1e-5);
  // Channel 0 holds 0, 1, 2, 3, 4, 5 (mean 2.5, unbiased var 3.5); channel 1 holds 6..11.
  CHECK(storage.to_vector<double>() == std::vector<double>{2.5, 9, 8.5, 9});
  CHECK(rv_storage.to_vector<double>()[0] == doctest::Approx(3.5).epsilon(1e-15));
  CHECK(rv_storage.to_vector<double>()[1] == 9);
}

TEST_CASE("group_norm and layer_norm: hand-checked values") {
  // Two groups of two channels: {1, 2} and {3, 5}; eps 0 so the values are exact.
  Tensor x = f64({1, 2, 3, 5}, {1, 4, 1});
  std::vector<double> g = group_norm(x, 2, Tensor(), Tensor(), 0.0).to_vector<double>();
  CHECK(g == std::vector<double>{-1, 1, -1, 1});
  Tensor w = f64({1, 2, 3, 4}, {4}), b = f64({0, 0, 10, 10}, {4});
  CHECK(group_norm(x, 2, w, b, 0.0).to_vector<double>() == std::vector<double>{-1, 2, 7, 14});
  // One group over all four: mean 2.75, variance 2.1875.
  std::vector<double> one = group_norm(x, 1, Tensor(), Tensor(), 0.0).to_vector<double>();
  CHECK(one[3] == doctest::Approx((5 - 2.75) / std::sqrt(2.1875)).epsilon(1e-15));

  // layer_norm over the last dim of [2, 2]: each row becomes (-1, 1); affine per position.
  Tensor rows = f64({1, 3, -4, 6}, {2, 2});
  CHECK(layer_norm(rows, {2}, Tensor(), Tensor(), 0.0).to_vector<double>() ==
        std::vector<double>{-1, 1, -1, 1});
  Tensor lw = f64({2, 3}, {2}), lb = f64({1, 0}, {2});
  CHECK(layer_norm(rows, {2}, lw, lb, 0.0).to_vector<double>() == std::vector<double>{-1, 3, -1, 3});
  // Over the last two dims: the four values as one set.
  std::vector<double> all =
      layer_norm(rows.reshape({1, 2, 2}), {2, 2}, Tensor(), Tensor(), 0.0).to_vector<double>();
  const double m = 1.5, v = (0.25 + 2.25 + 30.25 + 20.25) / 4;
  CHECK(all[2] == doctest::Approx((-4 - m) / std::sqrt(v)).epsilon(1e-15));
  // eps enters under the square root
  std::vector<double> eps = layer_norm(rows, {2}, Tensor(), Tensor(), 0.5).to_vector<double>();
  CHECK(eps[1] == doctest::Approx(1 / std::sqrt(1.5)).epsilon(1e-15));
}

TEST_CASE("gradcheck: batch_norm in training mode") {
  Tensor x = random_leaf({2, 3, 2, 3}, 1, -2.0, 3.0);
  Tensor w = random_leaf({3}, 2, 0.5, 1.5), b = random_leaf({3}, 3);
  Tensor rm = zeros({3}, {DType::f64}), rv = ones({3}, {DType::f64});
  CHECK_GRADCHECK([&](const Inputs& in) { return batch_norm(in[0], in[1], in[2], rm, rv, true); }, {x, w, b});
  // No affine, no running statistics, [N, C] input.
  Tensor x2 = random_leaf({5, 3}, 4);
  CHECK_GRADCHECK(
      [](const Inputs& in) { return batch_norm(in[0], Tensor(), Tensor(), Tensor(), Tensor(), true); }, {x2});
  // Weight only (no bias), eps and momentum changed, 3-d input.
  Tensor x3 = random_leaf({3, 2, 4}, 5);
  CHECK_GRADCHECK(
      [](const Inputs& in) {
        return batch_norm(in[0], in[1], Tensor(), Tensor(), Tensor(), true, 0.3, 1e-2);
      },
      {x3, random_leaf({2}, 6, 0.5, 1.5)});
  // Non-contiguous x (a permuted view) and a strided weight.
  Tensor base = random_leaf({3, 2, 4, 2}, 7);
  Tensor wide = random_leaf({6}, 8, 0.5, 1.5);
  CHECK_GRADCHECK(
      [](const Inputs& in) {
        return batch_norm(in[0].permute({1, 0, 3, 2}), in[1].reshape({3, 2}).select(1, 1), Tensor(), Tensor(),
                          Tensor(), true);
      },
      {base, wide});
  // Bias without weight.
  CHECK_GRADCHECK(
      [](const Inputs& in) { return batch_norm(in[0], Tensor(), in[1], Tensor(), Tensor(), true); },
      {x3, random_leaf({2}, 10)});
  // Gradients for weight and bias only: x is a constant.
  Tensor constant_x = random_leaf({4, 3}, 9).detach();
  CHECK_GRADCHECK(
      [constant_x](const Inputs& in) {
        return batch_norm(constant_x, in[0], in[1], Tensor(), Tensor(), true);
      },
      {w, b});
}

TEST_CASE("gradcheck: batch_norm in eval mode") {
  Tensor x = random_leaf({2, 3, 2, 2}, 11, -2.0, 2.0);
  Tensor w = random_leaf({3}, 12, 0.5, 1.5), b = random_leaf({3}, 13);
  Tensor rm = f64({0.3, -0.2, 1.0}, {3}), rv = f64({0.5, 2.0, 1.3}, {3});
  CHECK_GRADCHECK([&](const Inputs& in) { return batch_norm(in[0], in[1], in[2], rm, rv, false); },
                  {x, w, b});
  CHECK_GRADCHECK(
      [&](const Inputs& in) { return batch_norm(in[0].transpose(2, 3), Tensor(), Tensor(), rm, rv, false); },
      {x});
  // The running statistics were only read.
  CHECK(rm.to_vector<double>() == std::vector<double>{0.3, -0.2, 1.0});
}

TEST_CASE("gradcheck: group_norm with several group counts") {
  Tensor x = random_leaf({2, 4, 2, 3}, 21, -2.0, 2.0);
  Tensor w = random_leaf({4}, 22, 0.5, 1.5), b = random_leaf({4}, 23);
  for (int64_t groups : {1, 2, 4}) {
    CAPTURE(groups);
    CHECK_GRADCHECK([groups](const Inputs& in) { return group_norm(in[0], groups, in[1], in[2]); },
                    {x, w, b});
    CHECK_GRADCHECK(
        [groups](const Inputs& in) { return group_norm(in[0], groups, Tensor(), Tensor(), 1e-3); }, {x});
  }
  CHECK_GRADCHECK([](const Inputs& in) { return group_norm(in[0], 2, Tensor(), in[1]); }, {x, b});
  // [N, C] input (one element per channel) and a non-contiguous x.
  Tensor x2 = random_leaf({3, 6}, 24);
  CHECK_GRADCHECK([](const Inputs& in) { return group_norm(in[0], 3, in[1], Tensor()); },
                  {x2, random_leaf({6}, 25, 0.5, 1.5)});
  Tensor base = random_leaf({3, 2, 4}, 26);
  CHECK_GRADCHECK(
      [](const Inputs& in) {
        return group_norm(in[0].permute({1, 2, 0}), 2, in[1], in[2]);
      },
      {base, w, b});
}

TEST_CASE("gradcheck: layer_norm with and without affine parameters") {
  Tensor x = random_leaf({2, 3, 4}, 31, -2.0, 2.0);
  Tensor w = random_leaf({4}, 32, 0.5, 1.5), b = random_leaf({4}, 33);
  CHECK_GRADCHECK([](const Inputs& in) { return layer_norm(in[0], {4}, in[1], in[2]); }, {x, w, b});
  CHECK_GRADCHECK([](const Inputs& in) { return layer_norm(in[0], {4}, Tensor(), Tensor()); }, {x});
  CHECK_GRADCHECK([](const Inputs& in) { return layer_norm(in[0], {4}, Tensor(), in[1], 1e-2); }, {x, b});
  Tensor w2 = random_leaf({3, 4}, 34, 0.5, 1.5), b2 = random_leaf({3, 4}, 35);
  CHECK_GRADCHECK([](const Inputs& in) { return layer_norm(in[0], {3, 4}, in[1], in[2]); }, {x, w2, b2});
  // Non-contiguous x (normalised over a dim that is not innermost in memory) and a strided weight.
  Tensor base = random_leaf({4, 5, 2}, 36);
  CHECK_GRADCHECK(
      [](const Inputs& in) { return layer_norm(in[0].transpose(0, 2), {4}, in[1].narrow(0, 1, 4), in[2]); },
      {base, random_leaf({6}, 37, 0.5, 1.5), b});
  // Many rows: the backward's row blocks (more rows than blocks) add up their dw and db partials.
  Tensor tall = random_leaf({130, 2}, 38);
  CHECK_GRADCHECK([](const Inputs& in) { return layer_norm(in[0], {2}, in[1], in[2]); },
                  {tall, random_leaf({2}, 39, 0.5, 1.5), random_leaf({2}, 40)});
}

TEST_CASE("parity with torch (tests/fixtures/norm.json): outputs, gradients, running statistics") {
  testing::Fixture fixture("norm.json");
  CHECK(fixture.case_names().size() == 11);
  for (const std::string& name : fixture.case_names()) {
    INFO("case " << name);
    testing::FixtureCase c = fixture[name];
    const auto& p = c.params();
    const std::string op = p.at("op").get<std::string>();
    const double eps = p.at("eps").get<double>();
    for (DType dtype : {DType::f64, DType::f32}) {
      INFO("dtype " << dtype_name(dtype));
      std::vector<std::pair<std::string, Tensor>> leaves;
      auto input = [&](const std::string& key) {
        if (!c.has_tensor(key)) return Tensor();
        Tensor t = c.tensor(key, dtype);
        t.set_requires_grad(true);
        leaves.push_back({key, t});
        return t;
      };
      Tensor x = input("x"), w = input("weight"), b = input("bias");
      Tensor rm = c.has_tensor("running_mean") ? c.tensor("running_mean", dtype) : Tensor();
      Tensor rv = c.has_tensor("running_var") ? c.tensor("running_var", dtype) : Tensor();
      Tensor y;
      if (op == "batch_norm") {
        y = batch_norm(x, w, b, rm, rv, p.at("training").get<bool>(), p.at("momentum").get<double>(), eps);
      } else if (op == "group_norm") {
        y = group_norm(x, p.at("num_groups").get<int64_t>(), w, b, eps);
      } else {
        REQUIRE(op == "layer_norm");
        y = layer_norm(x, p.at("normalized_shape").get<Shape>(), w, b, eps);
      }
      check_matches(y, c.tensor("y"), dtype);
      y.backward(c.tensor("grad_y", dtype));
      for (const auto& [key, leaf] : leaves) {
        INFO("gradient of " << key);
        check_matches(leaf.grad(), c.tensor("grad_" + key), dtype);
      }
      if (rm.defined()) {
        check_matches(rm, c.tensor("running_mean_out"), dtype);
        check_matches(rv, c.tensor("running_var_out"), dtype);
      }
    }
  }
}

TEST_CASE("large f32 inputs take the parallel paths and agree with f64") {
  Generator gen(41);
  Tensor x = add(mul(randn({4, 16, 24, 24}, gen), 3.0), 5.0);  // 36864 elements, mean far from 0
  Tensor w = uniform({16}, 0.5, 1.5, gen), b = randn({16}, gen);
  Tensor g = randn(x.shape(), gen);
  auto run = [&](DType dtype, auto op) {
    Tensor xi = x.to(dtype).detach(), wi = w.to(dtype).detach(), bi = b.to(dtype).detach();
    xi.set_requires_grad(true);
    wi.set_requires_grad(true);
    bi.set_requires_grad(true);
    Tensor y = op(xi, wi, bi);
    y.backward(g.to(dtype));
    return std::vector<Tensor>{y, xi.grad(), wi.grad(), bi.grad()};
  };
  Tensor rm32 = zeros({16}), rv32 = ones({16});
  Tensor rm64 = zeros({16}, {DType::f64}), rv64 = ones({16}, {DType::f64});
  auto bn32 = [&](const Tensor& xi, const Tensor& wi, const Tensor& bi) {
    return batch_norm(xi, wi, bi, rm32, rv32, true);
  };
  auto bn64 = [&](const Tensor& xi, const Tensor& wi, const Tensor& bi) {
    return batch_norm(xi, wi, bi, rm64, rv64, true);
  };
  auto gn = [](const Tensor& xi, const Tensor& wi, const Tensor& bi) { return group_norm(xi, 4, wi, bi); };
  auto ln = [](const Tensor& xi, const Tensor& wi, const Tensor& bi) {
    return layer_norm(xi.reshape({-1, 16}), {16}, wi, bi).reshape(xi.shape());
  };
  std::vector<std::pair<std::vector<Tensor>, std::vector<Tensor>>> results{
      {run(DType::f32, bn32), run(DType::f64, bn64)},
      {run(DType::f32, gn), run(DType::f64, gn)},
      {run(DType::f32, ln), run(DType::f64, ln)}};
  for (std::size_t k = 0; k < results.size(); ++k) {
    CAPTURE(k);
    for (std::size_t t = 0; t < 4; ++t) {
      CAPTURE(t);
      const Tensor& expected = results[k].second[t];
      CHECK(max_relative_error(results[k].first[t], expected, max_abs(expected)) < 1e-5);
    }
  }
  CHECK(max_relative_error(rm32, rm64) < 1e-6);
  CHECK(max_relative_error(rv32, rv64) < 1e-6);
  // The normalised output has zero mean and unit variance per channel before the affine map.
  Tensor y = batch_norm(x.to(DType::f64), Tensor(), Tensor(), Tensor(), Tensor(), true);
  CHECK(std::abs(mean(y, {0, 2, 3}).to_vector<double>()[7]) < 1e-12);
  CHECK(mean(mul(y, y), {0, 2, 3}).to_vector<double>()[7] == doctest::Approx(1.0).epsilon(1e-5));
}

TEST_CASE("bad arguments are rejected with the op's name") {
  Tensor x = zeros({2, 4, 3}, {DType::f64});
  Tensor c4 = ones({4}, {DType::f64});
  // batch_norm
  CHECK_THROWS_AS(batch_norm(zeros({4}, {DType::f64}), Tensor(), Tensor(), Tensor(), Tensor(), true),
                  std::invalid_argument);
  CHECK_THROWS_AS(batch_norm(x, ones({3}, {DType::f64}), Tensor(), Tensor(), Tensor(), true),
                  std::invalid_argument);
  CHECK_THROWS_AS(batch_norm(x, c4, zeros({4, 1}, {DType::f64}), Tensor(), Tensor(), true),
                  std::invalid_argument);
  CHECK_THROWS_AS(batch_norm(x, c4, c4, zeros({5}, {DType::f64}), c4, true), std::invalid_argument);
  CHECK_THROWS_AS(batch_norm(x, c4, c4, Tensor(), Tensor(), false), std::invalid_argument);  // eval, no stats
  CHECK_THROWS_AS(batch_norm(x, c4, c4, zeros({4}, {DType::f64}), Tensor(), true), std::invalid_argument);
  CHECK_THROWS_AS(batch_norm(zeros({1, 4, 1}, {DType::f64}), c4, c4, Tensor(), Tensor(), true),
                  std::invalid_argument);  // one value per channel
  CHECK_NOTHROW(batch_norm(zeros({1, 4, 1}, {DType::f64}), c4, c4, zeros({4}, {DType::f64}), c4, false));
  CHECK_THROWS_AS(batch_norm(x, ones({4}), Tensor(), Tensor(), Tensor(), true),
                  std::invalid_argument);  // f32 weight
  try {
    batch_norm(x, ones({3}, {DType::f64}), Tensor(), Tensor(), Tensor(), true);
    FAIL("no error");
  } catch (const std::invalid_argument& e) {
    CHECK(std::string(e.what()).find("batch_norm: weight") != std::string::npos);
  }
  // group_norm
  CHECK_THROWS_AS(group_norm(x, 3, Tensor(), Tensor()), std::invalid_argument);  // 4 channels, 3 groups
  CHECK_THROWS_AS(group_norm(x, 0, Tensor(), Tensor()), std::invalid_argument);
  CHECK_THROWS_AS(group_norm(x, 2, ones({2}, {DType::f64}), Tensor()), std::invalid_argument);
  CHECK_THROWS_AS(group_norm(zeros({4}, {DType::f64}), 1, Tensor(), Tensor()), std::invalid_argument);
  // layer_norm
  CHECK_THROWS_AS(layer_norm(x, {4}, Tensor(), Tensor()), std::invalid_argument);  // last dim is 3
  CHECK_THROWS_AS(layer_norm(x, {}, Tensor(), Tensor()), std::invalid_argument);
  CHECK_THROWS_AS(layer_norm(x, {1, 2, 4, 3}, Tensor(), Tensor()), std::invalid_argument);
  CHECK_THROWS_AS(layer_norm(x, {4, 3}, ones({3}, {DType::f64}), Tensor()), std::invalid_argument);
  CHECK_NOTHROW(layer_norm(x, {4, 3}, ones({4, 3}, {DType::f64}), Tensor()));
}
