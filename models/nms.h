// Non-maximum suppression: a detector fires on many overlapping anchors around one object; NMS keeps the
// highest-scoring box and drops every box that overlaps a kept one by more than a threshold.
//
// Greedy algorithm (torchvision.ops.nms), O(n log n) sort + O(n k) for k kept boxes:
//   order = boxes by decreasing score (a stable sort: tied scores keep their index order)
//   for i in order: keep i unless IoU(i, some kept j) > iou_threshold      (strictly greater)
// with IoU = inter / (area_i + area_j - inter) computed in the boxes' dtype, as torchvision's CPU kernel
// does (0/0 for two empty boxes is NaN, which suppresses nothing).
//
// batched_nms runs NMS separately per class ("class-aware"): boxes of different classes never suppress
// each other. torchvision (and detectron2, which calls it) does this either by shifting each class's boxes
// far apart (the coordinate-offset trick) or by a loop over classes; both keep the same boxes as this
// one pass over the score order that only compares boxes of one class.
//
// Both return the kept indices (i64 [k]) in decreasing score order, tied scores by increasing index:
// the order torchvision's nms and its offset-trick batched_nms return them in. (Its per-class path,
// taken for more than 1000 boxes on the CPU, keeps the same set but may order tied scores differently:
// its final sort by score is not stable.) Boxes on a GPU give the same indices on that GPU: the overlaps
// are computed there and the greedy walk over them runs on the host (models/nms.cpp); the mask of all
// pairs takes n^2 / 8 bytes on both (3 MB for the 5000 candidates of a RetinaNet image, 1.25 GB for 10^5).
#pragma once
#include "engine/tensor.h"

namespace icd {

// boxes [n, 4] (x1, y1, x2, y2), scores [n] (one float dtype, no NaN).
Tensor nms(const Tensor& boxes, const Tensor& scores, double iou_threshold);
// As nms, plus classes: i64 [n]; boxes only suppress boxes of their own class.
Tensor batched_nms(const Tensor& boxes, const Tensor& scores, const Tensor& classes, double iou_threshold);

}  // namespace icd
