// Optimizers, learning-rate schedules and gradient clipping: parity with torch.optim / detectron2 /
// torch.nn.utils (tests/fixtures/optim.json from tools/make_optim_fixtures.py), hand-computed steps,
// skipped parameters, state save/load, and errors for bad arguments.
#include <doctest/doctest.h>

#include "gradcheck.h"

#include <cmath>
#include <memory>
#include <string>

#include "engine/autograd.h"
#include "engine/factory.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/reduce.h"
#include "engine/optim/adamw.h"
#include "engine/optim/clip_grad.h"
#include "engine/optim/lr_schedule.h"
#include "engine/optim/sgd.h"
#include "fixture.h"

using namespace icd;
using icd::testing::f64;

namespace {

Tensor leaf(Tensor t) {
  t.set_requires_grad(true);
  return t;
}

std::unique_ptr<Optimizer> make_optimizer(const testing::FixtureCase& c, std::vector<Tensor> params) {
  const auto& p = c.params();
  if (p.at("optimizer") == "sgd")
    return std::make_unique<Sgd>(std::move(params),
                                 SgdOptions{.lr = 0.0,
                                            .momentum = p.at("momentum").get<double>(),
                                            .dampening = p.at("dampening").get<double>(),
                                            .weight_decay = p.at("weight_decay").get<double>(),
                                            .nesterov = p.at("nesterov").get<bool>()});
  return std::make_unique<AdamW>(std::move(params),
                                 AdamWOptions{.lr = 0.0,
                                              .beta1 = p.at("beta1").get<double>(),
                                              .beta2 = p.at("beta2").get<double>(),
                                              .eps = p.at("eps").get<double>(),
                                              .weight_decay = p.at("weight_decay").get<double>()});
}

// "g1_2" and the like. (Built with += : GCC 12 warns falsely on "literal" + std::string, PR 105329.)
std::string key(const char* prefix, int a, int b = -1) {
  std::string k = prefix;
  k += std::to_string(a);
  if (b >= 0) {
    k += '_';
    k += std::to_string(b);
  }
  return k;
}

bool same_values(const Tensor& a, const Tensor& b) {
  return a.to_vector<double>() == b.to_vector<double>();
}

}  // namespace

TEST_CASE("SGD and AdamW match torch.optim step by step (fixtures/optim.json)") {
  testing::Fixture fixture("optim.json");
  int checked = 0;
  for (const std::string& name : fixture.case_names()) {
    const testing::FixtureCase c = fixture[name];
    if (!c.params().contains("optimizer")) continue;
    for (DType dtype : {DType::f64, DType::f32}) {
      CAPTURE(name);
      const std::string dtype_label = dtype_name(dtype);
      CAPTURE(dtype_label);
      const double tolerance = dtype == DType::f64 ? 1e-12 : 1e-5;
      const int num_params = c.params().at("num_params").get<int>();
      const int steps = c.params().at("steps").get<int>();
      std::vector<Tensor> params;
      for (int i = 0; i < num_params; ++i)
        params.push_back(leaf(c.tensor(key("p", i), dtype)));
      std::unique_ptr<Optimizer> opt = make_optimizer(c, params);
      const std::vector<double> lrs = c.tensor("lrs").to_vector<double>();
      for (int step = 0; step < steps; ++step) {
        opt->set_lr(lrs[step]);
        for (int i = 0; i < num_params; ++i) {
          const std::string grad_key = key("g", step, i);
          if (c.has_tensor(grad_key)) {
            params[i].set_grad(c.tensor(grad_key, dtype));
          } else {
            params[i].zero_grad();
          }
        }
        opt->step();
        for (int i = 0; i < num_params; ++i) {
          CAPTURE(step);
          CAPTURE(i);
          const Tensor expected = c.tensor(key("after", step, i), dtype);
          CHECK(testing::max_relative_error(params[i], expected) < tolerance);
        }
      }
      ++checked;
    }
  }
  CHECK(checked == 14);
}

