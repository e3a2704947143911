// Box encoding, decoding and pairwise IoU as loops over rows of four coordinates, running the bodies of
// engine/kernels/box_math.h, which the CUDA kernels run for tensors on a GPU. The arithmetic is written in
// the order of detectron2's Box2BoxTransform and torchvision's BoxCoder (centre = x1 + 0.5 w, corners =
// centre -+ 0.5 w), so f32 results agree with theirs to the last bit or so.
#include "models/box_coder.h"

#include <stdexcept>
#include <string>
#include <vector>

#include "engine/autograd.h"
#include "engine/cpu/strided.h"
#include "engine/cuda_ops.h"
#include "engine/dispatch.h"
#include "engine/factory.h"
#include "engine/kernels/box_math.h"

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

Device check_pair(const char* op, const char* name_a, const Tensor& a, const char* name_b, const Tensor& b) {
  const Device device = op_device(op, {{name_a, a}, {name_b, b}});
  check_boxes(op, name_a, a);
  check_boxes(op, name_b, b);
  return device;
}

kernels::BoxCodingWeights coding_weights(const BoxCoderConfig& config) {
  return {config.weights[0], config.weights[1], config.weights[2], config.weights[3], config.scale_clamp};
}

}  // namespace

BoxCoder::BoxCoder(BoxCoderConfig config) : config_(config) {
  for (double w : config_.weights)
    if (!(w > 0.0)) throw std::invalid_argument("BoxCoder: weights must be > 0, got " + std::to_string(w));
}

Tensor BoxCoder::encode(const Tensor& anchors, const Tensor& boxes) const {
  const char* op = "BoxCoder::encode";
  const Device device = check_pair(op, "anchors", anchors, "boxes", boxes);
  if (anchors.size(0) != boxes.size(0))
    throw std::invalid_argument(std::string(op) + ": anchors " + shape_str(anchors.shape()) + " and boxes " +
                                shape_str(boxes.shape()) + " differ in length");
  Tensor deltas = empty(anchors.shape(), anchors.options());
  const Tensor a = anchors.detach().contiguous(), g = boxes.detach().contiguous();
  if (device.is_cuda()) {
    cuda_ops::encode_boxes(op, coding_weights(config_), a, g, deltas);
    return deltas;
  }
  dispatch_floating(anchors.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
    const T *ap = a.data<T>(), *gp = g.data<T>();
    T* out = deltas.data<T>();
    for (int64_t i = 0; i < a.size(0); ++i)
      kernels::encode_box(coding_weights(config_), ap + 4 * i, gp + 4 * i, out + 4 * i);
  });
  return deltas;
}

Tensor BoxCoder::decode(const Tensor& deltas, const Tensor& anchors) const {
  const char* op = "BoxCoder::decode";
  const Device device = check_pair(op, "deltas", deltas, "anchors", anchors);
  if (anchors.size(0) != deltas.size(0))
    throw std::invalid_argument(std::string(op) + ": deltas " + shape_str(deltas.shape()) + " and anchors " +
                                shape_str(anchors.shape()) + " differ in length");
  Tensor boxes = empty(deltas.shape(), deltas.options());
  const Tensor d = deltas.detach().contiguous(), a = anchors.detach().contiguous();
  if (device.is_cuda()) {
    cuda_ops::decode_boxes(op, coding_weights(config_), d, a, boxes);
    return boxes;
  }
  dispatch_floating(deltas.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
    const T *dp = d.data<T>(), *ap = a.data<T>();
    T* out = boxes.data<T>();
    for (int64_t i = 0; i < d.size(0); ++i)
      kernels::decode_box(coding_weights(config_), dp + 4 * i, ap + 4 * i, out + 4 * i);
  });
  return boxes;
}

Tensor pairwise_iou(const Tensor& a, const Tensor& b) {
  const char* op = "pairwise_iou";
  const Device device = check_pair(op, "a", a, "b", b);
  const int64_t n = a.size(0), m = b.size(0);
  Tensor iou = empty({n, m}, a.options());
  const Tensor ac = a.detach().contiguous(), bc = b.detach().contiguous();
  if (device.is_cuda()) {
    cuda_ops::pairwise_iou(op, ac, bc, iou);
    return iou;
  }
  dispatch_floating(a.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
    const T *ap = ac.data<T>(), *bp = bc.data<T>();
    T* out = iou.data<T>();
    std::vector<T> area_b(m);
    for (int64_t j = 0; j < m; ++j)
      area_b[j] = kernels::box_area(bp + 4 * j);
#pragma omp parallel for schedule(static) if (n * m >= cpu::kParallelGrain)
    for (int64_t i = 0; i < n; ++i) {
      const T* p = ap + 4 * i;
      const T area_a = kernels::box_area(p);
      T* row = out + i * m;
      for (int64_t j = 0; j < m; ++j)
        row[j] = kernels::pairwise_iou_of(p, area_a, bp + 4 * j, area_b[j]);
    }
  });
  return iou;
}

}  // namespace icd
