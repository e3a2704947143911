// Box encoding, decoding and pairwise IoU as loops over rows of four coordinates. The arithmetic is
// written in the same order as detectron2's Box2BoxTransform and torchvision's BoxCoder (centre =
// x1 + 0.5 w, corners = centre -+ 0.5 w), so f32 results agree with theirs to the last bit or so.
#include "models/box_coder.h"

#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

#include "engine/autograd.h"
#include "engine/cpu/strided.h"
#include "engine/dispatch.h"
#include "engine/factory.h"

namespace icd {
namespace {

void check_boxes(const char* op, const char* name, const Tensor& t) {
  if (t.dim() != 2 || t.size(1) != 4)
    throw std::invalid_argument(std::string(op) + ": " + name + " must be [M, 4], got " +
                                shape_str(t.shape()));
  if (autograd::grad_enabled() && t.requires_grad())
    throw std::invalid_argument(
        std::string(op) + ": " + name +
        " requires grad, but box coding builds no graph; detach it or use a NoGradGuard");
}

void check_pair(const char* op, const char* name_a, const Tensor& a, const char* name_b, const Tensor& b) {
  require_cpu(op, {{name_a, a}, {name_b, b}});
  check_boxes(op, name_a, a);
  check_boxes(op, name_b, b);
}

template <class T>
struct CentreSize {
  T cx, cy, w, h;
};

template <class T>
CentreSize<T> centre_size(const T* box) {
  const T w = box[2] - box[0], h = box[3] - box[1];
  return {box[0] + T(0.5) * w, box[1] + T(0.5) * h, w, h};
}

}  // namespace

BoxCoder::BoxCoder(BoxCoderConfig config) : config_(config) {
  for (double w : config_.weights)
    if (!(w > 0.0)) throw std::invalid_argument("BoxCoder: weights must be > 0, got " + std::to_string(w));
}

Tensor BoxCoder::encode(const Tensor& anchors, const Tensor& boxes) const {
  const char* op = "BoxCoder::encode";
  check_pair(op, "anchors", anchors, "boxes", boxes);
  if (anchors.size(0) != boxes.size(0))
    throw std::invalid_argument(std::string(op) + ": anchors " + shape_str(anchors.shape()) + " and boxes " +
                                shape_str(boxes.shape()) + " differ in length");
  Tensor deltas = empty(anchors.shape(), anchors.options());
  dispatch_floating(anchors.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
    const Tensor a = anchors.contiguous(), g = boxes.contiguous();
    const T *ap = a.data<T>(), *gp = g.data<T>();
    T* out = deltas.data<T>();
    const T wx = T(config_.weights[0]), wy = T(config_.weights[1]), ww = T(config_.weights[2]),
            wh = T(config_.weights[3]);
    for (int64_t i = 0; i < a.size(0); ++i) {
      const CentreSize<T> anchor = centre_size(ap + 4 * i), box = centre_size(gp + 4 * i);
      out[4 * i + 0] = wx * (box.cx - anchor.cx) / anchor.w;
      out[4 * i + 1] = wy * (box.cy - anchor.cy) / anchor.h;
      out[4 * i + 2] = ww * std::log(box.w / anchor.w);
      out[4 * i + 3] = wh * std::log(box.h / anchor.h);
    }
  });
  return deltas;
}

Tensor BoxCoder::decode(const Tensor& deltas, const Tensor& anchors) const {
  const char* op = "BoxCoder::decode";
  check_pair(op, "deltas", deltas, "anchors", anchors);
  if (anchors.size(0) != deltas.size(0))
    throw std::invalid_argument(std::string(op) + ": deltas " + shape_str(deltas.shape()) + " and anchors " +
                                shape_str(anchors.shape()) + " differ in length");
  Tensor boxes = empty(deltas.shape(), deltas.options());
  dispatch_floating(deltas.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
    const Tensor d = deltas.contiguous(), a = anchors.contiguous();
    const T *dp = d.data<T>(), *ap = a.data<T>();
    T* out = boxes.data<T>();
    const T wx = T(config_.weights[0]), wy = T(config_.weights[1]), ww = T(config_.weights[2]),
            wh = T(config_.weights[3]), clamp = T(config_.scale_clamp);
    for (int64_t i = 0; i < d.size(0); ++i) {
      const CentreSize<T> anchor = centre_size(ap + 4 * i);
      const T* delta = dp + 4 * i;
      const T dw = std::min(delta[2] / ww, clamp), dh = std::min(delta[3] / wh, clamp);
      const T cx = delta[0] / wx * anchor.w + anchor.cx, cy = delta[1] / wy * anchor.h + anchor.cy;
      const T w = std::exp(dw) * anchor.w, h = std::exp(dh) * anchor.h;
      out[4 * i + 0] = cx - T(0.5) * w;
      out[4 * i + 1] = cy - T(0.5) * h;
      out[4 * i + 2] = cx + T(0.5) * w;
      out[4 * i + 3] = cy + T(0.5) * h;
    }
  });
  return boxes;
}

Tensor pairwise_iou(const Tensor& a, const Tensor& b) {
  const char* op = "pairwise_iou";
  check_pair(op, "a", a, "b", b);
  const int64_t n = a.size(0), m = b.size(0);
  Tensor iou = empty({n, m}, a.options());
  dispatch_floating(a.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
    const Tensor ac = a.contiguous(), bc = b.contiguous();
    const T *ap = ac.data<T>(), *bp = bc.data<T>();
    T* out = iou.data<T>();
    std::vector<T> area_b(m);
    for (int64_t j = 0; j < m; ++j)
      area_b[j] = (bp[4 * j + 2] - bp[4 * j + 0]) * (bp[4 * j + 3] - bp[4 * j + 1]);
#pragma omp parallel for schedule(static) if (n * m >= cpu::kParallelGrain)
    for (int64_t i = 0; i < n; ++i) {
      const T* p = ap + 4 * i;
      const T area_a = (p[2] - p[0]) * (p[3] - p[1]);
      T* row = out + i * m;
      for (int64_t j = 0; j < m; ++j) {
        const T* q = bp + 4 * j;
        const T w = std::max(std::min(p[2], q[2]) - std::max(p[0], q[0]), T(0));
        const T h = std::max(std::min(p[3], q[3]) - std::max(p[1], q[1]), T(0));
        const T inter = w * h;
        row[j] = inter > T(0) ? inter / (area_a + area_b[j] - inter) : T(0);
      }
    }
  });
  return iou;
}

}  // namespace icd
