// Anchors: the fixed reference boxes a one-stage detector classifies and regresses from.
//
// Every cell (x, y) of pyramid level l (stride s_l) carries the same A boxes, centred on the cell:
//   centre = ((x + offset) s_l, (y + offset) s_l),   offset 0 in detectron2 (the paper) and torchvision,
// so the anchors of cell (0, 0) are centred on the image's top-left pixel corner, not on its first cell.
// For a size S (the square root of the area) and an aspect ratio r = h / w:
//   w = sqrt(S^2 / r),  h = r w,  box = (-w/2, -h/2, w/2, h/2) + (cx, cy, cx, cy)
// RetinaNet uses three sizes per level (scales 2^0, 2^(1/3), 2^(2/3) of 32, 64, 128, 256, 512 on P3-P7)
// and three ratios (0.5, 1, 2): A = 9. Boxes are (x1, y1, x2, y2) with width x2 - x1 (no +1).
//
// Order: level-major, then row y, column x, then anchor a = size_idx * num_ratios + ratio_idx. This is
// the order flatten_head_outputs (models/retinanet_head.h) gives the head's predictions, so row r of the
// anchors belongs to row r of the predictions.
//
// torchvision differs in three details, each a switch (torchvision_anchor_config() sets them all): its sizes
// are integers (int(32 * 2^(1/3)) = 40, ...); its zero-centred cell anchors are computed in f32 and rounded
// to integers (half to even), which moves their corners by up to half a pixel; and its anchors within a cell
// are ratio-major, a = ratio_idx * num_sizes + size_idx. The last one decides which head channel predicts
// which anchor, so weights trained under one convention only work with anchors generated under the same one.
#pragma once
#include <array>
#include <cstdint>
#include <vector>

#include "engine/tensor.h"

namespace icd {

// {x, x 2^(1/3), x 2^(2/3)} for x = 32, 64, 128, 256, 512 (detectron2's Base-RetinaNet sizes).
std::vector<std::vector<double>> detectron2_anchor_sizes();

struct AnchorGeneratorConfig {
  std::vector<std::vector<double>> sizes = detectron2_anchor_sizes();  // per level; the same count on each
  std::vector<double> aspect_ratios = {0.5, 1.0, 2.0};                 // h / w, shared by every level
  std::vector<int64_t> strides = {8, 16, 32, 64, 128};                 // per level, in input pixels
  double offset = 0.0;              // in [0, 1): where in its cell an anchor is centred
  bool round_base_anchors = false;  // torchvision: zero-centred anchors computed in f32, then rounded
  bool ratio_major_order = false;   // torchvision: a = ratio_idx * num_sizes + size_idx
};

// torchvision's RetinaNet anchors: sizes (32, 40, 50), (64, 80, 101), ..., its convention.
AnchorGeneratorConfig torchvision_anchor_config();

struct GridSize {
  int64_t height = 0, width = 0;
};

struct Anchors {
  Tensor boxes;                        // [sum_l H_l W_l A, 4] as (x1, y1, x2, y2), order (level, y, x, a)
  std::vector<int64_t> num_per_level;  // H_l W_l A for each level: splits `boxes` (and the predictions)
};

class AnchorGenerator {
 public:
  explicit AnchorGenerator(AnchorGeneratorConfig config = {});

  int64_t num_levels() const { return static_cast<int64_t>(config_.strides.size()); }
  // A: the same on every level (the head predicts a fixed number of anchors per cell).
  int64_t num_anchors_per_location() const;
  // The A zero-centred anchors of `level`, (x1, y1, x2, y2), in the convention's order.
  const std::vector<std::array<double, 4>>& cell_anchors(int64_t level) const;

  // Anchors for one grid per level (P3 first), in f32 or f64. For f32 the cell anchors are rounded to
  // f32 before the shift is added in f32, as detectron2 and torchvision do.
  Anchors generate(const std::vector<GridSize>& grids, DType dtype = DType::f32) const;
  // The same for feature maps [N, C, H, W] (one per level); the anchors take the features' dtype.
  Anchors generate(const std::vector<Tensor>& features) const;

  const AnchorGeneratorConfig& config() const { return config_; }

 private:
  AnchorGeneratorConfig config_;
  std::vector<std::vector<std::array<double, 4>>> cell_anchors_;  // per level, A boxes
};

}  // namespace icd
