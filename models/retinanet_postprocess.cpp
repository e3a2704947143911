// Postprocessing as plain loops over each image's rows of logits: per level a threshold pass collects
// (score, index) candidates, a partial sort picks the top k (O(n log k)), and the survivors' anchors
// and deltas are gathered for one decode call; then batched NMS and the final rescale/clip/filter. On a
// GPU the scores and their top k are computed there (engine/ops/topk.h), the survivors are gathered and
// decoded there, and only the candidates and their boxes move to the host.
#include "models/retinanet_postprocess.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <utility>

#include "engine/autograd.h"
#include "engine/dispatch.h"
#include "engine/factory.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/shape.h"
#include "engine/ops/topk.h"
#include "engine/transfer.h"
#include "models/nms.h"

namespace icd {
namespace {

void check_inputs(const Tensor& cls_logits, const Tensor& bbox_deltas, const Anchors& anchors,
                  const std::vector<ImageSizes>& images, const RetinaNetPostprocessConfig& config) {
  const std::string op = "postprocess_detections: ";
  op_device("postprocess_detections", {{"cls_logits", cls_logits}, {"bbox_deltas", bbox_deltas}});
  if (anchors.boxes.defined() && anchors.boxes.dtype() != cls_logits.dtype())  // anchors may live on the host
    throw std::invalid_argument(op + "anchors have dtype " + dtype_name(anchors.boxes.dtype()) +
                                " but cls_logits " + dtype_name(cls_logits.dtype()));
  if (cls_logits.dim() != 3 || cls_logits.size(2) == 0)
    throw std::invalid_argument(op + "cls_logits must be [N, R, K] with K > 0, got " +
                                shape_str(cls_logits.shape()));
  const int64_t n = cls_logits.size(0), r = cls_logits.size(1);
  if (bbox_deltas.shape() != Shape{n, r, 4})
    throw std::invalid_argument(op + "bbox_deltas must be [N, R, 4] = " + shape_str({n, r, 4}) + ", got " +
                                shape_str(bbox_deltas.shape()));
  if (anchors.boxes.shape() != Shape{r, 4})
    throw std::invalid_argument(op + "anchors must be [R, 4] = " + shape_str({r, 4}) + ", got " +
                                shape_str(anchors.boxes.shape()));
  int64_t total = 0;
  for (int64_t count : anchors.num_per_level) {
    if (count < 0) throw std::invalid_argument(op + "negative anchor count per level");
    total += count;
  }
  if (total != r)
    throw std::invalid_argument(op + "the anchors' per-level counts sum to " + std::to_string(total) +
                                ", not R = " + std::to_string(r));
  if (static_cast<int64_t>(images.size()) != n)
    throw std::invalid_argument(op + "got sizes for " + std::to_string(images.size()) +
                                " images, predictions for " + std::to_string(n));
  for (const ImageSizes& s : images)
    if (s.input_height <= 0 || s.input_width <= 0 || s.original_height <= 0 || s.original_width <= 0)
      throw std::invalid_argument(op + "image sizes must be positive");
  if (config.topk_candidates <= 0 || config.max_detections <= 0)
    throw std::invalid_argument(op + "topk_candidates and max_detections must be positive");
}

template <class T>
void clip_box(T* box, int64_t height, int64_t width) {
  const T w = static_cast<T>(width), h = static_cast<T>(height);
  box[0] = std::min(std::max(box[0], T(0)), w);
  box[1] = std::min(std::max(box[1], T(0)), h);
  box[2] = std::min(std::max(box[2], T(0)), w);
  box[3] = std::min(std::max(box[3], T(0)), h);
}

// Per level, the candidates of one image: (score, index into the level's anchors x classes), the top
// topk_candidates of those scoring above the threshold, best first (ties: lower index first).
template <class T>
using LevelCandidates = std::vector<std::vector<std::pair<T, int64_t>>>;

// On the host, from logits [R, K] (contiguous rows of T): a threshold pass, then a partial sort.
template <class T>
LevelCandidates<T> host_candidates(const T* logits, int64_t num_classes,
                                   const std::vector<int64_t>& num_per_level,
                                   const RetinaNetPostprocessConfig& config) {
  LevelCandidates<T> out;
  const T threshold = static_cast<T>(config.score_threshold);
  // sigmoid is increasing, so a logit clearly below logit(threshold) cannot pass: skip its exp(). Most
  // logits are confident background, so this skips most of the work. The margin covers rounding.
  const double t = config.score_threshold;
  const double skip_below =
      t > 0.0 && t < 1.0 ? std::log(t / (1.0 - t)) - 1e-3 : -std::numeric_limits<double>::infinity();
  int64_t level_start = 0;  // first anchor of the level
  for (int64_t level_anchors : num_per_level) {
    std::vector<std::pair<T, int64_t>> candidates;  // (score, anchor_in_level * K + class)
    const T* level_logits = logits + level_start * num_classes;
    for (int64_t j = 0; j < level_anchors * num_classes; ++j) {
      if (level_logits[j] < skip_below) continue;
      const T score = T(1) / (T(1) + std::exp(-level_logits[j]));
      if (score > threshold) candidates.emplace_back(score, j);
    }
    auto better = [](const std::pair<T, int64_t>& a, const std::pair<T, int64_t>& b) {
      return a.first > b.first || (a.first == b.first && a.second < b.second);
    };
    const std::size_t k = std::min<std::size_t>(candidates.size(), config.topk_candidates);
    std::partial_sort(candidates.begin(), candidates.begin() + k, candidates.end(), better);
    // A copy of the k kept: the scan's buffer (up to all of the level's scores) is freed level by level.
    out.emplace_back(candidates.begin(), candidates.begin() + static_cast<std::ptrdiff_t>(k));
    level_start += level_anchors;
  }
  return out;
}

// On the logits' GPU, from logits [R, K] of one image: the scores and their top k (engine/ops/topk.h) per
// level stay on the device; only k (score, index) pairs per level come to the host, where those above
// the threshold are kept. The top k of all scores, thresholded, are the top k of the thresholded scores.
template <class T>
LevelCandidates<T> device_candidates(const Tensor& logits, const std::vector<int64_t>& num_per_level,
                                     const RetinaNetPostprocessConfig& config) {
  LevelCandidates<T> out;
  const T threshold = static_cast<T>(config.score_threshold);
  int64_t level_start = 0;
  for (int64_t level_anchors : num_per_level) {
    const Tensor level_logits = logits.narrow(0, level_start, level_anchors);
    const Tensor scores = sigmoid(level_logits.reshape({level_anchors * logits.size(1)}));
    // NaN scores rank first in topk but fail the threshold, which the host applies before ranking: so
    // ask for as many more as there are NaNs among the top, until the top holds k numbers or everything.
    std::vector<T> values;
    std::vector<int64_t> indices;
    for (int64_t k = config.topk_candidates;;) {
      const ValuesIndices top = topk(scores, k);
      values = top.values.template to_vector<T>();
      indices = top.indices.to_vector<int64_t>();
      const int64_t nans = std::count_if(values.begin(), values.end(), [](T v) { return std::isnan(v); });
      if (nans == 0 || k - nans >= config.topk_candidates || k >= scores.numel()) break;
      k = config.topk_candidates + nans;
    }
    std::vector<std::pair<T, int64_t>> candidates;
    for (std::size_t r = 0; r < values.size(); ++r)
      if (values[r] > threshold) candidates.emplace_back(values[r], indices[r]);  // NaN fails
    out.push_back(std::move(candidates));
    level_start += level_anchors;
  }
  return out;
}

// One image's candidates over all levels, in order: score, class and anchor of each.
template <class T>
struct ImageCandidates {
  std::vector<T> scores;
  std::vector<int64_t> labels, anchors;
};

template <class T>
ImageCandidates<T> flatten(const LevelCandidates<T>& levels, int64_t num_classes,
                           const std::vector<int64_t>& num_per_level) {
  ImageCandidates<T> out;
  int64_t level_start = 0;  // first anchor of the level
  for (std::size_t level = 0; level < levels.size(); ++level) {
    for (const auto& [score, j] : levels[level]) {
      out.scores.push_back(score);
      out.labels.push_back(j % num_classes);
      out.anchors.push_back(level_start + j / num_classes);
    }
    level_start += num_per_level[level];
  }
  return out;
}

// One image from its candidates and their decoded boxes [m, 4] (contiguous, on the host).
template <class T>
Detections postprocess_image(const ImageCandidates<T>& candidates, Tensor boxes, const ImageSizes& size,
                             const RetinaNetPostprocessConfig& config) {
  const TensorOptions options{dtype_of<T>()};
  const std::vector<T>& scores = candidates.scores;
  const std::vector<int64_t>& labels = candidates.labels;
  const int64_t m = static_cast<int64_t>(scores.size());
  T* b = boxes.data<T>();
  if (config.clip_before_nms)
    for (int64_t i = 0; i < m; ++i)
      clip_box(b + 4 * i, size.input_height, size.input_width);
  const Tensor kept =
      batched_nms(boxes, from_vector(scores, {m}, options), from_vector(labels, {m}), config.nms_threshold);
  std::vector<int64_t> keep = kept.to_vector<int64_t>();
  if (static_cast<int64_t>(keep.size()) > config.max_detections) keep.resize(config.max_detections);

  const T scale_x =
      static_cast<T>(static_cast<double>(size.original_width) / static_cast<double>(size.input_width));
  const T scale_y =
      static_cast<T>(static_cast<double>(size.original_height) / static_cast<double>(size.input_height));
  std::vector<T> out_boxes, out_scores;
  std::vector<int64_t> out_labels;
  for (int64_t i : keep) {
    T box[4] = {b[4 * i + 0] * scale_x, b[4 * i + 1] * scale_y, b[4 * i + 2] * scale_x,
                b[4 * i + 3] * scale_y};
    if (config.clip_after_rescale) {
      clip_box(box, size.original_height, size.original_width);
      if (!(box[2] - box[0] > T(0) && box[3] - box[1] > T(0))) continue;  // empty after clipping
    }
    out_boxes.insert(out_boxes.end(), box, box + 4);
    out_scores.push_back(scores[i]);
    out_labels.push_back(labels[i]);
  }
  const int64_t d = static_cast<int64_t>(out_scores.size());
  return {from_vector(out_boxes, {d, 4}, options), from_vector(out_scores, {d}, options),
          from_vector(out_labels, {d})};
}

}  // namespace

RetinaNetPostprocessConfig torchvision_postprocess_config() {
  RetinaNetPostprocessConfig config;
  config.max_detections = 300;
  config.clip_before_nms = true;
  config.clip_after_rescale = false;
  return config;
}

std::vector<Detections> postprocess_detections(const Tensor& cls_logits, const Tensor& bbox_deltas,
                                               const Anchors& anchors, const std::vector<ImageSizes>& images,
                                               const RetinaNetPostprocessConfig& config) {
  check_inputs(cls_logits, bbox_deltas, anchors, images, config);
  NoGradGuard no_grad;
  const BoxCoder coder(config.box_coder);
  const int64_t num_anchors = cls_logits.size(1), num_classes = cls_logits.size(2);
  // The scores are the bulk (R x K per image): on a GPU they are ranked there and only the top candidates
  // come to the host. Their boxes are decoded where the predictions live, and NMS, a sequential walk over
  // a few thousand candidates, runs on the host.
  const Device cpu = Device::cpu(), device = cls_logits.device();
  const bool on_gpu = device.is_cuda();
  const Tensor logits = on_gpu ? cls_logits.detach() : cls_logits.detach().contiguous();
  const Tensor deltas = bbox_deltas.detach();
  const Tensor anchor_boxes = to_device(anchors.boxes.detach(), device);
  std::vector<Detections> detections;
  dispatch_floating(logits.dtype(), "postprocess_detections", [&](auto tag) {
    using T = decltype(tag);
    for (int64_t i = 0; i < cls_logits.size(0); ++i) {
      const LevelCandidates<T> levels =
          on_gpu ? device_candidates<T>(logits.select(0, i), anchors.num_per_level, config)
                 : host_candidates<T>(logits.data<T>() + i * num_anchors * num_classes, num_classes,
                                      anchors.num_per_level, config);
      const ImageCandidates<T> candidates = flatten(levels, num_classes, anchors.num_per_level);
      const Tensor rows = to_device(
          from_vector(candidates.anchors, {static_cast<int64_t>(candidates.anchors.size())}), device);
      const Tensor boxes =
          coder.decode(index_select(deltas.select(0, i), 0, rows), index_select(anchor_boxes, 0, rows));
      detections.push_back(
          postprocess_image<T>(candidates, to_device(boxes, cpu).contiguous(), images[i], config));
    }
  });
  return detections;
}

}  // namespace icd
