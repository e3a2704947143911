// RetinaNet's training loss (Lin et al. 2017) from the flattened head outputs.
//
// Per image: IoU of every GT box with every anchor -> matcher (models/matcher.h) -> per anchor one of
//   foreground (class c of its matched box), background, ignored.
// Classification: sigmoid focal loss over the K class logits of every non-ignored anchor, target one-hot
//   of c for foreground anchors and all-zero for background ones (there is no background logit):
//     L_cls = sum_{anchors not ignored} sum_k FL(x_{a,k}, t_{a,k})          (alpha 0.25, gamma 2)
//   The focal term (1 - p_t)^gamma shrinks the loss of the ~100k easy background anchors, so the few
//   hundred foreground ones are not drowned out.
// Box regression: smooth L1 (beta 0: plain L1) between the predicted deltas and the encoded matched box
//   (models/box_coder.h), over foreground anchors only:
//     L_box = sum_{foreground a} sum_j |d_{a,j} - encode(anchor_a, box_a)_j|
// Normalisation (a switch):
//   foreground_ema (detectron2, the paper): both sums over the whole batch are divided by
//     norm <- momentum norm + (1 - momentum) max(#foreground anchors in the batch, 1),  norm_0 = 100,
//     updated before dividing. Averaging over iterations keeps the loss scale steady while the number
//     of foreground anchors swings from image to image.
//   per_image (torchvision): each image's sums are divided by max(its #foreground, 1), then averaged
//     over the images.
//
// The losses are built from engine ops (index_select, sigmoid_focal_loss, smooth_l1_loss, sum, div), so
// they are differentiable with respect to the head outputs; the matching and targets are constants.
#pragma once
#include <cstdint>
#include <vector>

#include "engine/tensor.h"
#include "models/box_coder.h"
#include "models/matcher.h"

namespace icd {

// One image's ground truth, in the coordinates of the network's input image.
struct TargetBoxes {
  Tensor boxes;   // [G, 4] (x1, y1, x2, y2), the predictions' dtype; G may be 0
  Tensor labels;  // i64 [G], contiguous class ids in [0, K)
};

enum class LossNormalization {
  foreground_ema,  // detectron2: batch sums / EMA of max(#foreground, 1)
  per_image,       // torchvision: per-image sums / max(#foreground in the image, 1), mean over images
};

struct RetinaNetLossConfig {
  MatcherConfig matcher;
  BoxCoderConfig box_coder;
  double focal_alpha = 0.25;
  double focal_gamma = 2.0;
  double smooth_l1_beta = 0.0;  // Base-RetinaNet.yaml's SMOOTH_L1_LOSS_BETA: an L1 loss
  LossNormalization normalization = LossNormalization::foreground_ema;
  double normalizer_momentum = 0.9;
  double normalizer_initial = 100.0;
};

struct RetinaNetLosses {
  Tensor classification;       // 0-d, in the predictions' dtype
  Tensor box_regression;       // 0-d
  int64_t num_foreground = 0;  // over the batch
  double normalizer = 1.0;     // foreground_ema: the EMA value the sums were divided by
};

// Owns the normaliser's running state, so the trainer that owns this object owns the EMA; save
// normalizer() with a checkpoint and set_normalizer() it on resume to continue exactly.
class RetinaNetLoss {
 public:
  explicit RetinaNetLoss(RetinaNetLossConfig config = {});

  // cls_logits [N, R, K] and bbox_deltas [N, R, 4] as flatten_head_outputs gives them, anchors [R, 4]
  // (one set shared by the batch: the images are padded to one size), targets: one entry per image.
  // Each call under foreground_ema advances the EMA once: call it once per training iteration.
  RetinaNetLosses operator()(const Tensor& cls_logits, const Tensor& bbox_deltas, const Tensor& anchors,
                             const std::vector<TargetBoxes>& targets);

  double normalizer() const { return normalizer_; }
  void set_normalizer(double value);
  const RetinaNetLossConfig& config() const { return config_; }

 private:
  RetinaNetLossConfig config_;
  BoxCoder box_coder_;
  double normalizer_;
};

}  // namespace icd
