// Loss functions: hand-computed values, stability at extreme logits, f64 gradient checks of every loss
// and reduction, parity with torch/torchvision (tests/fixtures/loss.json from tools/make_loss_fixtures.py),
// and errors for bad input.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <string>

#include "engine/autograd.h"
#include "engine/factory.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/loss.h"
#include "fixture.h"
#include "gradcheck.h"

using namespace icd;
using icd::testing::f64;
using icd::testing::random_leaf;
using Inputs = std::vector<Tensor>;

namespace {

constexpr Reduction kReductions[] = {Reduction::none, Reduction::mean, Reduction::sum};

Tensor f64_leaf(std::vector<double> v, Shape shape) {
  Tensor t = f64(std::move(v), std::move(shape));
  t.set_requires_grad(true);
  return t;
}

Reduction parse_reduction(const std::string& name) {
  if (name == "none") return Reduction::none;
  if (name == "mean") return Reduction::mean;
  if (name == "sum") return Reduction::sum;
  throw std::runtime_error("unknown reduction " + name);
}

// 0/1 targets with a few soft ones, as a constant (no grad) f64 tensor.
Tensor label_targets(const Shape& shape, uint64_t seed) {
  Generator gen(seed);
  NoGradGuard no_grad;
  Tensor r = rand(shape, gen, {DType::f64});
  Tensor hard = gt(r, 0.6);
  return where(lt(r, 0.1), mul(r, 5.0), hard).detach();
}

// y = x + d with |d| in [0.1, 0.4] or [0.6, 1.2]: away from the kinks of l1 (0) and smooth l1 (beta 0.5).
Tensor away_from_kinks(const Tensor& x, uint64_t seed) {
  Generator gen(seed);
  NoGradGuard no_grad;
  Tensor u = rand(x.shape(), gen, {DType::f64});
  Tensor magnitude = where(lt(u, 0.5), add(mul(u, 0.6), 0.1), add(mul(u, 1.2), 0.0));
  Tensor sign = sub(mul(gt(rand(x.shape(), gen, {DType::f64}), 0.5), 2.0), 1.0);
  Tensor y = add(x.detach(), mul(magnitude, sign)).detach();
  y.set_requires_grad(true);
  return y;
}

}  // namespace

TEST_CASE("losses: hand-computed values") {
  const double log2 = std::log(2.0);
  // x = 0: p = 1/2, ce = log 2, 1 - p_t = 1/2
  Tensor zero = f64({0, 0}, {2}), labels = f64({1, 0}, {2});
  CHECK(sigmoid_focal_loss(zero, labels, 0.25, 2.0, Reduction::none).to_vector<double>() ==
        std::vector<double>{0.25 * log2 * 0.25, 0.75 * log2 * 0.25});
  CHECK(sigmoid_focal_loss(zero, labels, -1.0, 0.0, Reduction::sum).item() == doctest::Approx(2 * log2));
  CHECK(binary_cross_entropy_with_logits(zero, labels).item() == doctest::Approx(log2).epsilon(1e-15));
  CHECK(binary_cross_entropy_with_logits(f64({2}, {1}), f64({0.25}, {1}), Reduction::sum).item() ==
        doctest::Approx(std::log1p(std::exp(2.0)) - 0.5).epsilon(1e-15));
  CHECK(
      binary_cross_entropy_with_logits(zero, labels, Reduction::none, f64({3}, {1})).to_vector<double>()[0] ==
      doctest::Approx(3 * log2).epsilon(1e-15));

  Tensor x = f64({1, -2, 0.5}, {3}), y = f64({0, 1, 0.25}, {3});  // d = 1, -3, 0.25
  CHECK(l1_loss(x, y, Reduction::none).to_vector<double>() == std::vector<double>{1, 3, 0.25});
  CHECK(l1_loss(x, y).item() == doctest::Approx(4.25 / 3));
  CHECK(mse_loss(x, y, Reduction::sum).item() == 1 + 9 + 0.0625);
  CHECK(smooth_l1_loss(x, y, 0.5, Reduction::none).to_vector<double>() ==
        std::vector<double>{0.75, 2.75, 0.5 * 0.0625 / 0.5});
  CHECK(smooth_l1_loss(x, y, 0.0, Reduction::none).to_vector<double>() == std::vector<double>{1, 3, 0.25});

  // uniform logits: loss log C; the ignored row gives 0 and is left out of the mean
  Tensor logits = zeros({3, 4}, {DType::f64});
  Tensor target = from_vector(std::vector<int64_t>{0, 3, 2}, {3});
  CHECK(cross_entropy(logits, target).item() == doctest::Approx(std::log(4.0)).epsilon(1e-15));
  CHECK(cross_entropy(logits, target, Reduction::none, 3).to_vector<double>()[1] == 0.0);
  CHECK(cross_entropy(logits, target, Reduction::sum, 3).item() == doctest::Approx(2 * std::log(4.0)));
  CHECK(cross_entropy(logits, target, Reduction::mean, 3).item() == doctest::Approx(std::log(4.0)));
  CHECK(std::isnan(
      cross_entropy(logits, from_vector(std::vector<int64_t>{-1, -1, -1}, {3}), Reduction::mean, -1).item()));
}

