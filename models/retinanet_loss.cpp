// The loss in two halves, both on the predictions' device:
//   assign (no graph): IoU -> matcher -> index lists (kept anchors, foreground anchors), the class of
//     each kept anchor (-1 for background) and the regression targets of the foreground ones, then the
//     one-hot class targets [V, K];
//   score (graph): select the kept rows of the logits and the foreground rows of the deltas with
//     index_select, and sum the focal and L1 losses, so the gradient flows back to exactly those rows
//     (ignored anchors get none, background anchors only a classification gradient).
// Each image's sums are kept apart until the end, where the two normalisations differ.
#include "models/retinanet_loss.h"

#include <algorithm>
#include <stdexcept>
#include <string>
#include <utility>

#include "engine/autograd.h"
#include "engine/dispatch.h"
#include "engine/factory.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/loss.h"
#include "engine/ops/shape.h"
#include "engine/transfer.h"

namespace icd {
namespace {

// What one image's anchors learn (all constants).
struct ImageAssignment {
  Tensor kept;           // i64 [V]: anchors that are not ignored
  Tensor kept_classes;   // [V]: the class of each kept foreground anchor, -1 for background ones
  Tensor foreground;     // i64 [F]
  Tensor delta_targets;  // [F, 4]: encode(anchor, matched box)
  int64_t num_foreground = 0;
};

ImageAssignment assign(const Tensor& anchors, const TargetBoxes& targets, const MatcherConfig& matcher,
                       const BoxCoder& coder) {
  NoGradGuard no_grad;
  const MatchResult match = match_anchors(pairwise_iou(targets.boxes, anchors), matcher);
  AnchorSelection selection = select_anchors(match, targets.labels, anchors.dtype());
  ImageAssignment a;
  a.num_foreground = selection.foreground.numel();
  a.kept = std::move(selection.kept);
  a.kept_classes = std::move(selection.kept_classes);
  a.foreground = std::move(selection.foreground);
  a.delta_targets = coder.encode(index_select(anchors, 0, a.foreground),
                                 index_select(targets.boxes, 0, selection.foreground_boxes));
  return a;
}

void check_inputs(const Tensor& cls_logits, const Tensor& bbox_deltas, const Tensor& anchors,
                  const std::vector<TargetBoxes>& targets) {
  const std::string op = "RetinaNetLoss: ";
  op_device("RetinaNetLoss", {{"cls_logits", cls_logits}, {"bbox_deltas", bbox_deltas}});
  if (anchors.defined() && anchors.dtype() != cls_logits.dtype())  // anchors may live on the host
    throw std::invalid_argument(op + "anchors have dtype " + dtype_name(anchors.dtype()) +
                                " but cls_logits " + dtype_name(cls_logits.dtype()));
  if (cls_logits.dim() != 3 || cls_logits.size(0) == 0 || cls_logits.size(2) == 0)
    throw std::invalid_argument(op + "cls_logits must be [N, R, K] with N, K > 0, got " +
                                shape_str(cls_logits.shape()));
  const int64_t n = cls_logits.size(0), r = cls_logits.size(1), k = cls_logits.size(2);
  if (bbox_deltas.shape() != Shape{n, r, 4})
    throw std::invalid_argument(op + "bbox_deltas must be [N, R, 4] = " + shape_str({n, r, 4}) +
                                " for cls_logits " + shape_str(cls_logits.shape()) + ", got " +
                                shape_str(bbox_deltas.shape()));
  if (anchors.shape() != Shape{r, 4})
    throw std::invalid_argument(op + "anchors must be [R, 4] = " + shape_str({r, 4}) + ", got " +
                                shape_str(anchors.shape()));
  if (static_cast<int64_t>(targets.size()) != n)
    throw std::invalid_argument(op + "got targets for " + std::to_string(targets.size()) +
                                " images, predictions for " + std::to_string(n));
  for (std::size_t i = 0; i < targets.size(); ++i) {
    const Tensor& boxes = targets[i].boxes;
    const Tensor& labels = targets[i].labels;
    const std::string image = "image " + std::to_string(i) + ": ";
    if (!boxes.defined() || boxes.dim() != 2 || boxes.size(1) != 4 || boxes.dtype() != cls_logits.dtype())
      throw std::invalid_argument(
          op + image + "boxes must be [G, 4] of dtype " + dtype_name(cls_logits.dtype()) +
          (boxes.defined()
               ? ", got " + std::string(dtype_name(boxes.dtype())) + " " + shape_str(boxes.shape())
               : ", got an undefined tensor"));
    if (!labels.defined() || labels.dtype() != DType::i64 || labels.shape() != Shape{boxes.size(0)})
      throw std::invalid_argument(op + image + "labels must be i64 [G] = " + shape_str({boxes.size(0)}) +
                                  (labels.defined() ? ", got " + std::string(dtype_name(labels.dtype())) +
                                                          " " + shape_str(labels.shape())
                                                    : ", got an undefined tensor"));
    for (int64_t c : to_device(labels, Device::cpu()).to_vector<int64_t>())
      if (c < 0 || c >= k)
        throw std::out_of_range(op + image + "label " + std::to_string(c) + " is outside [0, " +
                                std::to_string(k) + ")");
  }
}

}  // namespace

RetinaNetLoss::RetinaNetLoss(RetinaNetLossConfig config)
    : config_(config), box_coder_(config.box_coder), normalizer_(config.normalizer_initial) {
  if (!(config_.normalizer_momentum >= 0.0 && config_.normalizer_momentum < 1.0))
    throw std::invalid_argument("RetinaNetLoss: normalizer_momentum must be in [0, 1), got " +
                                std::to_string(config_.normalizer_momentum));
  set_normalizer(config_.normalizer_initial);
}

void RetinaNetLoss::set_normalizer(double value) {
  if (!(value > 0.0))
    throw std::invalid_argument("RetinaNetLoss: the normalizer must be > 0, got " + std::to_string(value));
  normalizer_ = value;
}

RetinaNetLosses RetinaNetLoss::operator()(const Tensor& cls_logits, const Tensor& bbox_deltas,
                                          const Tensor& anchors, const std::vector<TargetBoxes>& targets) {
  check_inputs(cls_logits, bbox_deltas, anchors, targets);
  const int64_t num_images = cls_logits.size(0), num_anchors = cls_logits.size(1);
  const int64_t num_classes = cls_logits.size(2);
  // The assignment and the scoring both run where the predictions live.
  const Device device = cls_logits.device();
  const Tensor fixed_anchors = to_device(anchors.detach(), device);

  std::vector<Tensor> cls_sums, box_sums;
  std::vector<int64_t> num_foreground;
  for (int64_t i = 0; i < num_images; ++i) {
    const TargetBoxes image_targets{to_device(targets[i].boxes.detach(), device),
                                    to_device(targets[i].labels, device)};
    const ImageAssignment a = assign(fixed_anchors, image_targets, config_.matcher, box_coder_);
    const int64_t num_kept = a.kept.numel();
    Tensor class_targets;  // one-hot [V, K]: kept_classes[v] == k
    {
      NoGradGuard no_grad;
      class_targets = eq(a.kept_classes.reshape({num_kept, 1}),
                         arange(num_classes, a.kept_classes.options()).reshape({1, num_classes}));
    }
    Tensor logits = cls_logits.select(0, i);
    if (num_kept < num_anchors) logits = index_select(logits, 0, a.kept);
    cls_sums.push_back(
        sigmoid_focal_loss(logits, class_targets, config_.focal_alpha, config_.focal_gamma, Reduction::sum));
    const Tensor deltas = index_select(bbox_deltas.select(0, i), 0, a.foreground);
    box_sums.push_back(smooth_l1_loss(deltas, a.delta_targets, config_.smooth_l1_beta, Reduction::sum));
    num_foreground.push_back(a.num_foreground);
  }

  RetinaNetLosses losses;
  for (int64_t f : num_foreground)
    losses.num_foreground += f;
  if (config_.normalization == LossNormalization::foreground_ema) {
    normalizer_ = config_.normalizer_momentum * normalizer_ +
                  (1.0 - config_.normalizer_momentum) *
                      static_cast<double>(std::max<int64_t>(losses.num_foreground, 1));
    Tensor cls = cls_sums[0], box = box_sums[0];
    for (int64_t i = 1; i < num_images; ++i) {
      cls = add(cls, cls_sums[i]);
      box = add(box, box_sums[i]);
    }
    losses.classification = div(cls, normalizer_);
    losses.box_regression = div(box, normalizer_);
    losses.normalizer = normalizer_;
  } else {
    Tensor cls, box;
    for (int64_t i = 0; i < num_images; ++i) {
      const double image_normalizer = static_cast<double>(std::max<int64_t>(num_foreground[i], 1));
      const Tensor c = div(cls_sums[i], image_normalizer), b = div(box_sums[i], image_normalizer);
      cls = cls.defined() ? add(cls, c) : c;
      box = box.defined() ? add(box, b) : b;
    }
    losses.classification = div(cls, static_cast<double>(num_images));
    losses.box_regression = div(box, static_cast<double>(num_images));
  }
  return losses;
}

}  // namespace icd
