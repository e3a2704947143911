// The matcher over the IoU matrix [G, R] (row g: one box against every anchor), in two passes:
//   1. row maxima: each box's highest IoU (needed only for low-quality matches);
//   2. per anchor (kernels::match_anchor, the body the CUDA kernel runs too): its best box (rows scanned
//      in order, strict > keeps the first of tied boxes), the thresholds on that best IoU, and
//      foreground when it equals some box's highest IoU.
// The low-quality test compares with ==, exactly as the references do, so ties (several anchors at one
// box's best IoU, common on a regular anchor grid) all become foreground.
#include "models/matcher.h"

#include <stdexcept>
#include <string>
#include <vector>

#include "engine/cuda_ops.h"
#include "engine/dispatch.h"
#include "engine/factory.h"
#include "engine/kernels/box_math.h"

namespace icd {

static_assert(kIgnoredAnchor == kernels::kMatchIgnored && kBackgroundAnchor == kernels::kMatchBackground &&
              kForegroundAnchor == kernels::kMatchForeground);

MatchResult match_anchors(const Tensor& iou, const MatcherConfig& config) {
  const char* op = "match_anchors";
  const Device device = op_device(op, {{"iou", iou}});
  if (iou.dim() != 2)
    throw std::invalid_argument("match_anchors: iou must be [G, R], got " + shape_str(iou.shape()));
  if (!(config.background_below > 0.0 && config.background_below <= config.foreground_from))
    throw std::invalid_argument("match_anchors: need 0 < background_below <= foreground_from, got " +
                                std::to_string(config.background_below) + ", " +
                                std::to_string(config.foreground_from));
  const int64_t num_boxes = iou.size(0), num_anchors = iou.size(1);
  MatchResult result{zeros({num_anchors}, {DType::i64, device}), zeros({num_anchors}, {DType::i64, device})};
  if (num_boxes == 0 || num_anchors == 0) return result;  // no boxes: all background, matched 0
  const Tensor q = iou.detach().contiguous();
  if (device.is_cuda()) {
    cuda_ops::match_anchors(
        op, q, {config.background_below, config.foreground_from, config.allow_low_quality_matches},
        result.matched, result.labels);
    return result;
  }

  int64_t* matched = result.matched.data<int64_t>();
  int64_t* labels = result.labels.data<int64_t>();
  dispatch_floating(iou.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
    const T* m = q.data<T>();
    for (int64_t i = 0; i < q.numel(); ++i)
      if (!kernels::valid_iou(m[i]))
        throw std::invalid_argument("match_anchors: iou entries must be >= 0 (and not NaN), got " +
                                    std::to_string(static_cast<double>(m[i])));
    // Each box's highest IoU, for the low-quality matches; a row scan is cache friendly.
    std::vector<T> highest(num_boxes, T(0));
    if (config.allow_low_quality_matches)
      for (int64_t g = 0; g < num_boxes; ++g) {
        const T* row = m + g * num_anchors;
        T best = row[0];
        for (int64_t r = 1; r < num_anchors; ++r)
          best = kernels::max_of(best, row[r]);
        highest[g] = best;
      }
    // Thresholds compared in T, as torch compares a tensor with a Python float.
    const kernels::MatchThresholds<T> thresholds{static_cast<T>(config.background_below),
                                                 static_cast<T>(config.foreground_from),
                                                 config.allow_low_quality_matches};
    for (int64_t r = 0; r < num_anchors; ++r)
      kernels::match_anchor(m, num_boxes, num_anchors, r, thresholds, highest.data(), matched + r,
                            labels + r);
  });
  return result;
}

AnchorSelection select_anchors(const MatchResult& match, const Tensor& box_classes, DType class_dtype) {
  const char* op = "select_anchors";
  const Device device =
      op_device(op, {{"matched", match.matched}, {"labels", match.labels}, {"box_classes", box_classes}});
  if (match.matched.dtype() != DType::i64 || match.matched.dim() != 1 || match.labels.dtype() != DType::i64 ||
      match.labels.shape() != match.matched.shape() || box_classes.dtype() != DType::i64 ||
      box_classes.dim() != 1)
    throw std::invalid_argument(
        "select_anchors: expected a MatchResult of two i64 [R] tensors and i64 [G] box classes, got " +
        shape_str(match.matched.shape()) + ", " + shape_str(match.labels.shape()) + ", " +
        shape_str(box_classes.shape()));
  if (class_dtype != DType::f32 && class_dtype != DType::f64)
    throw std::invalid_argument(std::string("select_anchors: class_dtype must be f32 or f64, got ") +
                                dtype_name(class_dtype));
  AnchorSelection s;
  if (device.is_cuda()) {
    cuda_ops::select_anchors(op, match.labels.contiguous(), match.matched.contiguous(),
                             box_classes.contiguous(), class_dtype, s.kept, s.kept_classes, s.foreground,
                             s.foreground_boxes);
    return s;
  }
  const std::vector<int64_t> matched = match.matched.to_vector<int64_t>();
  const std::vector<int64_t> labels = match.labels.to_vector<int64_t>();
  const std::vector<int64_t> classes = box_classes.to_vector<int64_t>();
  std::vector<int64_t> kept, foreground, foreground_boxes;
  std::vector<double> kept_classes;
  for (int64_t r = 0; r < static_cast<int64_t>(labels.size()); ++r) {
    if (labels[r] == kIgnoredAnchor) continue;
    if (labels[r] == kForegroundAnchor && !(matched[r] >= 0 && matched[r] < box_classes.size(0)))
      throw std::out_of_range("select_anchors: anchor " + std::to_string(r) + " is matched to box " +
                              std::to_string(matched[r]) + " of " + std::to_string(box_classes.size(0)));
    kept.push_back(r);
    kept_classes.push_back(labels[r] == kForegroundAnchor ? static_cast<double>(classes[matched[r]]) : -1.0);
    if (labels[r] == kForegroundAnchor) {
      foreground.push_back(r);
      foreground_boxes.push_back(matched[r]);
    }
  }
  const int64_t num_kept = static_cast<int64_t>(kept.size()),
                num_foreground = static_cast<int64_t>(foreground.size());
  s.kept = from_vector(kept, {num_kept});
  s.kept_classes = from_vector(kept_classes, {num_kept}, {class_dtype});
  s.foreground = from_vector(foreground, {num_foreground});
  s.foreground_boxes = from_vector(foreground_boxes, {num_foreground});
  return s;
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
