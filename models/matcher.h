// Anchor matching: which anchors learn which ground-truth box, from the IoU matrix [G, R] (G boxes,
// R anchors). detectron2's Matcher with RetinaNet's settings (IOU_THRESHOLDS [0.4, 0.5], IOU_LABELS
// [0, -1, 1], allow_low_quality_matches):
//
//   matched[r] = argmax_g iou[g, r]            (the first g on ties, as torch.max)
//   best[r]    = max_g iou[g, r]
//   label[r]   = 0 (background) if best < 0.4,  -1 (ignored) if 0.4 <= best < 0.5,  1 (foreground) if >= 0.5
//
// Ignoring the band [0.4, 0.5) keeps ambiguous anchors out of both the positive and the negative set.
// Low-quality matches: a small or oddly shaped box may reach IoU 0.5 with no anchor at all and would
// never be learned. So for each box g, every anchor that attains g's highest IoU max_r iou[g, r] (ties
// included) is made foreground. Its `matched` entry stays its own argmax: an anchor forced positive by
// box A that overlaps box B more still regresses towards B (Detectron's C++ behaviour).
// A quirk both references share: a box that overlaps no anchor at all has highest IoU 0, so every anchor
// with IoU 0 to it turns foreground. Anchors tile the whole image, so boxes inside it never trigger this.
//
// With no boxes (G = 0) every anchor is background and matched is 0.
//
// torchvision's Matcher computes the same assignment but packs it into one tensor: the box index for
// foreground anchors, -1 (BELOW_LOW_THRESHOLD) for background, -2 (BETWEEN_THRESHOLDS) for ignored;
// torchvision_matches() converts to that form.
#pragma once
#include <cstdint>

#include "engine/tensor.h"

namespace icd {

struct MatcherConfig {
  double background_below = 0.4;  // IoU < this: background
  double foreground_from = 0.5;   // IoU >= this: foreground; in between: ignored
  bool allow_low_quality_matches = true;
};

enum AnchorLabel : int64_t { kIgnoredAnchor = -1, kBackgroundAnchor = 0, kForegroundAnchor = 1 };

struct MatchResult {
  Tensor matched;  // i64 [R]: the box each anchor overlaps most (used where labels == 1)
  Tensor labels;   // i64 [R]: AnchorLabel values
};

// iou: [G, R] (f32 or f64), every entry >= 0 (G may be 0), on the CPU or a GPU (the result lives there
// too). The thresholds are compared in iou's dtype.
MatchResult match_anchors(const Tensor& iou, const MatcherConfig& config = {});

// What a detector's loss reads of a match: the anchors that are not ignored and those in the foreground,
// as increasing index lists, with the class each kept anchor learns and the box each foreground anchor
// regresses to. On the match's device; on a GPU the lists are compacted there and only their two
// lengths are read back here.
struct AnchorSelection {
  Tensor kept;              // i64 [V]: labels != ignored
  Tensor kept_classes;      // class_dtype [V]: box_classes[matched] for foreground anchors, -1 for background
  Tensor foreground;        // i64 [F]: labels == foreground
  Tensor foreground_boxes;  // i64 [F]: matched, for each foreground anchor
};
// box_classes: i64 [G], the class of each box; class_dtype f32 or f64. The match must be over those G
// boxes (as match_anchors makes it): the CPU throws std::out_of_range for a foreground anchor matched
// outside [0, G); the GPU, which reads the lists back only after gathering, does not check.
AnchorSelection select_anchors(const MatchResult& match, const Tensor& box_classes, DType class_dtype);

// torchvision's encoding: matched where labels == 1, -1 where 0, -2 where -1 (i64 [R]).
Tensor torchvision_matches(const MatchResult& match);

}  // namespace icd