TEST_CASE("learning-rate schedules match detectron2 (fixtures/optim.json)") {
  testing::Fixture fixture("optim.json");
  int checked = 0;
  for (const std::string& name : fixture.case_names()) {
    const testing::FixtureCase c = fixture[name];
    if (!c.params().contains("kind") ||
        (c.params().at("kind") != "multistep" && c.params().at("kind") != "cosine"))
      continue;
    CAPTURE(name);
    const auto& p = c.params();
    const LinearWarmup warmup{p.at("warmup_factor").get<double>(), p.at("warmup_iters").get<int64_t>()};
    std::unique_ptr<LrSchedule> schedule;
    if (p.at("kind") == "multistep") {
      schedule = std::make_unique<WarmupMultiStepLR>(MultiStepOptions{
          p.at("base_lr").get<double>(), p.at("max_iter").get<int64_t>(),
          p.at("milestones").get<std::vector<int64_t>>(), p.at("gamma").get<double>(), warmup});
    } else {
      schedule = std::make_unique<WarmupCosineLR>(CosineOptions{p.at("base_lr").get<double>(),
                                                                p.at("max_iter").get<int64_t>(),
                                                                p.at("final_lr").get<double>(), warmup});
    }
    const std::vector<double> iters = c.tensor("iters").to_vector<double>();
    const std::vector<double> expected = c.tensor("lr").to_vector<double>();
    for (std::size_t k = 0; k < iters.size(); ++k) {
      CAPTURE(iters[k]);
      const double lr = schedule->lr(static_cast<int64_t>(iters[k]));
      CHECK(std::abs(lr - expected[k]) <= 1e-12 * std::abs(expected[k]));
    }
    ++checked;
  }
  CHECK(checked == 6);
}

TEST_CASE("gradient clipping matches torch.nn.utils (fixtures/optim.json)") {
  testing::Fixture fixture("optim.json");
  for (const std::string name : {"clip_value", "clip_norm_active", "clip_norm_inactive"}) {
    const testing::FixtureCase c = fixture[name];
    for (DType dtype : {DType::f64, DType::f32}) {
      CAPTURE(name);
      const std::string dtype_label = dtype_name(dtype);
      CAPTURE(dtype_label);
      const double tolerance = dtype == DType::f64 ? 1e-12 : 1e-5;
      std::vector<Tensor> params;
      for (int i = 0; i < 2; ++i) {
        params.push_back(leaf(zeros_like(c.tensor(key("g", i), dtype))));
        params[i].set_grad(c.tensor(key("g", i), dtype));
      }
      params.push_back(leaf(zeros({2, 1, 3}, {dtype})));  // no gradient: skipped
      const double value = c.params().at("value").get<double>();
      if (c.params().at("kind") == "value") {
        clip_grad_value(params, value);
      } else {
        const double total = clip_grad_norm(params, value);
        const double expected = c.tensor("total_norm").item();
        CHECK(std::abs(total - expected) <= tolerance * expected);
      }
      for (int i = 0; i < 2; ++i)
        CHECK(testing::max_relative_error(params[i].grad(), c.tensor(key("clipped", i), dtype)) < tolerance);
      CHECK_FALSE(params[2].grad().defined());
    }
  }
}

TEST_CASE("SGD: hand-computed steps, momentum and nesterov") {
  Tensor p = leaf(f64({1.0, -2.0}, {2}));
  Sgd plain({p}, {.lr = 0.5});
  p.set_grad(f64({0.5, 1.0}, {2}));
  plain.step();
  CHECK(p.to_vector<double>() == std::vector<double>{0.75, -2.5});
  CHECK(p.is_leaf());
  CHECK(p.requires_grad());

  // momentum 0.5, lr 1, constant gradient 1: the buffer goes 1, 1.5, 1.75
  Tensor q = leaf(f64({0.0}, {1}));
  Sgd momentum({q}, {.lr = 1.0, .momentum = 0.5});
  for (double expected : {-1.0, -2.5, -4.25}) {
    q.set_grad(f64({1.0}, {1}));
    momentum.step();
    CHECK(q.item() == expected);
  }
  // nesterov steps by d + momentum * buffer: 1 + 0.5 * 1, then 1 + 0.5 * 1.5
  Tensor r = leaf(f64({0.0}, {1}));
  Sgd nesterov({r}, {.lr = 1.0, .momentum = 0.5, .nesterov = true});
  for (double expected : {-1.5, -3.25}) {
    r.set_grad(f64({1.0}, {1}));
    nesterov.step();
    CHECK(r.item() == expected);
  }
  // weight decay adds wd * p to the gradient
  Tensor s = leaf(f64({2.0}, {1}));
  Sgd decay({s}, {.lr = 0.5, .weight_decay = 0.25});
  s.set_grad(f64({0.0}, {1}));
  decay.step();
  CHECK(s.item() == 2.0 - 0.5 * 0.25 * 2.0);
}