TEST_CASE("focal loss and BCE stay finite and exact at extreme logits") {
  for (DType dtype : {DType::f64, DType::f32}) {
    const std::string dtype_label = dtype_name(dtype);
    CAPTURE(dtype_label);
    Tensor x = from_vector(std::vector<double>{-1000, -100, -30, 30, 100, 1000}, {6}, {dtype});
    x.set_requires_grad(true);
    Tensor ones_t = ones({6}, {dtype}), zeros_t = zeros({6}, {dtype});
    // BCE(x, 0) = softplus(x), BCE(x, 1) = softplus(-x)
    std::vector<double> bce0 =
        binary_cross_entropy_with_logits(x, zeros_t, Reduction::none).to_vector<double>();
    std::vector<double> bce1 =
        binary_cross_entropy_with_logits(x, ones_t, Reduction::none).to_vector<double>();
    CHECK(bce0[0] == 0.0);
    CHECK(bce0[5] == 1000.0);
    CHECK(bce1[0] == 1000.0);
    CHECK(bce1[2] == doctest::Approx(30.0));
    CHECK(bce0[3] == doctest::Approx(30.0));
    CHECK(bce1[3] == doctest::Approx(std::exp(-30.0)).epsilon(1e-5));  // no cancellation to 0
    Tensor focal = sigmoid_focal_loss(x, ones_t, 0.25, 2.0, Reduction::sum) +
                   sigmoid_focal_loss(x, zeros_t, 0.25, 2.0, Reduction::sum);
    CHECK(std::isfinite(focal.item()));
    // wrong confident predictions cost alpha_t * |x|: 0.25 * 2 * (1000 + 100 + 30) + 0.75 * ...
    CHECK(focal.item() == doctest::Approx(0.25 * 1130 + 0.75 * 1130).epsilon(1e-6));
    focal.backward();
    for (double g : x.grad().to_vector<double>())
      CHECK(std::isfinite(g));
    // d/dx at x = -1000, t = 1 is -alpha = -0.25; at x = 1000, t = 0 it is 1 - alpha = 0.75
    CHECK(x.grad().to_vector<double>()[0] == doctest::Approx(-0.25));
    CHECK(x.grad().to_vector<double>()[5] == doctest::Approx(0.75));
  }
  // A confident, correct logit keeps its tiny loss and gradient to full relative precision (computing
  // sigmoid(30) - 1 would leave one rounding of 1, i.e. a 1e-3 relative error, of the 9.4e-14).
  Tensor x = f64_leaf({30, -30}, {2});
  Tensor loss = binary_cross_entropy_with_logits(x, f64({1, 0}, {2}), Reduction::sum);
  const double tail = std::log1p(std::exp(-30.0)), q = 1 / (1 + std::exp(30.0));
  CHECK(loss.item() == doctest::Approx(2 * tail).epsilon(1e-14));
  loss.backward();
  CHECK(x.grad().to_vector<double>()[0] == doctest::Approx(-q).epsilon(1e-14));
  CHECK(x.grad().to_vector<double>()[1] == doctest::Approx(q).epsilon(1e-14));
}

