// The whole RetinaNet against torchvision 0.14 (tests/fixtures/retinanet_model.json from
// tools/make_retinanet_model_fixtures.py): torchvision_retinanet_config(18, 5) with a 64-channel pyramid,
// the same closed-form weights on both sides (tests/closed_form_weights.h), two padded 128 x 256 images
// with ground truth. Checked: the state-dict names and shapes and which parameters are frozen, the
// anchors, the head outputs (whole and per level), the focal and box losses and the number of foreground
// anchors, the gradient of their sum w.r.t. every trainable parameter, and the postprocessed detections
// (labels exactly and in order, boxes and scores) after clipping and rescaling to the original sizes.
//
// Tolerances: f64 1e-9, f32 1e-4 (measured on this machine: at most 1e-10 in f64, at most 8e-6 in f32).
// Large tensors are compared through summaries; f32 gradients in the vector form (closed_form_weights.h).
// The reference is torch's f64 run: torch's own f32 run is further off than ours on the P6/P7 gradients
// (~1e-3), because its focal loss computes 1 - p_t by cancellation for background anchors at p ~ 1e-5.
#include <doctest/doctest.h>

#include <map>
#include <set>
#include <string>
#include <vector>

#include "closed_form_weights.h"
#include "engine/autograd.h"
#include "engine/ops/elementwise.h"
#include "fixture.h"
#include "models/retinanet.h"

using namespace icd;
using testing::closed_form;
using testing::summary;
using testing::summary_error;
using testing::SummaryMetric;

