// FPN and RetinaNet head: names, shapes, init, and f64 gradient checks.
#include <doctest/doctest.h>

#include <cmath>

#include "engine/autograd.h"
#include "engine/factory.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/reduce.h"
#include "engine/ops/shape.h"
#include "gradcheck.h"
#include "models/fpn.h"
#include "models/retinanet_head.h"

using namespace icd;
using icd::testing::random_leaf;
using Inputs = std::vector<Tensor>;

namespace {
bool has(const Module& m, const std::string& name) {
  for (const auto& [n, t] : m.state_dict())
    if (n == name) return true;
  return false;
}

// Every output of every level in one flat tensor, so one randomly projected check covers them all.
Tensor concat_flat(const std::vector<Tensor>& outs) {
  std::vector<Tensor> flat;
  for (const Tensor& o : outs)
    flat.push_back(o.flatten());
  return cat(flat, 0);
}
}  // namespace

TEST_CASE("FPN: torchvision names, shapes at strides 8-128, P6 from C5 or P5") {
  Generator gen(1);
  Fpn fpn(FpnConfig{.in_channels = {8, 16, 32}, .channels = 6}, gen);
  CHECK(has(fpn, "inner_blocks.0.0.weight"));
  CHECK(has(fpn, "layer_blocks.2.0.bias"));
  CHECK(has(fpn, "extra_blocks.p6.weight"));
  CHECK(has(fpn, "extra_blocks.p7.bias"));
  Tensor p6w;
  for (const auto& [n, t] : fpn.state_dict())
    if (n == "extra_blocks.p6.weight") p6w = t;
  CHECK(p6w.shape() == Shape{6, 32, 3, 3});  // from C5
  Fpn tv(FpnConfig{.in_channels = {8, 16, 32}, .channels = 6, .p6_from_c5 = false}, gen);
  for (const auto& [n, t] : tv.state_dict())
    if (n == "extra_blocks.p6.weight") CHECK(t.shape() == Shape{6, 6, 3, 3});
  // c2_xavier init: zero biases
  for (const auto& [n, t] : fpn.state_dict())
    if (n.ends_with("bias")) CHECK(sum(abs(t)).item() == 0);

  std::vector<Tensor> outs =
      fpn.forward({zeros({1, 8, 16, 20}), zeros({1, 16, 8, 10}), zeros({1, 32, 4, 5})});
  REQUIRE(outs.size() == 5);
  CHECK(outs[0].shape() == Shape{1, 6, 16, 20});
  CHECK(outs[2].shape() == Shape{1, 6, 4, 5});
  CHECK(outs[3].shape() == Shape{1, 6, 2, 3});
  CHECK(outs[4].shape() == Shape{1, 6, 1, 2});
  CHECK_THROWS_AS(fpn.forward({zeros({1, 8, 4, 4})}), std::invalid_argument);
}

TEST_CASE("FPN: gradient check through the top-down path and P6/P7") {
  Generator gen(2);
  for (bool from_c5 : {true, false}) {
    Fpn fpn(FpnConfig{.in_channels = {2, 3, 4}, .channels = 2, .p6_from_c5 = from_c5}, gen);
    fpn.to(DType::f64);
    Tensor c3 = random_leaf({1, 2, 4, 4}, 3), c4 = random_leaf({1, 3, 2, 2}, 4),
           c5 = random_leaf({1, 4, 1, 1}, 5);
    Inputs in{c3, c4, c5};
    for (const Tensor& p : fpn.parameters())
      in.push_back(p);
    CHECK_GRADCHECK([&](const Inputs& x) { return concat_flat(fpn.forward({x[0], x[1], x[2]})); }, in);
  }
}

