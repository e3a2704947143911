#include "models/retinanet.h"

#include <stdexcept>

namespace icd {

RetinaNetConfig torchvision_retinanet_config(int depth, int64_t num_classes) {
  RetinaNetConfig c;
  c.num_classes = num_classes;
  c.backbone = ResNetConfig{.depth = depth,
                            .stride_on_3x3 = true,
                            .norm = NormKind::frozen_batch_norm,
                            .freeze_at = 2,
                            .num_classes = 0};
  c.p6_from_c5 = false;
  c.anchors = torchvision_anchor_config();
  c.loss.normalization = LossNormalization::per_image;
  c.postprocess = torchvision_postprocess_config();
  return c;
}

RetinaNet::RetinaNet(const RetinaNetConfig& config, Generator& gen)
    : config_(config), anchor_generator_(config.anchors), loss_(config.loss) {
  if (config.num_classes <= 0) throw std::invalid_argument("RetinaNet: num_classes must be positive");
  if (config.backbone.num_classes != 0)
    throw std::invalid_argument("RetinaNet: the backbone must have no classifier (backbone.num_classes = 0)");
  auto backbone = register_module("backbone", std::make_shared<ModuleDict>());
  body_ = backbone->add("body", std::make_shared<ResNet>(config.backbone, gen));
  std::vector<int64_t> channels = body_->stage_channels();
  fpn_ = backbone->add("fpn",
                       std::make_shared<Fpn>(FpnConfig{.in_channels = {channels[1], channels[2], channels[3]},
                                                       .channels = config.fpn_channels,
                                                       .p6_from_c5 = config.p6_from_c5},
                                             gen));
  head_ = register_module("head",
                          std::make_shared<RetinaNetHead>(
                              RetinaNetHeadConfig{.in_channels = config.fpn_channels,
                                                  .num_anchors = anchor_generator_.num_anchors_per_location(),
                                                  .num_classes = config.num_classes,
                                                  .num_convs = config.head_convs,
                                                  .group_norm = config.head_group_norm,
                                                  .prior_prob = config.prior_prob},
                              gen));
}

void RetinaNet::train(bool on) {
  Module::train(on);
  body_->train(on);  // ResNet keeps its frozen stages in eval mode
}

std::vector<Tensor> RetinaNet::features(const Tensor& images) {
  if (images.dim() != 4 || images.size(2) % 32 || images.size(3) % 32)
    throw std::invalid_argument("RetinaNet: images must be [N, 3, H, W] with H and W multiples of 32, got " +
                                shape_str(images.shape()));
  ResNetOutput c = body_->forward(images);
  return fpn_->forward({c.c3, c.c4, c.c5});
}

RetinaNetOutputs RetinaNet::forward(const Tensor& images) {
  RetinaNetOutputs out;
  out.features = features(images);
  HeadOutputs head = head_->forward(out.features);
  out.cls_logits = flatten_head_outputs(head.cls_logits, config_.num_classes);
  out.bbox_deltas = flatten_head_outputs(head.bbox_deltas, 4);
  out.anchors = anchor_generator_.generate(out.features);
  return out;
}

RetinaNetLosses RetinaNet::losses(const RetinaNetOutputs& outputs, const std::vector<TargetBoxes>& targets) {
  return loss_(outputs.cls_logits, outputs.bbox_deltas, outputs.anchors.boxes, targets);
}

std::vector<Detections> RetinaNet::detect(const RetinaNetOutputs& outputs,
                                          const std::vector<ImageSizes>& sizes) const {
  return postprocess_detections(outputs.cls_logits, outputs.bbox_deltas, outputs.anchors, sizes,
                                config_.postprocess);
}

}  // namespace icd