namespace {

// The tool's model_weight: the closed form, the head's output convolutions rescaled, and the per-channel
// bias nudges that keep every ReLU input at least 1e-4 standard deviations away from its kink (see
// nudge_kinks in the tool: a mask that f32 rounding flips would move the gradients of every earlier
// layer by ~1e-3 in any implementation).
Tensor model_weight(const std::string& name, const Shape& shape, DType dtype, const nlohmann::json& params) {
  Tensor value = closed_form(name, shape, DType::f64);
  if (name.ends_with("cls_logits.weight"))
    value = mul(value, params.at("cls_logits_weight_scale").get<double>());
  else if (name.ends_with("bbox_reg.weight"))
    value = mul(value, params.at("bbox_reg_weight_scale").get<double>());
  else if (name.ends_with("cls_logits.bias"))
    value = add(value, params.at("cls_logits_bias_shift").get<double>());
  std::vector<double> values = value.to_vector<double>();
  for (const auto& nudge : params.at("kink_nudges"))
    if (nudge.at(0).get<std::string>() == name)
      values.at(nudge.at(1).get<std::size_t>()) += nudge.at(2).get<double>();
  return from_vector(values, shape, {dtype});
}

void check_parity(DType dtype, double tolerance) {
  const SummaryMetric metric = dtype == DType::f64 ? SummaryMetric::elementwise : SummaryMetric::vector;
  const testing::FixtureCase c = testing::Fixture("retinanet_model.json")["retinanet18"];
  const nlohmann::json& p = c.params();

  RetinaNetConfig config = torchvision_retinanet_config(18, p.at("num_classes").get<int64_t>());
  config.fpn_channels = p.at("fpn_channels").get<int64_t>();
  Generator gen(0);
  RetinaNet model(config, gen);
  model.to(dtype);

  // torchvision's state dict, name for name and shape for shape (the order differs: ours lists each
  // module's parameters before its buffers).
  NamedTensors state = model.state_dict();
  std::map<std::string, Shape> ours, expected;
  for (const auto& [name, t] : state)
    ours[name] = t.shape();
  for (const auto& entry : p.at("state_dict"))
    expected[entry.at(0).get<std::string>()] = entry.at(1).get<Shape>();
  CHECK(ours.size() == state.size());
  CHECK(ours == expected);
  for (auto& [name, t] : state)
    t = model_weight(name, t.shape(), dtype, p);
  model.load_state_dict(state);
  model.train();

  // The frozen stem and layer1 and everything else trainable, as torchvision's trainable_layers = 3.
  const auto trainable_names = p.at("trainable").get<std::vector<std::string>>();
  const std::set<std::string> trainable(trainable_names.begin(), trainable_names.end());
  int64_t trainable_count = 0;
  for (const auto& [name, t] : model.named_parameters()) {
    INFO(name);
    CHECK(t.requires_grad() == static_cast<bool>(trainable.count(name)));
    trainable_count += t.requires_grad();
  }
  CHECK(trainable_count == static_cast<int64_t>(trainable.size()));

  const int64_t batch = p.at("batch").get<int64_t>();
  const Tensor images =
      closed_form("input", {batch, 3, p.at("height").get<int64_t>(), p.at("width").get<int64_t>()}, dtype);
  const RetinaNetOutputs out = model.forward(images);

  const auto num_per_level = p.at("num_per_level").get<std::vector<int64_t>>();
  CHECK(out.anchors.num_per_level == num_per_level);
  CHECK(summary_error(summary(out.anchors.boxes), c.tensor("anchors"), SummaryMetric::elementwise) <
        tolerance);
  CHECK(summary_error(summary(out.cls_logits), c.tensor("cls_logits"), metric) < tolerance);
  CHECK(summary_error(summary(out.bbox_deltas), c.tensor("bbox_deltas"), metric) < tolerance);
  int64_t start = 0;
  for (std::size_t level = 0; level < num_per_level.size(); ++level) {
    INFO("level " << level);
    const int64_t n = num_per_level[level];
    std::string suffix = ".";  // (appending, not "." + ...: GCC 12 warns wrongly about the latter)
    suffix += std::to_string(level);
    CHECK(summary_error(summary(out.cls_logits.narrow(1, start, n)), c.tensor("cls_logits" + suffix),
                        metric) < tolerance);
    CHECK(summary_error(summary(out.bbox_deltas.narrow(1, start, n)), c.tensor("bbox_deltas" + suffix),
                        metric) < tolerance);
    start += n;
  }

  std::vector<TargetBoxes> targets;
  for (int64_t i = 0; i < batch; ++i)
    targets.push_back({c.tensor("target_boxes_" + std::to_string(i), dtype),
                       c.tensor("target_labels_" + std::to_string(i), DType::i64)});
  const RetinaNetLosses losses = model.losses(out, targets);
  CHECK(losses.num_foreground == p.at("num_foreground").get<int64_t>());
  CHECK(testing::max_relative_error(losses.classification, c.tensor("classification")) < tolerance);
  CHECK(testing::max_relative_error(losses.box_regression, c.tensor("bbox_regression")) < tolerance);

  add(losses.classification, losses.box_regression).backward();
  int64_t checked = 0;
  for (const auto& [name, t] : model.named_parameters()) {
    INFO(name);
    if (!t.requires_grad()) {
      CHECK_FALSE(t.grad().defined());
      continue;
    }
    REQUIRE(t.grad().defined());
    CHECK(summary_error(summary(t.grad()), c.tensor("grad." + name), metric) < tolerance);
    ++checked;
  }
  CHECK(checked == static_cast<int64_t>(trainable.size()));

  std::vector<ImageSizes> sizes;
  for (const auto& s : p.at("sizes"))
    sizes.push_back(
        {s.at(0).get<int64_t>(), s.at(1).get<int64_t>(), s.at(2).get<int64_t>(), s.at(3).get<int64_t>()});
  NoGradGuard no_grad;
  const std::vector<Detections> detections = model.detect(out, sizes);
  REQUIRE(detections.size() == sizes.size());
  for (std::size_t i = 0; i < detections.size(); ++i) {
    INFO("image " << i);
    std::string suffix = "_";
    suffix += std::to_string(i);
    CHECK(detections[i].labels.to_vector<int64_t>() ==
          c.tensor("labels" + suffix, DType::i64).to_vector<int64_t>());
    REQUIRE(detections[i].boxes.shape() == c.tensor("boxes" + suffix).shape());
    // Boxes relative to max(|x|, 1 pixel): a coordinate near 0 carries the absolute error of its neighbours.
    CHECK(testing::max_relative_error(detections[i].boxes, c.tensor("boxes" + suffix), 1.0) < tolerance);
    CHECK(testing::max_relative_error(detections[i].scores, c.tensor("scores" + suffix)) < tolerance);
  }
}

}  // namespace

TEST_CASE("RetinaNet (ResNet-18 FPN, torchvision settings) matches torchvision in f64") {
  check_parity(DType::f64, 1e-9);
}

TEST_CASE("RetinaNet (ResNet-18 FPN, torchvision settings) matches torchvision in f32") {
  check_parity(DType::f32, 1e-4);
}
