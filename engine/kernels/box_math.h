// The arithmetic of box geometry, one box, one pair or one anchor at a time: the bodies that the CPU loops
// of models/box_coder.cpp, matcher.cpp and nms.cpp run, and the CUDA kernels of engine/cuda/box.cu too.
// Boxes are four contiguous coordinates (x1, y1, x2, y2), widths x2 - x1 with no "+1".
//
// min_of / max_of are std::min / std::max to the letter ((b < a) ? b : a and (a < b) ? b : a), so a NaN
// goes where the standard functions send it and each body keeps the exact semantics of the loop it
// replaced, including which argument wins. engine/cuda/box.cu and the host files that run these bodies
// (models/box_coder.cpp, matcher.cpp, nms.cpp) are compiled without FMA contraction, so IoU, NMS overlap
// and the matcher's comparisons agree bit for bit between the two devices; encoding and decoding call
// exp and log, whose last bit may differ between the host's libm and CUDA's.
#pragma once
#include <cmath>
#include <cstdint>

#include "engine/hd.h"

namespace icd::kernels {

template <class T>
ICD_HD T min_of(T a, T b) {
  return (b < a) ? b : a;
}

template <class T>
ICD_HD T max_of(T a, T b) {
  return (a < b) ? b : a;
}

template <class T>
ICD_HD T box_area(const T* box) {
  return (box[2] - box[0]) * (box[3] - box[1]);
}

// detectron2's pairwise_iou of boxes p and q with their areas: inter / (area_p + area_q - inter), and 0
// where the boxes do not overlap (inter = 0), so two empty boxes give 0 rather than 0/0.
template <class T>
ICD_HD T pairwise_iou_of(const T* p, T area_p, const T* q, T area_q) {
  const T w = max_of(min_of(p[2], q[2]) - max_of(p[0], q[0]), T(0));
  const T h = max_of(min_of(p[3], q[3]) - max_of(p[1], q[1]), T(0));
  const T inter = w * h;
  return inter > T(0) ? inter / (area_p + area_q - inter) : T(0);
}

// torchvision's NMS overlap of a kept box and a later candidate, in the order of its CPU kernel (the
// kept box first). Two empty boxes give 0/0 = NaN, which suppresses nothing.
template <class T>
ICD_HD T nms_overlap(const T* kept, T area_kept, const T* candidate, T area_candidate) {
  const T w = max_of(T(0), min_of(kept[2], candidate[2]) - max_of(kept[0], candidate[0]));
  const T h = max_of(T(0), min_of(kept[3], candidate[3]) - max_of(kept[1], candidate[1]));
  const T inter = w * h;
  return inter / (area_kept + area_candidate - inter);
}

// The box coder's settings (models/box_coder.h): weights (wx, wy, ww, wh) and the upper clamp on dw / ww
// and dh / wh before exp().
struct BoxCodingWeights {
  double wx = 1, wy = 1, ww = 1, wh = 1;
  double scale_clamp = 0;
};

template <class T>
struct CentreSize {
  T cx, cy, w, h;
};

// centre = x1 + w / 2, in the order of detectron2's Box2BoxTransform and torchvision's BoxCoder.
template <class T>
ICD_HD CentreSize<T> centre_size(const T* box) {
  const T w = box[2] - box[0], h = box[3] - box[1];
  return {box[0] + T(0.5) * w, box[1] + T(0.5) * h, w, h};
}

// deltas (dx, dy, dw, dh) that move `anchor` onto `box`.
template <class T>
ICD_HD void encode_box(const BoxCodingWeights& weights, const T* anchor_box, const T* box, T* deltas) {
  const CentreSize<T> anchor = centre_size(anchor_box), target = centre_size(box);
  deltas[0] = T(weights.wx) * (target.cx - anchor.cx) / anchor.w;
  deltas[1] = T(weights.wy) * (target.cy - anchor.cy) / anchor.h;
  deltas[2] = T(weights.ww) * std::log(target.w / anchor.w);
  deltas[3] = T(weights.wh) * std::log(target.h / anchor.h);
}

// The box that `deltas` make of `anchor`: encode_box's inverse, with the size deltas clamped.
template <class T>
ICD_HD void decode_box(const BoxCodingWeights& weights, const T* deltas, const T* anchor_box, T* box) {
  const CentreSize<T> anchor = centre_size(anchor_box);
  const T clamp = T(weights.scale_clamp);
  const T dw = min_of(deltas[2] / T(weights.ww), clamp), dh = min_of(deltas[3] / T(weights.wh), clamp);
  const T cx = deltas[0] / T(weights.wx) * anchor.w + anchor.cx;
  const T cy = deltas[1] / T(weights.wy) * anchor.h + anchor.cy;
  const T w = std::exp(dw) * anchor.w, h = std::exp(dh) * anchor.h;
  box[0] = cx - T(0.5) * w;
  box[1] = cy - T(0.5) * h;
  box[2] = cx + T(0.5) * w;
  box[3] = cy + T(0.5) * h;
}

// The matcher's labels (models/matcher.h).
inline constexpr int64_t kMatchIgnored = -1, kMatchBackground = 0, kMatchForeground = 1;

// The matcher's settings in the IoU's dtype, as torch compares a tensor with a Python float.
template <class T>
struct MatchThresholds {
  T background_below;  // IoU < this: background
  T foreground_from;   // IoU >= this: foreground; in between: ignored
  bool allow_low_quality_matches;
};

// Whether an IoU entry is acceptable to the matcher: >= 0 and not NaN.
template <class T>
ICD_HD bool valid_iou(T value) {
  return value >= T(0);
}

// Anchor r of iou [G, R] (row-major, G >= 1): its best box (the first of tied maxima, strict >) and its
// label; with low-quality matches, foreground too when it attains some box g's highest IoU
// highest[g] = max_r iou[g, r] (ties included; the matched box stays the anchor's own best).
template <class T>
ICD_HD void match_anchor(const T* iou, int64_t num_boxes, int64_t num_anchors, int64_t r,
                         const MatchThresholds<T>& thresholds, const T* highest, int64_t* matched,
                         int64_t* label) {
  T best = iou[r];
  int64_t best_box = 0;
  for (int64_t g = 1; g < num_boxes; ++g) {
    const T value = iou[g * num_anchors + r];
    if (value > best) {
      best = value;
      best_box = g;
    }
  }
  int64_t result = best < thresholds.background_below  ? kMatchBackground
                   : best < thresholds.foreground_from ? kMatchIgnored
                                                       : kMatchForeground;
  if (thresholds.allow_low_quality_matches)
    for (int64_t g = 0; g < num_boxes && result != kMatchForeground; ++g)
      if (iou[g * num_anchors + r] == highest[g]) result = kMatchForeground;
  *matched = best_box;
  *label = result;
}

// NMS as a suppression mask over boxes sorted by decreasing score: bit c of word `block` of row i is set
// when box j = 64 block + c comes after i (j > i), has i's class and overlaps i by more than threshold,
// so that i, if kept, suppresses j. Greedy NMS then walks the rows in order (nms_keep_from_mask).
inline constexpr int64_t kNmsBlock = 64;

ICD_HD int64_t nms_mask_words(int64_t n) {
  return (n + kNmsBlock - 1) / kNmsBlock;
}

template <class T>
ICD_HD uint64_t nms_mask_word(const T* sorted_boxes, const T* areas, const int64_t* classes, int64_t n,
                              int64_t i, int64_t block, double iou_threshold) {
  uint64_t bits = 0;
  const int64_t first = block * kNmsBlock;
  for (int64_t c = 0; c < kNmsBlock; ++c) {
    const int64_t j = first + c;
    if (j <= i || j >= n || classes[j] != classes[i]) continue;
    if (nms_overlap(sorted_boxes + 4 * i, areas[i], sorted_boxes + 4 * j, areas[j]) > iou_threshold)
      bits |= uint64_t{1} << c;
  }
  return bits;
}

// The greedy walk over a mask of n rows of nms_mask_words(n) words: box i is kept unless a kept box
// before it set its bit. Writes the kept positions (in sorted order) to keep, returns how many;
// removed holds nms_mask_words(n) words of scratch.
inline int64_t nms_keep_from_mask(const uint64_t* mask, int64_t n, uint64_t* removed, int64_t* keep) {
  const int64_t words = nms_mask_words(n);
  for (int64_t w = 0; w < words; ++w)
    removed[w] = 0;
  int64_t kept = 0;
  for (int64_t i = 0; i < n; ++i) {
    if ((removed[i / kNmsBlock] >> (i % kNmsBlock)) & 1) continue;
    keep[kept++] = i;
    const uint64_t* row = mask + i * words;
    for (int64_t w = i / kNmsBlock; w < words; ++w)
      removed[w] |= row[w];
  }
  return kept;
}

}  // namespace icd::kernels
