// The matcher in three passes over the IoU matrix [G, R] (row g: one box against every anchor):
//   1. column maxima: for each anchor, its best box and IoU (rows scanned in order, strict > keeps the
//      first of tied boxes);
//   2. thresholds: best IoU -> background / ignored / foreground;
//   3. low-quality matches: row maxima, then every anchor equal to its row's maximum becomes foreground.
// Pass 3 compares with ==, exactly as the references do, so ties (several anchors at one box's best
// IoU, common on a regular anchor grid) all become foreground.
#include "models/matcher.h"

#include <stdexcept>
#include <string>
#include <vector>

#include "engine/dispatch.h"
#include "engine/factory.h"

namespace icd {

MatchResult match_anchors(const Tensor& iou, const MatcherConfig& config) {
  const char* op = "match_anchors";
  require_cpu(op, {{"iou", iou}});
  if (iou.dim() != 2)
    throw std::invalid_argument("match_anchors: iou must be [G, R], got " + shape_str(iou.shape()));
  if (!(config.background_below > 0.0 && config.background_below <= config.foreground_from))
    throw std::invalid_argument("match_anchors: need 0 < background_below <= foreground_from, got " +
                                std::to_string(config.background_below) + ", " +
                                std::to_string(config.foreground_from));
  const int64_t num_boxes = iou.size(0), num_anchors = iou.size(1);
  MatchResult result{zeros({num_anchors}, {DType::i64}), zeros({num_anchors}, {DType::i64})};
  if (num_boxes == 0 || num_anchors == 0) return result;  // no boxes: all background, matched 0

  int64_t* matched = result.matched.data<int64_t>();
  int64_t* labels = result.labels.data<int64_t>();
  dispatch_floating(iou.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
    const Tensor q = iou.contiguous();
    const T* m = q.data<T>();
    for (int64_t i = 0; i < q.numel(); ++i)
      if (!(m[i] >= T(0)))
        throw std::invalid_argument("match_anchors: iou entries must be >= 0 (and not NaN), got " +
                                    std::to_string(static_cast<double>(m[i])));

    // 1. each anchor's best box
    std::vector<T> best(m, m + num_anchors);  // row 0
    for (int64_t g = 1; g < num_boxes; ++g) {
      const T* row = m + g * num_anchors;
      for (int64_t r = 0; r < num_anchors; ++r)
        if (row[r] > best[r]) {
          best[r] = row[r];
          matched[r] = g;
        }
    }
    // 2. thresholds, compared in T as torch compares a tensor with a Python float
    const T low = static_cast<T>(config.background_below), high = static_cast<T>(config.foreground_from);
    for (int64_t r = 0; r < num_anchors; ++r)
      labels[r] = best[r] < low ? kBackgroundAnchor : best[r] < high ? kIgnoredAnchor : kForegroundAnchor;
    // 3. every anchor at a box's highest IoU, ties included, becomes foreground (matched unchanged)
    if (config.allow_low_quality_matches)
      for (int64_t g = 0; g < num_boxes; ++g) {
        const T* row = m + g * num_anchors;
        T highest = row[0];
        for (int64_t r = 1; r < num_anchors; ++r)
          highest = row[r] > highest ? row[r] : highest;
        for (int64_t r = 0; r < num_anchors; ++r)
          if (row[r] == highest) labels[r] = kForegroundAnchor;
      }
  });
  return result;
}

Tensor torchvision_matches(const MatchResult& match) {
  if (!match.matched.defined() || !match.labels.defined() || match.matched.dtype() != DType::i64 ||
      match.labels.dtype() != DType::i64 || match.matched.shape() != match.labels.shape())
    throw std::invalid_argument(
        "torchvision_matches: expected a MatchResult of two i64 tensors of one shape");
  const std::vector<int64_t> matched = match.matched.to_vector<int64_t>(),
                             labels = match.labels.to_vector<int64_t>();
  std::vector<int64_t> out(matched.size());
  for (std::size_t r = 0; r < out.size(); ++r)
    out[r] = labels[r] == kForegroundAnchor ? matched[r] : labels[r] == kBackgroundAnchor ? -1 : -2;
  return from_vector(out, match.matched.shape());
}

}  // namespace icd
