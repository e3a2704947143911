// Greedy NMS over the score order. Instead of torchvision's "each kept box suppresses the rest forward",
// each candidate is compared backward against the boxes already kept of its class: the same decisions
// (a box is dropped exactly when an earlier kept box overlaps it too much), but the inner loop runs over
// the kept boxes only, and per class, which makes class-aware NMS a by-product rather than a trick.
#include "models/nms.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

#include "engine/dispatch.h"
#include "engine/factory.h"

namespace icd {
namespace {

void check_inputs(const char* op, const Tensor& boxes, const Tensor& scores) {
  require_cpu(op, {{"boxes", boxes}, {"scores", scores}});
  if (boxes.dim() != 2 || boxes.size(1) != 4)
    throw std::invalid_argument(std::string(op) + ": boxes must be [n, 4], got " + shape_str(boxes.shape()));
  if (scores.dim() != 1 || scores.size(0) != boxes.size(0))
    throw std::invalid_argument(std::string(op) + ": scores must be [n] for boxes " +
                                shape_str(boxes.shape()) + ", got " + shape_str(scores.shape()));
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
    areas[i] = (bp[4 * i + 2] - bp[4 * i + 0]) * (bp[4 * i + 3] - bp[4 * i + 1]);

  std::map<int64_t, std::vector<int64_t>> kept_per_class;
  std::vector<int64_t> keep;
  for (int64_t i : order) {
    std::vector<int64_t>& kept = kept_per_class[classes[i]];
    const T* p = bp + 4 * i;
    bool suppressed = false;
    for (int64_t j : kept) {
      const T* q = bp + 4 * j;
      const T w = std::max(T(0), std::min(q[2], p[2]) - std::max(q[0], p[0]));
      const T h = std::max(T(0), std::min(q[3], p[3]) - std::max(q[1], p[1]));
      const T inter = w * h;
      const T overlap = inter / (areas[j] + areas[i] - inter);  // the kept box first, as torchvision
      if (overlap > iou_threshold) {
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

Tensor run(const char* op, const Tensor& boxes, const Tensor& scores, const std::vector<int64_t>& classes,
           double iou_threshold) {
  const std::vector<int64_t> keep = dispatch_floating(boxes.dtype(), op, [&](auto tag) {
    return greedy_nms<decltype(tag)>(boxes, scores, classes, iou_threshold);
  });
  return from_vector(keep, {static_cast<int64_t>(keep.size())});
}

}  // namespace

Tensor nms(const Tensor& boxes, const Tensor& scores, double iou_threshold) {
  check_inputs("nms", boxes, scores);
  return run("nms", boxes, scores, std::vector<int64_t>(boxes.size(0), 0), iou_threshold);
}

Tensor batched_nms(const Tensor& boxes, const Tensor& scores, const Tensor& classes, double iou_threshold) {
  check_inputs("batched_nms", boxes, scores);
  if (classes.dtype() != DType::i64 || classes.dim() != 1 || classes.size(0) != boxes.size(0))
    throw std::invalid_argument("batched_nms: classes must be i64 [n] for boxes " + shape_str(boxes.shape()) +
                                ", got " + dtype_name(classes.dtype()) + " " + shape_str(classes.shape()));
  return run("batched_nms", boxes, scores, classes.to_vector<int64_t>(), iou_threshold);
}

}  // namespace icd
