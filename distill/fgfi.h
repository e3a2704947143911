// The fine-grained feature imitation baseline (FGFI: Wang et al., "Distilling Object Detectors with
// Fine-grained Feature Imitation", CVPR 2019): the student's FPN maps are pushed towards the teacher's only
// at the cells near objects, where anchors overlap a ground-truth box well.
//
// Imitation mask, per image b: for each of its ground-truth boxes g, the IoU with every anchor r of every
// level of the padded batch (models/anchor_generator.h: A anchors per cell, order (level, y, x, a)), and
// M_g = max_r IoU(g, r) over all levels together. Box g selects the anchors with
//   IoU(g, r) > psi M_g    (strictly greater, as the authors' code compares),
// and cell (l, y, x) is in the mask, I[b, l, y, x] = 1, when any of its A anchors is selected by any box of
// image b. So an anchor at exactly psi M_g is out, psi = 1 would select nothing, and a box that overlaps no
// anchor (M_g = 0) selects nothing either. An image without boxes has an empty mask. The mask is a constant.
//
//   L = weight / (2 N_p) * sum_{b, l, y, x, c} I[b, l, y, x] (adapter_l(S_l)[b, c, y, x] - T_l[b, c, y, x])^2
//   N_p = sum I (mask cells over all images and levels);  L = 0 when N_p = 0
//
// S_l [B, C_s, H_l, W_l] and T_l [B, C_t, H_l, W_l] are the student's and teacher's level-l outputs for the
// same padded batch; the teacher maps are constants (detached). adapter_l is a learned K x K convolution
// C_s -> C_t with bias and padding K / 2, one per level: parameters "adapters.<l>.weight/bias".
// Backward: dL/d adapter_l(S_l) = weight / N_p * I (adapter_l(S_l) - T_l), zero off the mask, then through
// the convolution to S_l and to the adapter's weight and bias. Nothing reaches T_l, the anchors or the
// boxes. With N_p = 0 the loss is the (zero) masked sum divided by 2: still a graph node, so backward runs
// and leaves zero gradients.
//
// Choices, from the authors' code (github.com/twangnh/Distilling-Object-Detectors) where the paper is
// silent or less precise:
//   - adapter 3 x 3, padding 1 (lib/model/faster_rcnn/vgg11.py, stu_feature_adap; the paper says "a full
//     convolution adaptation layer"). Their adapter ends in a ReLU, because the VGG features it imitates
//     are rectified; FPN outputs are signed, so here the adapter is linear (a ReLU could never reach a
//     negative teacher value). adapter_kernel = 1 gives the 1 x 1 variant of later reimplementations.
//   - weight (lambda) = 0.01 (trainval_net_sup.py, --ilw "imitation loss weight", default 0.01).
//   - psi = 0.5, strict ">" (lib/model/rpn/anchor_target_layer.py: IOU_map > max_iou * 0.5; the paper:
//     "keep locations larger than F = psi * M").
//   - M over the anchors of all levels together: the paper's "all anchors". The authors' detector has a
//     single level; some FPN reimplementations take M per level instead, which adds cells on levels whose
//     anchors fit the box poorly.
#pragma once
#include <memory>
#include <vector>

#include "engine/random.h"
#include "layers/conv2d.h"
#include "layers/module.h"
#include "models/anchor_generator.h"

namespace icd {

struct FgfiConfig {
  int64_t student_channels = 256;
  int64_t teacher_channels = 256;
  int64_t num_levels = 5;        // P3..P7
  int64_t anchors_per_cell = 9;  // A: RetinaNet's 3 sizes x 3 aspect ratios
  double psi = 0.5;              // in [0, 1): anchors with IoU > psi * (the box's best IoU) are selected
  int64_t adapter_kernel = 3;    // odd; padding adapter_kernel / 2 keeps the maps' size
  double weight = 0.01;          // lambda
};

// The imitation mask of a padded batch: [B, sum_l H_l W_l] in the anchors' dtype and on their device, 1 at
// the imitated cells and 0 elsewhere, cells in the anchors' order: level by level, row-major within a level,
// with H_l W_l = anchors.num_per_level[l] / anchors_per_cell. gt_boxes: one [G_b, 4] tensor (x1, y1, x2, y2)
// per image (G_b may be 0), in the anchors' dtype; they are moved to the anchors' device. No graph.
Tensor fgfi_imitation_mask(const Anchors& anchors, int64_t anchors_per_cell,
                           const std::vector<Tensor>& gt_boxes, double psi = 0.5);

class FgfiDistiller : public Module {
 public:
  FgfiDistiller(const FgfiConfig& config, Generator& gen);
  // student, teacher: num_levels maps each, matching in batch and spatial size. anchors: those of the padded
  // batch (one set for every image, e.g. AnchorGenerator::generate(student)), in the maps' dtype, on any
  // device. gt_boxes: one [G_b, 4] tensor per image, in the maps' dtype.
  Tensor forward(const std::vector<Tensor>& student, const std::vector<Tensor>& teacher,
                 const Anchors& anchors, const std::vector<Tensor>& gt_boxes);
  const FgfiConfig& config() const { return config_; }

 private:
  FgfiConfig config_;
  std::vector<std::shared_ptr<Conv2d>> adapters_;  // one per level
};

}  // namespace icd
