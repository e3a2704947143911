// The RetinaNet head (Lin et al. 2017), shared across pyramid levels:
//   classification: num_convs x [3x3 conv + (GroupNorm) + ReLU] -> 3x3 conv to A*K logits
//   regression:     num_convs x [3x3 conv + (GroupNorm) + ReLU] -> 3x3 conv to A*4 box deltas
// Channel c of the logits is anchor a = c / K, class k = c % K. Init: N(0, 0.01) weights, zero biases,
// and the logits' bias -log((1 - prior) / prior) so every anchor starts at probability `prior` (0.01),
// which keeps the focal loss of the many background anchors from swamping the first iterations.
// Names follow torchvision: head.classification_head.conv.0.0.weight, ...cls_logits, ...bbox_reg.
#pragma once
#include <memory>
#include <vector>

#include "engine/random.h"
#include "layers/sequential.h"

namespace icd {

struct RetinaNetHeadConfig {
  int64_t in_channels = 256;
  int64_t num_anchors = 9;
  int64_t num_classes = 80;
  int64_t num_convs = 4;
  bool group_norm = false;  // torchvision's RetinaNet v2 uses GroupNorm(32) in the towers
  double prior_prob = 0.01;
};

struct HeadOutputs {
  std::vector<Tensor> cls_logits;   // per level [N, A*K, H, W]
  std::vector<Tensor> bbox_deltas;  // per level [N, A*4, H, W]
};

class RetinaNetHead : public Module {
 public:
  RetinaNetHead(const RetinaNetHeadConfig& config, Generator& gen);
  HeadOutputs forward(const std::vector<Tensor>& features);
  const RetinaNetHeadConfig& config() const { return config_; }

 private:
  RetinaNetHeadConfig config_;
  std::shared_ptr<Sequential> cls_tower_, box_tower_;
  std::shared_ptr<UnaryModule> cls_logits_, bbox_reg_;
};

// [N, A*C, H, W] per level -> [N, sum_l H_l W_l A, C], in (level, y, x, anchor) order: the order anchors
// are generated in, so row r of the result belongs to anchor r.
Tensor flatten_head_outputs(const std::vector<Tensor>& per_level, int64_t channels_per_anchor);

}  // namespace icd