TEST_CASE("AdamW: the first step moves each weight by lr * sign(g) after the decoupled decay") {
  Tensor p = leaf(f64({1.0, -3.0, 0.5}, {3}));
  AdamW adam({p}, {.lr = 0.1, .eps = 0.0, .weight_decay = 0.5});
  p.set_grad(f64({2.0, -0.01, 7.0}, {3}));
  adam.step();
  const std::vector<double> v = p.to_vector<double>();
  CHECK(v[0] == doctest::Approx(1.0 * 0.95 - 0.1).epsilon(1e-14));
  CHECK(v[1] == doctest::Approx(-3.0 * 0.95 + 0.1).epsilon(1e-14));
  CHECK(v[2] == doctest::Approx(0.5 * 0.95 - 0.1).epsilon(1e-14));
}

TEST_CASE("optimizers skip parameters without a gradient and zero_grad drops gradients") {
  Tensor a = leaf(f64({1, 2}, {2})), b = leaf(f64({3, 4}, {2}));
  Tensor frozen = f64({5}, {1});  // requires no grad: never gets one
  for (int kind = 0; kind < 2; ++kind) {
    std::unique_ptr<Optimizer> opt;
    if (kind == 0) {
      opt = std::make_unique<Sgd>(std::vector<Tensor>{a, b, frozen}, SgdOptions{.lr = 0.1, .momentum = 0.9});
    } else {
      opt = std::make_unique<AdamW>(std::vector<Tensor>{a, b, frozen}, AdamWOptions{.lr = 0.1});
    }
    const std::vector<double> b_before = b.to_vector<double>();
    a.set_grad(f64({1, 1}, {2}));
    opt->step();
    CHECK(b.to_vector<double>() == b_before);
    CHECK(frozen.item() == 5);
    // only parameter 0 has state
    for (const auto& [name, value] : opt->state())
      CHECK(name.back() == '0');
    opt->zero_grad();
    CHECK_FALSE(a.grad().defined());
    const std::vector<double> a_after = a.to_vector<double>();
    opt->step();  // nothing has a gradient: nothing moves
    CHECK(a.to_vector<double>() == a_after);
  }
}

TEST_CASE("optimizers read gradients that are strided views") {
  Tensor p1 = leaf(f64({1, 2, 3, 4, 5, 6}, {2, 3})), p2 = leaf(f64({1, 2, 3, 4, 5, 6}, {2, 3}));
  Tensor g = f64({0.1, -0.2, 0.3, 0.4, -0.5, 0.6}, {3, 2});
  Sgd opt1({p1}, {.lr = 0.5, .momentum = 0.9}), opt2({p2}, {.lr = 0.5, .momentum = 0.9});
  p1.set_grad(g.transpose(0, 1));
  p2.set_grad(g.transpose(0, 1).contiguous());
  opt1.step();
  opt2.step();
  CHECK(same_values(p1, p2));
  // clipping writes through: the gradient seen afterwards is the clipped one
  p1.set_grad(g.transpose(0, 1));
  clip_grad_value({p1}, 0.25);
  CHECK(p1.grad().to_vector<double>() == std::vector<double>{0.1, 0.25, -0.25, -0.2, 0.25, 0.25});
}

