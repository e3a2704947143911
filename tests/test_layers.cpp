// Layers: parameter names and shapes, initialisers, train/eval behaviour and f64 gradient checks of
// each layer with respect to its input and every parameter.
#include <doctest/doctest.h>

#include <cmath>

#include "engine/autograd.h"
#include "engine/factory.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/reduce.h"
#include "fixture.h"
#include "gradcheck.h"
#include "layers/attention.h"
#include "layers/batch_norm.h"
#include "layers/conv2d.h"
#include "layers/conv_norm.h"
#include "layers/init.h"
#include "layers/linear.h"
#include "layers/norm.h"
#include "layers/pooling.h"
#include "layers/sequential.h"

using namespace icd;
using icd::testing::random_leaf;
using Inputs = std::vector<Tensor>;

namespace {

// The input followed by every trainable parameter of the module: what a layer gradient check perturbs.
Inputs input_and_parameters(const Tensor& x, Module& m) {
  Inputs in{x};
  for (const Tensor& p : m.trainable_parameters())
    in.push_back(p);
  return in;
}

double max_abs_diff(const Tensor& a, const Tensor& b) {
  std::vector<double> x = a.to_vector<double>(), y = b.to_vector<double>();
  REQUIRE(x.size() == y.size());
  double worst = 0;
  for (std::size_t i = 0; i < x.size(); ++i)
    worst = std::max(worst, std::abs(x[i] - y[i]));
  return worst;
}

std::vector<std::string> names(const NamedTensors& list) {
  std::vector<std::string> out;
  for (const auto& [n, t] : list)
    out.push_back(n);
  return out;
}

}  // namespace

TEST_CASE("initialisers: fans, bounds and moments") {
  Generator gen(1);
  Tensor w = empty({64, 32, 3, 3});
  CHECK(init::fan_in(w) == 288);
  CHECK(init::fan_out(w) == 576);
  init::kaiming_uniform_(w, gen, 1.0);  // c2_xavier: bound sqrt(3 / fan_in)
  double bound = std::sqrt(3.0 / 288);
  double max_abs = 0;
  for (float v : w.to_vector<float>())
    max_abs = std::max(max_abs, std::abs(static_cast<double>(v)));
  CHECK(max_abs <= bound);
  CHECK(max_abs > 0.95 * bound);
  init::kaiming_normal_(w, gen, 0.0, init::FanMode::fan_out);
  double var = mean(mul(w, w)).item();
  CHECK(var == doctest::Approx(2.0 / 576).epsilon(0.05));
  Tensor n = empty({100, 100});
  init::normal_(n, gen, 0.0, 0.01);
  CHECK(std::sqrt(mean(mul(n, n)).item()) == doctest::Approx(0.01).epsilon(0.03));
  Tensor x = empty({50, 40});
  init::xavier_uniform_(x, gen);
  double xb = std::sqrt(6.0 / 90);
  for (float v : x.to_vector<float>())
    CHECK(std::abs(v) <= xb);
  Tensor b = ones({3});
  Tensor c = empty({4, 2, 1, 1});
  init::c2_xavier_fill_(c, b, gen);
  CHECK(b.to_vector<float>() == std::vector<float>{0, 0, 0});
  CHECK(init::prior_probability_bias(0.01) == doctest::Approx(-std::log(99.0)).epsilon(1e-15));
  CHECK_THROWS_AS(init::prior_probability_bias(0.0), std::invalid_argument);
  Tensor v = empty({3});
  CHECK_THROWS_AS(init::fan_in(v), std::invalid_argument);
}

TEST_CASE("Conv2d: names, shapes, and gradients for input, weight and bias") {
  Generator gen(2);
  Conv2d conv(Conv2dConfig{.in_channels = 4,
                           .out_channels = 6,
                           .kernel_h = 3,
                           .kernel_w = 3,
                           .options = Conv2dOptions::square(2, 1, 1, 2)},
              gen);
  CHECK(names(conv.named_parameters()) == std::vector<std::string>{"weight", "bias"});
  CHECK(conv.weight().shape() == Shape{6, 2, 3, 3});
  CHECK(conv(zeros({1, 4, 7, 7})).shape() == Shape{1, 6, 4, 4});
  Conv2d no_bias(3, 2, 1, gen, 1, 0, /*bias=*/false);
  CHECK_FALSE(no_bias.bias().defined());
  CHECK(no_bias.named_parameters().size() == 1);
  CHECK_THROWS_AS(Conv2d(3, 4, 3, gen, 1, 1, true, 2), std::invalid_argument);

  conv.to(DType::f64);
  Tensor x = random_leaf({2, 4, 5, 5}, 3);
  CHECK_GRADCHECK([&](const Inputs& in) { return conv(in[0]); }, input_and_parameters(x, conv));
}