TEST_CASE("gradcheck: sigmoid focal loss, every reduction, with extreme logits and soft targets") {
  for (Reduction reduction : kReductions) {
    Tensor x = random_leaf({3, 5}, 1, -4, 4);
    Tensor t = label_targets({3, 5}, 2);
    CHECK_GRADCHECK([&](const Inputs& in) { return sigmoid_focal_loss(in[0], t, 0.25, 2.0, reduction); },
                    {x});
    CHECK_GRADCHECK([&](const Inputs& in) { return sigmoid_focal_loss(in[0], t, -1.0, 1.5, reduction); },
                    {x});
    CHECK_GRADCHECK([&](const Inputs& in) { return sigmoid_focal_loss(in[0], t, 0.6, 0.5, reduction); }, {x});
    Tensor extreme = f64_leaf({30, -30, 30, -30, 45, -45, 0.3, -0.7}, {8});
    Tensor extreme_t = f64({1, 0, 0, 1, 0.3, 0.8, 1, 0}, {8});
    CHECK_GRADCHECK(
        [&](const Inputs& in) { return sigmoid_focal_loss(in[0], extreme_t, 0.25, 2.0, reduction); },
        {extreme});
    // a non-contiguous view of the logits
    Tensor wide = random_leaf({5, 3}, 3, -3, 3);
    CHECK_GRADCHECK(
        [&](const Inputs& in) { return sigmoid_focal_loss(in[0].transpose(0, 1), t, 0.25, 2.0, reduction); },
        {wide});
  }
}

TEST_CASE("gradcheck: BCE with logits into logits, targets and weight") {
  for (Reduction reduction : kReductions) {
    Tensor x = random_leaf({3, 4}, 4, -3, 3), t = random_leaf({3, 4}, 5, 0, 1);
    CHECK_GRADCHECK(
        [&](const Inputs& in) { return binary_cross_entropy_with_logits(in[0], in[1], reduction); }, {x, t});
    Tensor w = random_leaf({4}, 6, 0.5, 2.0);
    CHECK_GRADCHECK(
        [&](const Inputs& in) { return binary_cross_entropy_with_logits(in[0], in[1], reduction, in[2]); },
        {x, t, w});
    Tensor extreme = f64_leaf({30, -30, 30, -30, 40, -40}, {6});
    Tensor extreme_t = f64_leaf({1, 0, 0, 1, 0.25, 0.5}, {6});
    CHECK_GRADCHECK(
        [&](const Inputs& in) { return binary_cross_entropy_with_logits(in[0], in[1], reduction); },
        {extreme, extreme_t});
    Tensor tall = random_leaf({4, 2, 3}, 7, -2, 2);
    CHECK_GRADCHECK(
        [&](const Inputs& in) {
          return binary_cross_entropy_with_logits(in[0].permute({1, 2, 0}), in[1].narrow(0, 1, 2), reduction);
        },
        {tall, random_leaf({4, 3, 4}, 8, 0, 1)});
  }
}

TEST_CASE("gradcheck: l1, smooth l1 and mse into both arguments") {
  for (Reduction reduction : kReductions) {
    Tensor x = random_leaf({3, 4}, 9);
    Tensor y = away_from_kinks(x, 10);
    CHECK_GRADCHECK([&](const Inputs& in) { return l1_loss(in[0], in[1], reduction); }, {x, y});
    CHECK_GRADCHECK([&](const Inputs& in) { return smooth_l1_loss(in[0], in[1], 0.5, reduction); }, {x, y});
    CHECK_GRADCHECK([&](const Inputs& in) { return smooth_l1_loss(in[0], in[1], 0.0, reduction); }, {x, y});
    CHECK_GRADCHECK([&](const Inputs& in) { return mse_loss(in[0], in[1], reduction); }, {x, y});
    CHECK_GRADCHECK(
        [&](const Inputs& in) { return mse_loss(in[0].transpose(0, 1), in[1].transpose(0, 1), reduction); },
        {x, random_leaf({3, 4}, 11)});
  }
}

TEST_CASE("gradcheck: cross entropy, with ignored rows and transposed logits") {
  Tensor target = from_vector(std::vector<int64_t>{2, 0, 3, 3, 1}, {5});
  for (Reduction reduction : kReductions) {
    Tensor x = random_leaf({5, 4}, 12, -3, 3);
    CHECK_GRADCHECK([&](const Inputs& in) { return cross_entropy(in[0], target, reduction); }, {x});
    CHECK_GRADCHECK([&](const Inputs& in) { return cross_entropy(in[0], target, reduction, 3); }, {x});
    Tensor xt = random_leaf({4, 5}, 13, -3, 3);
    CHECK_GRADCHECK([&](const Inputs& in) { return cross_entropy(in[0].transpose(0, 1), target, reduction); },
                    {xt});
    Tensor extreme = f64_leaf({60, -60, 10, 0, 1, 2, 3, 4, -50, 50, 0, 0, 5, 5, 5, 5, 0, 0, 0, 0}, {5, 4});
    CHECK_GRADCHECK([&](const Inputs& in) { return cross_entropy(in[0], target, reduction); }, {extreme});
  }
}