TEST_CASE("optimizer state round-trips: a resumed run continues exactly") {
  Generator gen(3);
  auto run = [&](bool adam) {
    Tensor w = leaf(randn({4, 3}, gen, {DType::f64})), v = leaf(randn({5}, gen, {DType::f64}));
    Tensor w2 = leaf(w.detach().clone()), v2 = leaf(v.detach().clone());
    auto make = [&](std::vector<Tensor> ps) -> std::unique_ptr<Optimizer> {
      if (adam) return std::make_unique<AdamW>(std::move(ps), AdamWOptions{.lr = 0.01});
      return std::make_unique<Sgd>(std::move(ps), SgdOptions{.lr = 0.01, .momentum = 0.9, .nesterov = true});
    };
    std::unique_ptr<Optimizer> first = make({w, v});
    std::vector<std::pair<Tensor, Tensor>> grads;
    for (int i = 0; i < 5; ++i)
      grads.emplace_back(randn({4, 3}, gen, {DType::f64}), randn({5}, gen, {DType::f64}));
    for (int i = 0; i < 5; ++i) {
      w.set_grad(grads[i].first);
      v.set_grad(grads[i].second);
      first->step();
      if (i == 2) {  // "checkpoint": copy the parameters and the optimizer state into a fresh optimizer
        NoGradGuard no_grad;
        copy_(w2, w);
        copy_(v2, v);
      }
      if (i == 2) {
        std::unique_ptr<Optimizer> resumed = make({w2, v2});
        resumed->load_state(first->state());
        for (int j = 3; j < 5; ++j) {
          w2.set_grad(grads[j].first);
          v2.set_grad(grads[j].second);
          resumed->step();
        }
      }
    }
    CHECK(same_values(w, w2));
    CHECK(same_values(v, v2));
  };
  run(false);
  run(true);

  Tensor p = leaf(zeros({2}, {DType::f64}));
  Sgd sgd({p}, {.lr = 0.1, .momentum = 0.9});
  CHECK_THROWS_AS(sgd.load_state({{"momentum_buffer.1", zeros({2}, {DType::f64})}}), std::invalid_argument);
  CHECK_THROWS_AS(sgd.load_state({{"momentum_buffer.0", zeros({3}, {DType::f64})}}), std::invalid_argument);
  CHECK_THROWS_AS(sgd.load_state({{"velocity.0", zeros({2}, {DType::f64})}}), std::invalid_argument);
  CHECK_THROWS_AS(sgd.load_state({{"momentum_buffer", zeros({2}, {DType::f64})}}), std::invalid_argument);
  AdamW adam({p}, {});
  CHECK_THROWS_AS(adam.load_state({{"exp_avg.0", zeros({2}, {DType::f64})}}), std::invalid_argument);
  CHECK_THROWS_AS(adam.load_state({{"exp_avg.0", zeros({2}, {DType::f64})},
                                   {"exp_avg_sq.0", zeros({2}, {DType::f64})},
                                   {"step.0", scalar_tensor(0.0, {DType::f64})}}),
                  std::invalid_argument);
}

TEST_CASE("large parameters take the parallel path") {
  Generator gen(9);
  Tensor p = leaf(randn({300, 400}, gen));
  Tensor g = randn({300, 400}, gen);
  Tensor expected;
  {
    NoGradGuard no_grad;
    expected = sub(p, mul(g, 0.01f)).detach();
  }
  Sgd opt({p}, {.lr = 0.01});
  p.set_grad(g);
  opt.step();
  // relative to max(1, |expected|): elements near 0 are differences of O(1) numbers
  CHECK(testing::max_relative_error(p, expected, 1.0) < 1e-6);
  // clip_grad_norm's total over 120000 f32 elements, against an f64 reduction
  const double reference = std::sqrt(sum(mul(g.to(DType::f64), g.to(DType::f64))).item());
  CHECK(clip_grad_norm({p}, 1e9) == doctest::Approx(reference).epsilon(1e-12));
}