TEST_CASE("BatchNorm2d: training updates running stats, eval uses them; gradients in both modes") {
  BatchNorm2d bn(3);
  CHECK(names(bn.state_dict()) ==
        std::vector<std::string>{"weight", "bias", "running_mean", "running_var", "num_batches_tracked"});
  bn.to(DType::f64);
  Tensor x = random_leaf({4, 3, 2, 2}, 4, 1.0, 3.0);
  Tensor y = bn(x);
  // batch statistics: each output channel has mean 0
  Tensor channel_means = mean(y, {0, 2, 3});
  for (double m : channel_means.to_vector<double>())
    CHECK(std::abs(m) < 1e-12);
  double running = bn.state_dict()[2].second.to_vector<double>()[0];
  CHECK(running > 0.1);  // moved 10% toward a batch mean near 2
  CHECK(running < 0.3);
  CHECK(bn.state_dict()[4].second.item() == 1);
  CHECK_GRADCHECK([&](const Inputs& in) { return bn(in[0]); }, input_and_parameters(x, bn));
  bn.eval();
  Tensor before = bn.state_dict()[2].second.clone();
  CHECK_GRADCHECK([&](const Inputs& in) { return bn(in[0]); }, input_and_parameters(x, bn));
  CHECK(bn.state_dict()[2].second.to_vector<double>() == before.to_vector<double>());
  CHECK_THROWS_AS(bn(zeros({1, 4, 2, 2}, {DType::f64})), std::invalid_argument);
}

TEST_CASE("FrozenBatchNorm2d: a fixed affine map with no trainable parameters") {
  FrozenBatchNorm2d bn(2, 1e-3);
  CHECK(bn.named_parameters().empty());
  CHECK(names(bn.named_buffers()) ==
        std::vector<std::string>{"weight", "bias", "running_mean", "running_var"});
  bn.to(DType::f64);
  NamedTensors state = bn.state_dict();
  {
    NoGradGuard no_grad;
    copy_(state[0].second, from_vector(std::vector<double>{2.0, 0.5}, {2}, {DType::f64}));
    copy_(state[1].second, from_vector(std::vector<double>{1.0, -1.0}, {2}, {DType::f64}));
    copy_(state[2].second, from_vector(std::vector<double>{3.0, 0.0}, {2}, {DType::f64}));
    copy_(state[3].second, from_vector(std::vector<double>{4.0, 0.25}, {2}, {DType::f64}));
  }
  Tensor x = from_vector(std::vector<double>{5.0, 1.0}, {1, 2, 1, 1}, {DType::f64});
  std::vector<double> y = bn(x).to_vector<double>();
  CHECK(y[0] == doctest::Approx(2.0 * (5.0 - 3.0) / std::sqrt(4.001) + 1.0).epsilon(1e-14));
  CHECK(y[1] == doctest::Approx(0.5 * 1.0 / std::sqrt(0.251) - 1.0).epsilon(1e-14));
  Tensor xl = random_leaf({2, 2, 3, 3}, 5);
  CHECK_GRADCHECK([&](const Inputs& in) { return bn(in[0]); }, {xl});
}

TEST_CASE("conv_then_norm: folded into the convolution when the norm is fixed, same values and gradients") {
  Generator gen(11);
  // Running statistics and affine parameters away from the identity, so that folding them is visible.
  auto randomise_norm = [&](Module& norm) {
    NoGradGuard no_grad;
    for (auto& [name, t] : norm.state_dict()) {
      if (name == "num_batches_tracked") continue;
      const bool positive = name == "running_var" || name == "weight";
      Tensor values = positive ? add(mul(rand(t.shape(), gen, {DType::f64}), 1.5), 0.5)
                               : randn(t.shape(), gen, {DType::f64});
      copy_(t, values);
    }
  };
  for (bool conv_bias : {false, true}) {
    INFO("conv bias " << conv_bias);
    Conv2d conv(3, 4, 3, gen, 1, 1, conv_bias);  // 108 weights for 288 outputs: folding pays
    conv.to(DType::f64);
    BatchNorm2d batch_norm(4);
    FrozenBatchNorm2d frozen(4, 1e-3);
    batch_norm.to(DType::f64);
    frozen.to(DType::f64);
    randomise_norm(batch_norm);
    randomise_norm(frozen);
    batch_norm.eval();
    Tensor x = random_leaf({2, 3, 6, 6}, 12);
    Tensor small_x = random_leaf({1, 3, 2, 2}, 13);  // 16 outputs: fewer than the weights, not folded
    for (UnaryModule* norm : {static_cast<UnaryModule*>(&batch_norm), static_cast<UnaryModule*>(&frozen)}) {
      REQUIRE(fixed_channel_affine(*norm).has_value());
      Tensor folded = conv_then_norm(conv, *norm, x), separate = (*norm)(conv(x));
      CHECK(folded.impl()->grad_fn->name == "conv2d");  // one convolution, nothing after it
      CHECK(max_abs_diff(folded, separate) < 1e-12);
      Tensor small = conv_then_norm(conv, *norm, small_x);
      CHECK(small.impl()->grad_fn->name != "conv2d");
      CHECK(max_abs_diff(small, (*norm)(conv(small_x))) == 0.0);
      // Gradients reach x, the conv's weight and bias and the BatchNorm's weight and bias through the fold.
      Inputs in = input_and_parameters(x, conv);
      for (const Tensor& p : norm->trainable_parameters())
        in.push_back(p);
      CHECK_GRADCHECK([&](const Inputs& inputs) { return conv_then_norm(conv, *norm, inputs[0]); }, in);
    }
    // In training mode the batch statistics are only known after the convolution: nothing is folded.
    batch_norm.train();
    CHECK_FALSE(fixed_channel_affine(batch_norm).has_value());
    Tensor a = conv_then_norm(conv, batch_norm, x);
    Tensor b = batch_norm(conv(x));
    CHECK(max_abs_diff(a, b) == 0.0);
  }
}

