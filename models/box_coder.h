// Box coding: how a detector's regression outputs describe a box relative to its anchor, and the
// overlap measure (IoU) that decides which anchor learns which box.
//
// With anchor centre (ax, ay) and size (aw, ah), and the box's (gx, gy, gw, gh) (x1 + w/2, ..., x2 - x1):
//   encode:  dx = wx (gx - ax) / aw     dy = wy (gy - ay) / ah
//            dw = ww ln(gw / aw)        dh = wh ln(gh / ah)
//   decode:  the inverse, with dw / ww and dh / wh clamped to <= ln(1000 / 16) before exp(), so one wild
//            prediction cannot overflow (a box at most 62.5x its anchor's side).
// Dividing by the anchor's size makes the targets scale-invariant: a 10-pixel shift means much for a
// 32-pixel anchor, little for a 512-pixel one. RetinaNet uses weights (1, 1, 1, 1) (Faster R-CNN's box
// head uses (10, 10, 5, 5)). Box widths are x2 - x1: no "+1" anywhere (detectron2 and torchvision).
//
// These are data preparation and inference steps, not part of the learned graph: encoding produces
// constant targets, decoding turns predictions into boxes after training. They build no autograd graph,
// and refuse inputs that require grad while grad mode is on (detach them or use a NoGradGuard) rather
// than silently dropping a gradient. Inputs on a GPU are coded there (engine/kernels/box_math.h holds the
// arithmetic both devices run), and the result lives where the inputs do.
#pragma once
#include <array>
#include <cmath>

#include "engine/tensor.h"

namespace icd {

struct BoxCoderConfig {
  std::array<double, 4> weights = {1.0, 1.0, 1.0, 1.0};  // (wx, wy, ww, wh)
  double scale_clamp = std::log(1000.0 / 16.0);          // upper bound on dw / ww, dh / wh when decoding
};

class BoxCoder {
 public:
  explicit BoxCoder(BoxCoderConfig config = {});
  // anchors, boxes: [M, 4] (x1, y1, x2, y2), one dtype  ->  deltas [M, 4] (dx, dy, dw, dh)
  Tensor encode(const Tensor& anchors, const Tensor& boxes) const;
  // deltas, anchors: [M, 4]  ->  boxes [M, 4]
  Tensor decode(const Tensor& deltas, const Tensor& anchors) const;
  const BoxCoderConfig& config() const { return config_; }

 private:
  BoxCoderConfig config_;
};

// IoU of every pair: a [N, 4], b [M, 4] (x1, y1, x2, y2)  ->  [N, M],
//   iou = inter / (area_a + area_b - inter),  0 where the boxes do not overlap (inter = 0), so empty
// boxes give 0 rather than 0/0 (detectron2's pairwise_iou; torchvision's box_iou is the same elsewhere).
// Same rules as BoxCoder about gradients.
Tensor pairwise_iou(const Tensor& a, const Tensor& b);

}  // namespace icd