TEST_CASE("RetinaNet head: names, prior bias, shapes, flattening order") {
  Generator gen(3);
  RetinaNetHead head(
      RetinaNetHeadConfig{.in_channels = 8, .num_anchors = 9, .num_classes = 3, .num_convs = 2}, gen);
  CHECK(has(head, "classification_head.conv.0.0.weight"));
  CHECK(has(head, "classification_head.conv.1.0.bias"));
  CHECK(has(head, "classification_head.cls_logits.weight"));
  CHECK(has(head, "regression_head.bbox_reg.bias"));
  CHECK_FALSE(has(head, "classification_head.conv.2.0.weight"));
  for (const auto& [n, t] : head.state_dict()) {
    if (n == "classification_head.cls_logits.bias")
      for (float b : t.to_vector<float>())
        CHECK(b == doctest::Approx(-std::log(99.0)).epsilon(1e-6));
    if (n == "regression_head.bbox_reg.weight") {
      double rms = std::sqrt(mean(mul(t, t)).item());
      CHECK(rms == doctest::Approx(0.01).epsilon(0.15));
    }
  }
  HeadOutputs out = head.forward({zeros({2, 8, 4, 6}), zeros({2, 8, 2, 3})});
  CHECK(out.cls_logits[0].shape() == Shape{2, 27, 4, 6});
  CHECK(out.bbox_deltas[1].shape() == Shape{2, 36, 2, 3});
  // With zero input every logit is the prior bias: sigmoid = 0.01.
  CHECK(sigmoid(out.cls_logits[0]).to_vector<float>()[5] == doctest::Approx(0.01).epsilon(1e-5));

  // Flattening: channel a*K + k at (y, x) goes to row (y*W + x)*A + a, column k; levels concatenate.
  Tensor level0 = arange(0, 6 * 2 * 3, 1, {DType::f64}).reshape({1, 6, 2, 3});  // A = 2, K = 3
  Tensor level1 = full({1, 6, 1, 1}, -1.0, {DType::f64});
  Tensor flat = flatten_head_outputs({level0, level1}, 3);
  CHECK(flat.shape() == Shape{1, 2 * 3 * 2 + 2, 3});
  std::vector<double> v = flat.to_vector<double>();
  // row for y=1, x=2, a=1 -> (1*3+2)*2+1 = 11; channel a*K+k = 3+k at spatial index 5: value (3+k)*6 + 5
  CHECK(v[11 * 3 + 0] == 3 * 6 + 5);
  CHECK(v[11 * 3 + 2] == 5 * 6 + 5);
  CHECK(v[12 * 3] == -1);
  CHECK_THROWS_AS(flatten_head_outputs({zeros({1, 5, 2, 2})}, 3), std::invalid_argument);
}

TEST_CASE("RetinaNet head: gradient check, with and without GroupNorm") {
  Generator gen(4);
  RetinaNetHead head(
      RetinaNetHeadConfig{.in_channels = 3, .num_anchors = 2, .num_classes = 2, .num_convs = 2}, gen);
  head.to(DType::f64);
  // N(0, 0.01) weights make the towers' pre-activations tiny; scale the weights up so no ReLU input sits
  // near 0 within the finite-difference step. The prior bias (-4.6) is zeroed: a large constant offset in
  // every output only adds roundoff to the finite differences and does not change any gradient.
  {
    NoGradGuard no_grad;
    for (Tensor p : head.parameters())
      mul_(p, p.dim() == 4 ? 30.0 : 0.0);
  }
  Tensor f1 = random_leaf({1, 3, 3, 3}, 41), f2 = random_leaf({1, 3, 2, 2}, 42);
  // Every ReLU input must sit well away from 0, or a finite difference could straddle the kink.
  auto child = [](const Module& m, const std::string& name) -> Module& {
    for (const auto& [n, c] : m.children())
      if (n == name) return *c;
    throw std::runtime_error("no child " + name);
  };
  double nearest = INFINITY;
  for (const char* branch : {"classification_head", "regression_head"}) {
    auto& tower = dynamic_cast<Sequential&>(child(child(head, branch), "conv"));
    for (Tensor y : {f1, f2}) {
      for (std::size_t i = 0; i < tower.size(); ++i) {
        auto& block = dynamic_cast<Sequential&>(tower[i]);
        Tensor pre = block[0].forward(y);
        for (double v : pre.to_vector<double>())
          nearest = std::min(nearest, std::abs(v));
        y = block.forward(y);
      }
    }
  }
  REQUIRE(nearest > 1e-3);
  Inputs in{f1, f2};
  for (const Tensor& p : head.parameters())
    in.push_back(p);
  auto f = [&](const Inputs& x) {
    HeadOutputs o = head.forward({x[0], x[1]});
    return cat({concat_flat(o.cls_logits), concat_flat(o.bbox_deltas)}, 0);
  };
  CHECK_GRADCHECK(f, in);

  RetinaNetHead gn(
      RetinaNetHeadConfig{
          .in_channels = 32, .num_anchors = 1, .num_classes = 2, .num_convs = 1, .group_norm = true},
      gen);
  CHECK(has(gn, "classification_head.conv.0.1.weight"));  // GroupNorm sits at index 1 of each block
  gn.to(DType::f64);
  Tensor g = random_leaf({1, 32, 2, 2}, 7);
  CHECK_GRADCHECK(
      [&](const Inputs& x) {
        HeadOutputs o = gn.forward({x[0]});
        return cat({concat_flat(o.cls_logits), concat_flat(o.bbox_deltas)}, 0);
      },
      {g});
}