TEST_CASE("GroupNorm and LayerNorm layers: gradients with and without affine parameters") {
  GroupNorm gn(2, 4);
  gn.to(DType::f64);
  Tensor x = random_leaf({2, 4, 3, 3}, 6);
  CHECK_GRADCHECK([&](const Inputs& in) { return gn(in[0]); }, input_and_parameters(x, gn));
  CHECK_THROWS_AS(GroupNorm(3, 4), std::invalid_argument);

  LayerNorm ln({5});
  ln.to(DType::f64);
  Tensor t = random_leaf({3, 5}, 7);
  CHECK_GRADCHECK([&](const Inputs& in) { return ln(in[0]); }, input_and_parameters(t, ln));
  LayerNorm plain({5}, 1e-5, /*elementwise_affine=*/false);
  CHECK(plain.named_parameters().empty());
  CHECK_GRADCHECK([&](const Inputs& in) { return plain(in[0]); }, {t});
}

TEST_CASE("Sequential chains children named 0, 1, ... and ReLU") {
  Generator gen(8);
  Sequential seq;
  seq.push_back(std::make_shared<Conv2d>(2, 3, 3, gen, 1, 1));
  seq.push_back(std::make_shared<ReLU>());
  seq.push_back(std::make_shared<Conv2d>(3, 2, 1, gen));
  CHECK(names(seq.named_parameters()) ==
        std::vector<std::string>{"0.weight", "0.bias", "2.weight", "2.bias"});
  CHECK(seq.size() == 3);
  seq.to(DType::f64);
  Tensor x = random_leaf({1, 2, 4, 4}, 9);
  // A ReLU between convolutions: check that no pre-activation lies near the kink.
  Tensor pre = seq[0](x);
  double nearest = INFINITY;
  for (double v : pre.to_vector<double>())
    nearest = std::min(nearest, std::abs(v));
  REQUIRE(nearest > 1e-4);
  CHECK_GRADCHECK([&](const Inputs& in) { return seq(in[0]); }, input_and_parameters(x, seq));
}

TEST_CASE("Linear: torch layout, batched inputs, gradients") {
  Generator gen(10);
  Linear fc(4, 3, gen);
  CHECK(names(fc.named_parameters()) == std::vector<std::string>{"weight", "bias"});
  CHECK(fc.weight().shape() == Shape{3, 4});
  CHECK(fc(zeros({2, 5, 4})).shape() == Shape{2, 5, 3});
  CHECK_FALSE(Linear(4, 3, gen, false).bias().defined());
  CHECK_THROWS_AS(Linear(0, 3, gen), std::invalid_argument);
  fc.to(DType::f64);
  Tensor x = random_leaf({2, 3, 4}, 11);
  CHECK_GRADCHECK([&](const Inputs& in) { return fc(in[0]); }, input_and_parameters(x, fc));
}

TEST_CASE("MaxPool2d and AdaptiveAvgPool2d layers") {
  MaxPool2d pool({.kernel = 3, .stride = 2, .padding = 1});
  CHECK(pool(zeros({1, 2, 8, 8})).shape() == Shape{1, 2, 4, 4});
  AdaptiveAvgPool2d gap(1, 1);
  Tensor x = random_leaf({2, 3, 4, 4}, 12);
  CHECK(gap(x).shape() == Shape{2, 3, 1, 1});
  CHECK_GRADCHECK([&](const Inputs& in) { return gap(in[0]); }, {x});
  CHECK_GRADCHECK([&](const Inputs& in) { return pool(in[0]); }, {x});  // distinct random values: no ties
}