TEST_CASE("schedules: shape of the curves and errors") {
  WarmupMultiStepLR step({.base_lr = 0.01,
                          .max_iter = 90000,
                          .milestones = {60000, 80000},
                          .gamma = 0.1,
                          .warmup = {.factor = 0.001, .iters = 1000}});
  CHECK(step.lr(0) == doctest::Approx(1e-5));
  CHECK(step.lr(500) == doctest::Approx(0.01 * (0.001 * 0.5 + 0.5)));
  CHECK(step.lr(1000) == 0.01);
  CHECK(step.lr(60000) == doctest::Approx(0.001));
  CHECK(step.lr(85000) == doctest::Approx(0.0001));
  CHECK_THROWS_AS(step.lr(-1), std::out_of_range);
  CHECK_THROWS_AS(step.lr(90001), std::out_of_range);
  WarmupCosineLR cosine(
      {.base_lr = 1.0, .max_iter = 100, .final_lr = 0.1, .warmup = {.factor = 1.0, .iters = 0}});
  CHECK(cosine.lr(0) == 1.0);
  CHECK(cosine.lr(50) == doctest::Approx(0.55));
  CHECK(cosine.lr(100) == doctest::Approx(0.1));
  auto multistep_with = [](auto change) {
    MultiStepOptions options;
    change(options);
    return WarmupMultiStepLR(options);
  };
  CHECK_THROWS_AS(multistep_with([](MultiStepOptions& o) {
                    o.milestones = {800, 600};
                  }),
                  std::invalid_argument);
  CHECK_THROWS_AS(multistep_with([](MultiStepOptions& o) {
                    o.milestones = {0, 600};
                  }),
                  std::invalid_argument);
  CHECK_THROWS_AS(multistep_with([](MultiStepOptions& o) { o.base_lr = 0.0; }), std::invalid_argument);
  CHECK_THROWS_AS(multistep_with([](MultiStepOptions& o) { o.gamma = 0.0; }), std::invalid_argument);
  auto cosine_with = [](auto change) {
    CosineOptions options;
    change(options);
    return WarmupCosineLR(options);
  };
  CHECK_THROWS_AS(cosine_with([](CosineOptions& o) { o.max_iter = 0; }), std::invalid_argument);
  CHECK_THROWS_AS(cosine_with([](CosineOptions& o) { o.final_lr = -1.0; }), std::invalid_argument);
  CHECK_THROWS_AS(cosine_with([](CosineOptions& o) { o.warmup.iters = -5; }), std::invalid_argument);
}

TEST_CASE("optimizers and clipping reject bad arguments") {
  Tensor p = leaf(zeros({2, 3}, {DType::f64}));
  Tensor non_leaf = mul(p, 2.0);
  CHECK_THROWS_AS(Sgd({non_leaf}, {}), std::invalid_argument);
  CHECK_THROWS_AS(Sgd({zeros({2, 3}, {DType::f64}).transpose(0, 1)}, {}), std::invalid_argument);
  CHECK_THROWS_AS(Sgd({p, p}, {}), std::invalid_argument);
  CHECK_THROWS_AS(Sgd({Tensor()}, {}), std::invalid_argument);
  CHECK_THROWS_AS(Sgd({from_vector(std::vector<int64_t>{1, 2}, {2})}, {}), std::invalid_argument);
  CHECK_THROWS_AS(Sgd({p}, {.nesterov = true}), std::invalid_argument);
  CHECK_THROWS_AS(Sgd({p}, {.momentum = 0.9, .dampening = 0.1, .nesterov = true}), std::invalid_argument);
  CHECK_THROWS_AS(Sgd({p}, {.lr = -1.0}), std::invalid_argument);
  CHECK_THROWS_AS(AdamW({p}, {.beta1 = 1.0}), std::invalid_argument);
  CHECK_THROWS_AS(AdamW({p}, {.eps = -1.0}), std::invalid_argument);
  Sgd ok({p}, {});
  CHECK_THROWS_AS(ok.set_lr(std::nan("")), std::invalid_argument);
  CHECK_THROWS_AS(clip_grad_value({p}, -1.0), std::invalid_argument);
  CHECK_THROWS_AS(clip_grad_norm({p}, -1.0), std::invalid_argument);
  CHECK(clip_grad_norm({p}, 1.0) == 0.0);  // no gradients at all
}
