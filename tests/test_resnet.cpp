// ResNet against torchvision 0.14 (fixtures from tools/make_resnet_fixtures.py): logits, C3-C5 features,
// and the gradients of a scalar loss w.r.t. the input and every parameter, in f32 and f64.
#include <doctest/doctest.h>

#include <cmath>

#include "closed_form_weights.h"
#include "engine/autograd.h"
#include "engine/factory.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/reduce.h"
#include "fixture.h"
#include "layers/conv2d.h"
#include "models/resnet.h"

using namespace icd;

namespace {

using testing::closed_form;
using testing::summary;
using testing::summary_error;
using Metric = testing::SummaryMetric;

void check_parity(int depth, DType dtype, double tolerance) {
  const Metric metric = dtype == DType::f64 ? Metric::elementwise : Metric::vector;
  testing::Fixture fixture("resnet.json");
  testing::FixtureCase c = fixture["resnet" + std::to_string(depth)];
  Generator gen(0);
  ResNet net(ResNetConfig{.depth = depth}, gen);
  net.to(dtype);
  NamedTensors state;
  for (const auto& [name, t] : net.state_dict())
    state.emplace_back(name, name.ends_with("num_batches_tracked") ? t : closed_form(name, t.shape(), dtype));
  net.load_state_dict(state);
  net.eval();
  const int64_t size = c.params().at("size").get<int64_t>();
  Tensor x = closed_form("input", {1, 3, size, size}, dtype);
  x.set_requires_grad(true);
  ResNetOutput out = net.forward(x);
  Tensor logits_ref = c.tensor("logits");
  if (metric == Metric::elementwise) {
    double scale = 0;
    for (double v : logits_ref.to_vector<double>())
      scale = std::max(scale, std::abs(v));
    CHECK(testing::max_relative_error(out.logits, logits_ref, 1e-3 * scale) < tolerance);
  } else {
    std::vector<double> a = out.logits.to_vector<double>(), b = logits_ref.to_vector<double>();
    double diff = 0, norm = 0;
    for (std::size_t i = 0; i < a.size(); ++i)
      diff += (a[i] - b[i]) * (a[i] - b[i]), norm += b[i] * b[i];
    CHECK(std::sqrt(diff / norm) < tolerance);
  }
  CHECK(summary_error(summary(out.c3), c.tensor("c3"), metric) < tolerance);
  CHECK(summary_error(summary(out.c4), c.tensor("c4"), metric) < tolerance);
  CHECK(summary_error(summary(out.c5), c.tensor("c5"), metric) < tolerance);
  sum(mul(out.logits, closed_form("projection", out.logits.shape(), dtype))).backward();
  CHECK(summary_error(summary(x.grad()), c.tensor("grad_input"), metric) < tolerance);
  int checked = 0;
  for (const auto& [name, p] : net.named_parameters()) {
    INFO(name);
    CHECK(summary_error(summary(p.grad()), c.tensor("grad." + name), metric) < tolerance);
    ++checked;
  }
  CHECK(checked == (depth == 18 ? 62 : 161));
}

}  // namespace

TEST_CASE("ResNet-18 matches torchvision in f64 and f32") {
  check_parity(18, DType::f64, 1e-9);
  check_parity(18, DType::f32, 1e-4);
}

TEST_CASE("ResNet-50 matches torchvision in f64 and f32") {
  check_parity(50, DType::f64, 1e-9);
  check_parity(50, DType::f32, 1e-4);
}

TEST_CASE("ResNet-18/34/50/101 have torchvision's parameter counts") {
  // torchvision.models.resnetXX(): sum(p.numel() for p in model.parameters())
  const std::pair<int, int64_t> expected[] = {{18, 11689512}, {34, 21797672}, {50, 25557032}, {101, 44549160}};
  for (auto [depth, count] : expected) {
    Generator gen(0);
    ResNet net(ResNetConfig{.depth = depth}, gen);
    INFO("ResNet-" << depth);
    CHECK(net.parameter_count() == count);
  }
}

TEST_CASE("torchvision parameter names, stage channels and output strides") {
  Generator gen(1);
  ResNet r50(ResNetConfig{.depth = 50, .num_classes = 10}, gen);
  NamedTensors state = r50.state_dict();
  auto has = [&](const std::string& name) {
    for (const auto& [n, t] : state)
      if (n == name) return true;
    return false;
  };
  CHECK(has("conv1.weight"));
  CHECK(has("bn1.running_var"));
  CHECK(has("layer1.0.downsample.0.weight"));
  CHECK(has("layer1.0.downsample.1.num_batches_tracked"));
  CHECK(has("layer4.2.conv3.weight"));
  CHECK(has("fc.bias"));
  CHECK_FALSE(has("layer1.1.downsample.0.weight"));
  CHECK(r50.stage_channels() == std::vector<int64_t>{256, 512, 1024, 2048});
  ResNetOutput out = r50.forward(zeros({1, 3, 64, 96}));
  CHECK(out.c2.shape() == Shape{1, 256, 16, 24});
  CHECK(out.c3.shape() == Shape{1, 512, 8, 12});
  CHECK(out.c4.shape() == Shape{1, 1024, 4, 6});
  CHECK(out.c5.shape() == Shape{1, 2048, 2, 3});
  CHECK(out.logits.shape() == Shape{1, 10});
  CHECK_THROWS_AS(ResNet(ResNetConfig{.depth = 20}, gen), std::invalid_argument);
  CHECK_THROWS_AS(r50.forward(zeros({1, 1, 32, 32})), std::invalid_argument);
}

TEST_CASE("MSRA/Keras v1: stride on the first 1x1, conv biases, frozen norms, freeze_at, no classifier") {
  Generator gen(2);
  ResNet v1(ResNetConfig{.depth = 50,
                         .stride_on_3x3 = false,
                         .conv_bias = true,
                         .norm = NormKind::frozen_batch_norm,
                         .norm_eps = 1e-3,
                         .freeze_at = 2,
                         .num_classes = 0},
            gen);
  NamedTensors params = v1.named_parameters();
  bool conv_bias = false;
  for (const auto& [n, t] : params)
    conv_bias |= n == "layer2.0.conv1.bias";
  CHECK(conv_bias);
  // freeze_at 2: stem and layer1 frozen, layer2 onwards trainable
  for (const auto& [n, t] : params) {
    INFO(n);
    bool frozen = n.starts_with("conv1.") || n.starts_with("layer1.");
    CHECK(t.requires_grad() == !frozen);
  }
  ResNetOutput out = v1.forward(zeros({1, 3, 64, 64}));
  CHECK_FALSE(out.logits.defined());
  CHECK(out.c5.shape() == Shape{1, 2048, 2, 2});
  // Where the stride sits, read off the modules themselves.
  auto child = [](const Module& m, const std::string& name) -> const Module& {
    for (const auto& [n, c] : m.children())
      if (n == name) return *c;
    throw std::runtime_error("no child " + name);
  };
  auto stride_of = [&](const Module& net, const std::string& conv) {
    const Module& block = child(child(net, "layer2"), "0");
    return dynamic_cast<const Conv2d&>(child(block, conv)).config().options.stride_h;
  };
  CHECK(stride_of(v1, "conv1") == 2);
  CHECK(stride_of(v1, "conv2") == 1);
  ResNet v15(ResNetConfig{.depth = 50, .num_classes = 0}, gen);
  CHECK(stride_of(v15, "conv1") == 1);
  CHECK(stride_of(v15, "conv2") == 2);
  CHECK(v15.forward(zeros({1, 3, 64, 64})).c3.shape() == out.c3.shape());
}
