// RetinaNet (Lin et al., "Focal Loss for Dense Object Detection", 2017): a ResNet backbone, an FPN
// (P3-P7), one head shared by all levels predicting K class logits and 4 box deltas for each of A anchors
// at every position, the focal loss for training and NMS for inference.
//
//   images [N,3,H,W] -> ResNet -> C3,C4,C5 -> FPN -> P3..P7 -> head -> logits [N,R,K], deltas [N,R,4]
//   training:  anchors + ground truth -> matcher -> focal loss + L1 box loss   (models/retinanet_loss.h)
//   inference: sigmoid, top-k, decode, class-aware NMS (models/retinanet_postprocess.h)
//
// Parameter names follow torchvision's retinanet_resnet50_fpn: backbone.body.* (the ResNet),
// backbone.fpn.*, head.classification_head.*, head.regression_head.*. The defaults are detectron2 v0.5's
// (what the paper used, spec/retinanet.md); torchvision_config() gives torchvision's for parity tests.
#pragma once
#include <memory>
#include <nlohmann/json.hpp>
#include <vector>

#include "models/anchor_generator.h"
#include "models/fpn.h"
#include "models/resnet.h"
#include "models/retinanet_head.h"
#include "models/retinanet_loss.h"
#include "models/retinanet_postprocess.h"

namespace icd {

struct RetinaNetConfig {
  int64_t num_classes = 80;
  ResNetConfig backbone{.depth = 50,
                        .stride_on_3x3 = false,
                        .norm = NormKind::frozen_batch_norm,
                        .freeze_at = 2,
                        .num_classes = 0};
  int64_t fpn_channels = 256;
  bool p6_from_c5 = true;
  int64_t head_convs = 4;
  bool head_group_norm = false;
  double prior_prob = 0.01;
  AnchorGeneratorConfig anchors;
  RetinaNetLossConfig loss;
  RetinaNetPostprocessConfig postprocess;
};

// torchvision 0.14's retinanet_resnet50_fpn settings (stride on the 3x3, P6 from P5, integer anchor
// sizes, per-image loss normalisation, clipping before NMS), for parity tests.
RetinaNetConfig torchvision_retinanet_config(int depth, int64_t num_classes);

// The config as JSON (stored in checkpoints) and back; unknown or mistyped fields are errors naming them.
nlohmann::json to_json(const RetinaNetConfig& config);
RetinaNetConfig retinanet_config_from_json(const nlohmann::json& json);

struct RetinaNetOutputs {
  std::vector<Tensor> features;  // P3..P7
  Tensor cls_logits;             // [N, R, K]
  Tensor bbox_deltas;            // [N, R, 4]
  Anchors anchors;               // R anchors for the batch's padded size
};

class RetinaNet : public Module {
 public:
  RetinaNet(const RetinaNetConfig& config, Generator& gen);

  std::vector<Tensor> features(const Tensor& images);  // P3..P7 (backbone + FPN)
  RetinaNetOutputs forward(const Tensor& images);
  // Training losses for a batch; advances the loss normaliser's EMA once.
  RetinaNetLosses losses(const RetinaNetOutputs& outputs, const std::vector<TargetBoxes>& targets);
  // Detections in original-image pixels, one entry per image.
  std::vector<Detections> detect(const RetinaNetOutputs& outputs, const std::vector<ImageSizes>& sizes) const;

  const RetinaNetConfig& config() const { return config_; }
  ResNet& backbone_body() { return *body_; }
  Fpn& fpn() { return *fpn_; }
  RetinaNetHead& head() { return *head_; }
  RetinaNetLoss& loss() { return loss_; }
  void train(bool on = true) override;

 private:
  RetinaNetConfig config_;
  std::shared_ptr<ResNet> body_;
  std::shared_ptr<Fpn> fpn_;
  std::shared_ptr<RetinaNetHead> head_;
  AnchorGenerator anchor_generator_;
  RetinaNetLoss loss_;
};

}  // namespace icd