TEST_CASE("losses match torch and torchvision (fixtures/loss.json)") {
  testing::Fixture fixture("loss.json");
  int checked = 0;
  for (const std::string& name : fixture.case_names()) {
    const testing::FixtureCase c = fixture[name];
    const Reduction reduction = parse_reduction(c.params().at("reduction").get<std::string>());
    for (DType dtype : {DType::f64, DType::f32}) {
      CAPTURE(name);
      const std::string dtype_label = dtype_name(dtype);
      CAPTURE(dtype_label);
      const double tolerance = dtype == DType::f64 ? 1e-10 : 1e-5;
      // Inputs that take a gradient in torch take one here too.
      auto input = [&](const std::string& key) {
        Tensor t = c.tensor(key, dtype);
        if (c.has_tensor("grad_" + key)) t.set_requires_grad(true);
        return t;
      };
      std::vector<std::pair<std::string, Tensor>> leaves;
      Tensor out;
      if (name.rfind("focal", 0) == 0) {
        Tensor x = input("logits");
        leaves = {{"logits", x}};
        out = sigmoid_focal_loss(x, c.tensor("targets", dtype), c.params().at("alpha").get<double>(),
                                 c.params().at("gamma").get<double>(), reduction);
      } else if (name.rfind("bce", 0) == 0) {
        Tensor x = input("logits"), t = input("targets");
        Tensor w = c.has_tensor("weight") ? c.tensor("weight", dtype) : Tensor();
        leaves = {{"logits", x}, {"targets", t}};
        out = binary_cross_entropy_with_logits(x, t, reduction, w);
      } else if (name.rfind("ce", 0) == 0) {
        Tensor x = input("logits");
        std::vector<int64_t> labels;
        for (double v : c.tensor("target").to_vector<double>())
          labels.push_back(static_cast<int64_t>(v));
        const auto& ignore = c.params().at("ignore_index");
        leaves = {{"logits", x}};
        out = cross_entropy(x, from_vector(labels, {static_cast<int64_t>(labels.size())}), reduction,
                            ignore.is_null() ? std::nullopt : std::optional<int64_t>(ignore.get<int64_t>()));
      } else {
        Tensor x = input("input"), y = input("target");
        leaves = {{"input", x}, {"target", y}};
        if (name.rfind("l1", 0) == 0) {
          out = l1_loss(x, y, reduction);
        } else if (name.rfind("smooth_l1", 0) == 0) {
          out = smooth_l1_loss(x, y, c.params().at("beta").get<double>(), reduction);
        } else {
          REQUIRE(name.rfind("mse", 0) == 0);
          out = mse_loss(x, y, reduction);
        }
      }
      CHECK(testing::max_relative_error(out, c.tensor("output", dtype)) < tolerance);
      out.backward(c.tensor("grad_output", dtype));
      for (const auto& [key, leaf] : leaves) {
        CAPTURE(key);
        REQUIRE(c.has_tensor("grad_" + key));
        REQUIRE(leaf.grad().defined());
        CHECK(testing::max_relative_error(leaf.grad(), c.tensor("grad_" + key, dtype)) < tolerance);
      }
      ++checked;
    }
  }
  CHECK(checked == 66);
}

TEST_CASE("losses: large f32 inputs take the parallel path and agree with f64") {
  Generator gen(21);
  Tensor x = mul(randn({400, 300}, gen), 4.0), t = gt(rand({400, 300}, gen), 0.9);
  const double focal32 = sigmoid_focal_loss(x, t, 0.25, 2.0, Reduction::sum).item();
  const double focal64 =
      sigmoid_focal_loss(x.to(DType::f64), t.to(DType::f64), 0.25, 2.0, Reduction::sum).item();
  CHECK(focal32 == doctest::Approx(focal64).epsilon(1e-6));
  Tensor x64 = x.to(DType::f64);
  x64.set_requires_grad(true);
  Tensor loss = binary_cross_entropy_with_logits(x64, t.to(DType::f64), Reduction::mean);
  loss.backward();
  std::vector<double> g = x64.grad().to_vector<double>();
  std::vector<double> p = sigmoid(x.to(DType::f64)).to_vector<double>(),
                      tv = t.to(DType::f64).to_vector<double>();
  for (std::size_t i = 0; i < g.size(); i += 997)
    CHECK(g[i] == doctest::Approx((p[i] - tv[i]) / 120000.0));
}

