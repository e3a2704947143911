// Greedy NMS over the score order. On the CPU, instead of torchvision's "each kept box suppresses the
// rest forward", each candidate is compared backward against the boxes already kept of its class: the
// same decisions (a box is dropped exactly when an earlier kept box overlaps it too much), but the inner
// loop runs over the kept boxes only, and per class, which makes class-aware NMS a by-product rather
// than a trick. On a GPU every pair's overlap is computed at once into a suppression mask (torchvision's
// CUDA kernel), and the same greedy decisions are then read off the mask in one pass on the host
// (engine/kernels/box_math.h). Both compute the overlap with one body, kernels::nms_overlap.
#include "models/nms.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

#include "engine/cuda_ops.h"
#include "engine/dispatch.h"
#include "engine/factory.h"
#include "engine/kernels/box_math.h"
#include "engine/ops/shape.h"
#include "engine/ops/topk.h"
#include "engine/transfer.h"

namespace icd {
namespace {

Device check_inputs(const char* op, const Tensor& boxes, const Tensor& scores) {
  const Device device = op_device(op, {{"boxes", boxes}, {"scores", scores}});
  if (boxes.dim() != 2 || boxes.size(1) != 4)
    throw std::invalid_argument(std::string(op) + ": boxes must be [n, 4], got " + shape_str(boxes.shape()));
  if (scores.dim() != 1 || scores.size(0) != boxes.size(0))
    throw std::invalid_argument(std::string(op) + ": scores must be [n] for boxes " +
                                shape_str(boxes.shape()) + ", got " + shape_str(scores.shape()));
  return device;
}

// classes: one id per box (all 0 for plain NMS).
template <class T>
std::vector<int64_t> greedy_nms(const Tensor& boxes, const Tensor& scores,
                                const std::vector<int64_t>& classes, double iou_threshold) {
  const Tensor b = boxes.contiguous(), s = scores.contiguous();
  const T *bp = b.data<T>(), *sp = s.data<T>();
  const int64_t n = b.size(0);
  for (int64_t i = 0; i < n; ++i)
    if (std::isnan(sp[i])) throw std::invalid_argument("nms: score " + std::to_string(i) + " is NaN");

  std::vector<int64_t> order(n);
  std::iota(order.begin(), order.end(), int64_t{0});
  std::stable_sort(order.begin(), order.end(), [&](int64_t i, int64_t j) { return sp[i] > sp[j]; });
  std::vector<T> areas(n);
  for (int64_t i = 0; i < n; ++i)
    areas[i] = kernels::box_area(bp + 4 * i);

  std::map<int64_t, std::vector<int64_t>> kept_per_class;
  std::vector<int64_t> keep;
  for (int64_t i : order) {
    std::vector<int64_t>& kept = kept_per_class[classes[i]];
    bool suppressed = false;
    for (int64_t j : kept) {
      if (kernels::nms_overlap(bp + 4 * j, areas[j], bp + 4 * i, areas[i]) > iou_threshold) {
        suppressed = true;
        break;
      }
    }
    if (!suppressed) {
      kept.push_back(i);
      keep.push_back(i);
    }
  }
  return keep;
}

// On a GPU: the score order from topk (a stable descending sort, as the CPU's), the boxes and classes
// gathered into it, then the suppression mask built there and walked on the host. The kept indices
// go back to the boxes' device.
Tensor run_on_device(const char* op, const Tensor& boxes, const Tensor& scores, const Tensor& classes,
                     double iou_threshold) {
  const int64_t n = boxes.size(0);
  if (n == 0) return empty({0}, {DType::i64, boxes.device()});
  const ValuesIndices sorted = topk(scores.detach(), n);
  if (std::isnan(sorted.values.narrow(0, 0, 1).item()))  // NaN ranks first
    throw std::invalid_argument(std::string(op) + ": a score is NaN");
  const std::vector<int64_t> positions =
      cuda_ops::nms_sorted(op, index_select(boxes.detach(), 0, sorted.indices).contiguous(),
                           index_select(classes, 0, sorted.indices).contiguous(), iou_threshold);
  const std::vector<int64_t> order = sorted.indices.to_vector<int64_t>();
  std::vector<int64_t> keep(positions.size());
  for (std::size_t k = 0; k < positions.size(); ++k)
    keep[k] = order[static_cast<std::size_t>(positions[k])];
  return to_device(from_vector(keep, {static_cast<int64_t>(keep.size())}), boxes.device());
}

Tensor run(const char* op, const Tensor& boxes, const Tensor& scores, const std::vector<int64_t>& classes,
           double iou_threshold) {
  const std::vector<int64_t> keep = dispatch_floating(boxes.dtype(), op, [&](auto tag) {
    return greedy_nms<decltype(tag)>(boxes, scores, classes, iou_threshold);
  });
  return from_vector(keep, {static_cast<int64_t>(keep.size())});
}

}  // namespace

Tensor nms(const Tensor& boxes, const Tensor& scores, double iou_threshold) {
  const Device device = check_inputs("nms", boxes, scores);
  if (device.is_cuda())
    return run_on_device("nms", boxes, scores, zeros({boxes.size(0)}, {DType::i64, device}), iou_threshold);
  return run("nms", boxes, scores, std::vector<int64_t>(boxes.size(0), 0), iou_threshold);
}

Tensor batched_nms(const Tensor& boxes, const Tensor& scores, const Tensor& classes, double iou_threshold) {
  const Device device = check_inputs("batched_nms", boxes, scores);
  if (classes.dtype() != DType::i64 || classes.dim() != 1 || classes.size(0) != boxes.size(0))
    throw std::invalid_argument("batched_nms: classes must be i64 [n] for boxes " + shape_str(boxes.shape()) +
                                ", got " + dtype_name(classes.dtype()) + " " + shape_str(classes.shape()));
  if (classes.device() != device)
    throw std::invalid_argument("batched_nms: classes are on " + classes.device().str() + ", boxes on " +
                                device.str());
  if (device.is_cuda()) return run_on_device("batched_nms", boxes, scores, classes, iou_threshold);
  return run("batched_nms", boxes, scores, classes.to_vector<int64_t>(), iou_threshold);
}

}  // namespace icd
