#include "models/retinanet_head.h"

#include <stdexcept>

#include "engine/ops/shape.h"
#include "layers/conv2d.h"
#include "layers/init.h"
#include "layers/norm.h"

namespace icd {
namespace {

std::shared_ptr<Conv2d> head_conv(int64_t in, int64_t out, Generator& gen, double bias) {
  auto conv = std::make_shared<Conv2d>(in, out, 3, gen, 1, 1);
  init::normal_(conv->weight(), gen, 0.0, 0.01);
  init::constant_(conv->bias(), bias);
  return conv;
}

std::shared_ptr<Sequential> tower(const RetinaNetHeadConfig& config, Generator& gen) {
  auto convs = std::make_shared<Sequential>();
  for (int64_t i = 0; i < config.num_convs; ++i) {
    auto block = std::make_shared<Sequential>();  // torchvision's Conv2dNormActivation: conv, [norm], ReLU
    block->push_back(head_conv(config.in_channels, config.in_channels, gen, 0.0));
    if (config.group_norm) block->push_back(std::make_shared<GroupNorm>(32, config.in_channels));
    block->push_back(std::make_shared<ReLU>());
    convs->push_back(block);
  }
  return convs;
}

}  // namespace

RetinaNetHead::RetinaNetHead(const RetinaNetHeadConfig& config, Generator& gen) : config_(config) {
  auto classification = register_module("classification_head", std::make_shared<ModuleDict>());
  cls_tower_ = classification->add("conv", tower(config, gen));
  cls_logits_ =
      classification->add("cls_logits", head_conv(config.in_channels, config.num_anchors * config.num_classes,
                                                  gen, init::prior_probability_bias(config.prior_prob)));
  auto regression = register_module("regression_head", std::make_shared<ModuleDict>());
  box_tower_ = regression->add("conv", tower(config, gen));
  bbox_reg_ = regression->add("bbox_reg", head_conv(config.in_channels, config.num_anchors * 4, gen, 0.0));
}

HeadOutputs RetinaNetHead::forward(const std::vector<Tensor>& features) {
  HeadOutputs out;
  for (const Tensor& f : features) {
    out.cls_logits.push_back(cls_logits_->forward(cls_tower_->forward(f)));
    out.bbox_deltas.push_back(bbox_reg_->forward(box_tower_->forward(f)));
  }
  return out;
}

Tensor flatten_head_outputs(const std::vector<Tensor>& per_level, int64_t channels_per_anchor) {
  std::vector<Tensor> flat;
  for (const Tensor& t : per_level) {
    if (t.dim() != 4 || t.size(1) % channels_per_anchor)
      throw std::invalid_argument("flatten_head_outputs: expected [N, A*" +
                                  std::to_string(channels_per_anchor) + ", H, W], got " +
                                  shape_str(t.shape()));
    const int64_t n = t.size(0), a = t.size(1) / channels_per_anchor, h = t.size(2), w = t.size(3);
    flat.push_back(t.reshape({n, a, channels_per_anchor, h, w})
                       .permute({0, 3, 4, 1, 2})
                       .reshape({n, h * w * a, channels_per_anchor}));
  }
  return cat(flat, 1);
}

}  // namespace icd