TEST_CASE("losses record no graph under NoGradGuard or for constant inputs") {
  Tensor x = random_leaf({2, 3}, 30);
  {
    NoGradGuard no_grad;
    CHECK_FALSE(mse_loss(x, zeros({2, 3}, {DType::f64})).requires_grad());
    CHECK_FALSE(cross_entropy(x, from_vector(std::vector<int64_t>{0, 2}, {2})).requires_grad());
    // targets may require grad when no graph is being built
    CHECK_NOTHROW(sigmoid_focal_loss(x, x, 0.25, 2.0));
  }
  CHECK_FALSE(l1_loss(x.detach(), zeros({2, 3}, {DType::f64})).requires_grad());
  CHECK(l1_loss(x, zeros({2, 3}, {DType::f64})).requires_grad());
}

TEST_CASE("losses reject bad input with clear errors") {
  Tensor a = zeros({2, 3}, {DType::f64}), b = zeros({3, 2}, {DType::f64});
  CHECK_THROWS_AS(sigmoid_focal_loss(a, b), std::invalid_argument);
  CHECK_THROWS_AS(binary_cross_entropy_with_logits(a, b), std::invalid_argument);
  CHECK_THROWS_AS(l1_loss(a, b), std::invalid_argument);
  CHECK_THROWS_AS(smooth_l1_loss(a, b), std::invalid_argument);
  CHECK_THROWS_AS(mse_loss(a, zeros({3}, {DType::f64})), std::invalid_argument);  // no silent broadcasting
  CHECK_THROWS_AS(mse_loss(a, zeros({2, 3})), std::invalid_argument);             // f64 vs f32
  CHECK_THROWS_AS(binary_cross_entropy_with_logits(a, a, Reduction::mean, zeros({2}, {DType::f64})),
                  std::invalid_argument);
  CHECK_THROWS_AS(smooth_l1_loss(a, a, -0.5), std::invalid_argument);
  CHECK_THROWS_AS(sigmoid_focal_loss(a, a, 0.25, -1.0), std::invalid_argument);
  CHECK_THROWS_AS(l1_loss(Tensor(), a), std::invalid_argument);
  // focal loss gives targets no gradient, so it refuses targets that expect one
  Tensor learned = random_leaf({2, 3}, 31, 0, 1);
  CHECK_THROWS_AS(sigmoid_focal_loss(a, learned), std::invalid_argument);

  Tensor logits = zeros({3, 4}, {DType::f64});
  CHECK_THROWS_AS(cross_entropy(logits, from_vector(std::vector<int64_t>{0, 4, 1}, {3})),
                  std::invalid_argument);
  CHECK_THROWS_AS(cross_entropy(logits, from_vector(std::vector<int64_t>{0, -1, 1}, {3})),
                  std::invalid_argument);
  CHECK_THROWS_AS(cross_entropy(logits, from_vector(std::vector<int64_t>{0, 1}, {2})), std::invalid_argument);
  CHECK_THROWS_AS(cross_entropy(logits, zeros({3}, {DType::f64})), std::invalid_argument);
  CHECK_THROWS_AS(cross_entropy(zeros({3}, {DType::f64}), from_vector(std::vector<int64_t>{0, 1, 2}, {3})),
                  std::invalid_argument);
  // ignore_index is accepted even outside [0, C), but other indices are still checked
  CHECK_NOTHROW(
      cross_entropy(logits, from_vector(std::vector<int64_t>{0, -100, 1}, {3}), Reduction::mean, -100));
  CHECK_THROWS_AS(
      cross_entropy(logits, from_vector(std::vector<int64_t>{7, -100, 1}, {3}), Reduction::mean, -100),
      std::invalid_argument);
  try {
    cross_entropy(logits, from_vector(std::vector<int64_t>{0, 9, 1}, {3}));
    FAIL("expected an error");
  } catch (const std::invalid_argument& e) {
    CHECK(std::string(e.what()).find("target[1] = 9") != std::string::npos);
  }
}