namespace {

// Loads a torch MultiheadAttention case into our layer (f64) and returns the inputs.
struct MhaCase {
  Tensor query, key, value, mask, projection;
};

// Relative error with an absolute floor at 1e-6 of the expected tensor's largest magnitude, so that an
// element that is exactly 0 in torch (e.g. the key bias gradient, zero because softmax ignores a shift)
// and 1e-16 here does not count as a relative error of 1e-10.
double parity_error(const Tensor& actual, const Tensor& expected) {
  double scale = 0;
  for (double v : expected.to_vector<double>())
    scale = std::max(scale, std::abs(v));
  return testing::max_relative_error(actual, expected, 1e-6 * scale + 1e-300);
}

MhaCase load_mha(MultiheadAttention& mha, const testing::FixtureCase& c) {
  NamedTensors state;
  for (const auto& [name, t] : mha.state_dict())
    state.emplace_back(name, c.tensor(name));
  mha.load_state_dict(state);
  MhaCase m{c.tensor("query"), c.tensor("key"), c.tensor("value"), c.tensor("mask"), c.tensor("projection")};
  for (Tensor* t : {&m.query, &m.key, &m.value})
    t->set_requires_grad(true);
  return m;
}

}  // namespace

TEST_CASE("MultiheadAttention matches torch: output, attention weights, and every gradient") {
  testing::Fixture fixture("layers.json");
  for (const std::string name : {"mha_masked", "mha_plain"}) {
    INFO(name);
    testing::FixtureCase c = fixture[name];
    Generator gen(0);
    MultiheadAttention mha(c.params().at("embed_dim").get<int64_t>(),
                           c.params().at("num_heads").get<int64_t>(), gen);
    mha.to(DType::f64);
    MhaCase m = load_mha(mha, c);
    bool masked = c.params().at("masked").get<bool>();
    AttentionOutput out = mha.forward(m.query, m.key, m.value, masked ? m.mask : Tensor());
    CHECK(parity_error(out.output, c.tensor("output")) < 1e-10);
    Tensor averaged = mean(softmax(out.logits, -1), {1});  // torch averages the weights over heads
    CHECK(parity_error(averaged, c.tensor("weights")) < 1e-10);
    sum(mul(out.output, m.projection)).backward();
    CHECK(parity_error(m.query.grad(), c.tensor("grad_query")) < 1e-10);
    CHECK(parity_error(m.key.grad(), c.tensor("grad_key")) < 1e-10);
    CHECK(parity_error(m.value.grad(), c.tensor("grad_value")) < 1e-10);
    for (const auto& [pname, p] : mha.named_parameters())
      CHECK(parity_error(p.grad(), c.tensor("grad_" + pname)) < 1e-10);
    if (masked) {  // padded keys: -inf logits, zero attention
      std::vector<double> logits = out.logits.to_vector<double>();
      const int64_t S = m.key.size(0);
      CHECK(std::isinf(logits[S - 1]));
      CHECK(logits[S - 1] < 0);
      CHECK(std::isfinite(logits[0]));
    }
    CHECK(out.value.shape() ==
          Shape{m.value.size(0), m.value.size(1), mha.num_heads(), mha.embed_dim() / mha.num_heads()});
  }
}

TEST_CASE("MultiheadAttention: gradient check with a padding mask; the value projection alone") {
  Generator gen(13);
  MultiheadAttention mha(4, 2, gen);
  mha.to(DType::f64);
  Tensor q = random_leaf({2, 2, 4}, 14), kv = random_leaf({3, 2, 4}, 15);
  Tensor mask = from_vector(std::vector<double>{0, 0, 1, 0, 0, 0}, {2, 3}, {DType::f64});
  Inputs in = input_and_parameters(q, mha);
  in.push_back(kv);
  CHECK_GRADCHECK(
      [&](const Inputs& x) {
        AttentionOutput o = mha.forward(x[0], x.back(), x.back(), mask);
        return add(o.output, sum(mul(o.value, o.value)));
      },
      in);
  Tensor v = mha.project_value(kv);
  CHECK(v.shape() == Shape{3, 2, 2, 2});
  CHECK_THROWS_AS(MultiheadAttention(5, 2, gen), std::invalid_argument);
  CHECK_THROWS_AS(mha.forward(q, kv, kv, zeros({2, 2}, {DType::f64})), std::invalid_argument);
}
