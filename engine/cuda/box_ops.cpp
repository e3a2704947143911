// engine/cuda_ops.h for box geometry: each entry point checks what its kernel assumes (contiguous
// operands, i64 indices) and hands element pointers to engine/cuda/box_kernels.h.
#include <stdexcept>
#include <string>

#include "engine/cuda/box_kernels.h"
#include "engine/cuda_ops.h"
#include "engine/factory.h"

namespace icd::cuda_ops {
namespace {

void require_contiguous(const char* op, const char* name, const Tensor& t) {
  if (!t.is_contiguous())
    throw std::invalid_argument(std::string(op) + " (CUDA): " + name + " must be contiguous");
}

void require_i64(const char* op, const char* name, const Tensor& t) {
  if (t.dtype() != DType::i64)
    throw std::invalid_argument(std::string(op) + " (CUDA): " + name + " must be i64, got " +
                                dtype_name(t.dtype()));
  require_contiguous(op, name, t);
}

const int64_t* indices_of(const Tensor& t) {
  return static_cast<const int64_t*>(t.raw_data());
}

int64_t* indices_of(Tensor& t) {
  return static_cast<int64_t*>(t.raw_data());
}

}  // namespace

void pairwise_iou(const char* op, const Tensor& a, const Tensor& b, Tensor& iou) {
  require_contiguous(op, "a", a);
  require_contiguous(op, "b", b);
  require_contiguous(op, "iou", iou);
  cuda::cuda_pairwise_iou(op, a.dtype(), a.raw_data(), a.size(0), b.raw_data(), b.size(0), iou.raw_data(),
                          iou.device().index);
}

void encode_boxes(const char* op, const kernels::BoxCodingWeights& weights, const Tensor& anchors,
                  const Tensor& boxes, Tensor& deltas) {
  require_contiguous(op, "anchors", anchors);
  require_contiguous(op, "boxes", boxes);
  require_contiguous(op, "deltas", deltas);
  cuda::cuda_encode_boxes(op, anchors.dtype(), weights, anchors.raw_data(), boxes.raw_data(), anchors.size(0),
                          deltas.raw_data(), deltas.device().index);
}

void decode_boxes(const char* op, const kernels::BoxCodingWeights& weights, const Tensor& deltas,
                  const Tensor& anchors, Tensor& boxes) {
  require_contiguous(op, "deltas", deltas);
  require_contiguous(op, "anchors", anchors);
  require_contiguous(op, "boxes", boxes);
  cuda::cuda_decode_boxes(op, deltas.dtype(), weights, deltas.raw_data(), anchors.raw_data(), deltas.size(0),
                          boxes.raw_data(), boxes.device().index);
}

void match_anchors(const char* op, const Tensor& iou, const kernels::MatchThresholds<double>& thresholds,
                   Tensor& matched, Tensor& labels) {
  require_contiguous(op, "iou", iou);
  require_i64(op, "matched", matched);
  require_i64(op, "labels", labels);
  cuda::cuda_match_anchors(op, iou.dtype(), iou.raw_data(), iou.size(0), iou.size(1),
                           thresholds.background_below, thresholds.foreground_from,
                           thresholds.allow_low_quality_matches, indices_of(matched), indices_of(labels),
                           iou.device().index);
}

void select_anchors(const char* op, const Tensor& labels, const Tensor& matched, const Tensor& box_classes,
                    DType class_dtype, Tensor& kept, Tensor& kept_classes, Tensor& foreground,
                    Tensor& foreground_boxes) {
  require_i64(op, "labels", labels);
  require_i64(op, "matched", matched);
  require_i64(op, "box_classes", box_classes);
  const Device device = labels.device();
  const int64_t num_anchors = labels.numel();
  // Room for every anchor in each list; the counts then say how much of it was written.
  kept = empty({num_anchors}, {DType::i64, device});
  kept_classes = empty({num_anchors}, {class_dtype, device});
  foreground = empty({num_anchors}, {DType::i64, device});
  foreground_boxes = empty({num_anchors}, {DType::i64, device});
  const cuda::AnchorSelectionCounts counts = cuda::cuda_select_anchors(
      op, class_dtype, indices_of(labels), indices_of(matched), indices_of(box_classes), num_anchors,
      indices_of(kept), kept_classes.raw_data(), indices_of(foreground), indices_of(foreground_boxes),
      device.index);
  kept = kept.narrow(0, 0, counts.kept);
  kept_classes = kept_classes.narrow(0, 0, counts.kept);
  foreground = foreground.narrow(0, 0, counts.foreground);
  foreground_boxes = foreground_boxes.narrow(0, 0, counts.foreground);
}

std::vector<int64_t> nms_sorted(const char* op, const Tensor& sorted_boxes, const Tensor& sorted_classes,
                                double iou_threshold) {
  require_contiguous(op, "boxes", sorted_boxes);
  require_i64(op, "classes", sorted_classes);
  return cuda::cuda_nms_sorted(op, sorted_boxes.dtype(), sorted_boxes.raw_data(), indices_of(sorted_classes),
                               sorted_boxes.size(0), iou_threshold, sorted_boxes.device().index);
}

}  // namespace icd::cuda_ops
