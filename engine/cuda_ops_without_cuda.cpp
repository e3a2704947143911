// engine/cuda_ops.h for a build without the CUDA backend. No tensor can live on a CUDA device in such a
// build (allocating one fails first, see device_memory_without_cuda.cpp), so these are unreachable from
// the ops; they still refuse clearly, naming the op.
#include <stdexcept>

#include "engine/cuda_ops.h"
#include "engine/dispatch.h"

namespace icd::cuda_ops {

void map_unary(const char* op, kernels::UnaryOpCall, const Tensor&, Tensor&) {
  throw std::runtime_error(no_cuda_backend_message(op));
}
void map_binary(const char* op, kernels::BinaryOpCall, const Tensor&, const Tensor&, Tensor&) {
  throw std::runtime_error(no_cuda_backend_message(op));
}
void where(const char* op, const Tensor&, const Tensor&, const Tensor&, Tensor&) {
  throw std::runtime_error(no_cuda_backend_message(op));
}
void copy(const char* op, const Tensor&, Tensor&) {
  throw std::runtime_error(no_cuda_backend_message(op));
}
void fill(const char* op, Tensor&, double) {
  throw std::runtime_error(no_cuda_backend_message(op));
}
void sum(const char* op, const Tensor&, const std::vector<bool>&, Tensor&) {
  throw std::runtime_error(no_cuda_backend_message(op));
}
void sine_position_embedding(const char* op, const kernels::PositionLevels&, const Tensor&, Tensor&) {
  throw std::runtime_error(no_cuda_backend_message(op));
}
void topk(const char* op, const Tensor&, int64_t, Tensor&, Tensor&) {
  throw std::runtime_error(no_cuda_backend_message(op));
}

void sgd_update(const char* op, const kernels::SgdUpdate<double>&, Tensor&, const Tensor&, Tensor*) {
  throw std::runtime_error(no_cuda_backend_message(op));
}
void adamw_update(const char* op, const kernels::AdamWUpdate<double>&, Tensor&, const Tensor&, Tensor&,
                  Tensor&) {
  throw std::runtime_error(no_cuda_backend_message(op));
}
void clip_by_value(const char* op, Tensor&, double) {
  throw std::runtime_error(no_cuda_backend_message(op));
}

void gemm(const char* op, bool, bool, int64_t, int64_t, int64_t, const Tensor&, int64_t,
          const std::vector<int64_t>&, const Tensor&, int64_t, const std::vector<int64_t>&, double, Tensor&) {
  throw std::runtime_error(no_cuda_backend_message(op));
}
void conv2d_forward(const char* op, const Tensor&, const Tensor&, const Tensor&, const Conv2dOptions&,
                    Tensor&) {
  throw std::runtime_error(no_cuda_backend_message(op));
}
void conv2d_backward_data(const char* op, const Tensor&, const Tensor&, const Conv2dOptions&, Tensor&) {
  throw std::runtime_error(no_cuda_backend_message(op));
}
void conv2d_backward_filter(const char* op, const Tensor&, const Tensor&, const Conv2dOptions&, Tensor&) {
  throw std::runtime_error(no_cuda_backend_message(op));
}

void max_pool2d(const char* op, const kernels::PoolGeometry&, const Tensor&, Tensor&, Tensor*) {
  throw std::runtime_error(no_cuda_backend_message(op));
}
void max_pool2d_backward(const char* op, const kernels::PoolGeometry&, const Tensor&, const Tensor&,
                         Tensor&) {
  throw std::runtime_error(no_cuda_backend_message(op));
}
void avg_pool2d(const char* op, const kernels::PoolGeometry&, const Tensor&, Tensor&) {
  throw std::runtime_error(no_cuda_backend_message(op));
}
void avg_pool2d_backward(const char* op, const kernels::PoolGeometry&, const Tensor&, Tensor&) {
  throw std::runtime_error(no_cuda_backend_message(op));
}
void upsample_nearest2d(const char* op, const kernels::ResizeGeometry&, const Tensor&, Tensor&) {
  throw std::runtime_error(no_cuda_backend_message(op));
}
void upsample_nearest2d_backward(const char* op, const kernels::ResizeGeometry&, const Tensor&, Tensor&) {
  throw std::runtime_error(no_cuda_backend_message(op));
}
void interpolate_bilinear(const char* op, const kernels::ResizeGeometry&, const Tensor&, Tensor&) {
  throw std::runtime_error(no_cuda_backend_message(op));
}
void interpolate_bilinear_backward(const char* op, const kernels::ResizeGeometry&, const Tensor&, Tensor&) {
  throw std::runtime_error(no_cuda_backend_message(op));
}

void extreme_along(const char* op, const Tensor&, const kernels::LaneLayout&, bool, Tensor*, Tensor&) {
  throw std::runtime_error(no_cuda_backend_message(op));
}
void scatter_along(const char* op, const Tensor&, const Tensor&, const kernels::LaneLayout&, Tensor&) {
  throw std::runtime_error(no_cuda_backend_message(op));
}
void logsumexp(const char* op, const Tensor&, const kernels::LaneLayout&, Tensor&) {
  throw std::runtime_error(no_cuda_backend_message(op));
}
void softmax(const char* op, const Tensor&, const kernels::LaneLayout&, bool, Tensor&) {
  throw std::runtime_error(no_cuda_backend_message(op));
}
void softmax_backward(const char* op, const Tensor&, const Tensor&, const kernels::LaneLayout&, bool,
                      Tensor&) {
  throw std::runtime_error(no_cuda_backend_message(op));
}

void pointwise_loss(const char* op, const kernels::PointwiseLossCall&, const Tensor&, const Tensor&,
                    const Tensor&, double, Tensor&, Tensor&, Tensor&, Tensor&, Tensor&) {
  throw std::runtime_error(no_cuda_backend_message(op));
}
void cross_entropy(const char* op, const Tensor&, const Tensor&, std::optional<int64_t>, double, Tensor&,
                   Tensor&, Tensor&) {
  throw std::runtime_error(no_cuda_backend_message(op));
}

void index_select(const char* op, const Tensor&, const Tensor&, int64_t, int64_t, Tensor&) {
  throw std::runtime_error(no_cuda_backend_message(op));
}
void index_select_backward(const char* op, const Tensor&, const Tensor&, const Tensor&, int64_t, int64_t,
                           Tensor&) {
  throw std::runtime_error(no_cuda_backend_message(op));
}
void gather(const char* op, const Tensor&, int64_t, const Tensor&, Tensor&) {
  throw std::runtime_error(no_cuda_backend_message(op));
}
void segment_sum(const char* op, const Tensor&, const Tensor&, const Tensor&, Tensor&) {
  throw std::runtime_error(no_cuda_backend_message(op));
}

void batch_norm_forward(const char* op, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                        const Tensor&, bool, double, double, Tensor&, Tensor&) {
  throw std::runtime_error(no_cuda_backend_message(op));
}
void batch_norm_backward(const char* op, const Tensor&, const Tensor&, const Tensor&, const Tensor&, bool,
                         Tensor&, Tensor&, Tensor&) {
  throw std::runtime_error(no_cuda_backend_message(op));
}
void group_norm_forward(const char* op, const Tensor&, int64_t, const Tensor&, const Tensor&, double, Tensor&,
                        Tensor&) {
  throw std::runtime_error(no_cuda_backend_message(op));
}
void group_norm_backward(const char* op, const Tensor&, int64_t, const Tensor&, const Tensor&, const Tensor&,
                         Tensor&, Tensor&, Tensor&) {
  throw std::runtime_error(no_cuda_backend_message(op));
}
void layer_norm_forward(const char* op, const Tensor&, int64_t, const Tensor&, const Tensor&, double, Tensor&,
                        Tensor&) {
  throw std::runtime_error(no_cuda_backend_message(op));
}
void layer_norm_backward(const char* op, const Tensor&, int64_t, const Tensor&, const Tensor&, const Tensor&,
                         Tensor&, Tensor&, Tensor&) {
  throw std::runtime_error(no_cuda_backend_message(op));
}

void pairwise_iou(const char* op, const Tensor&, const Tensor&, Tensor&) {
  throw std::runtime_error(no_cuda_backend_message(op));
}
void encode_boxes(const char* op, const kernels::BoxCodingWeights&, const Tensor&, const Tensor&, Tensor&) {
  throw std::runtime_error(no_cuda_backend_message(op));
}
void decode_boxes(const char* op, const kernels::BoxCodingWeights&, const Tensor&, const Tensor&, Tensor&) {
  throw std::runtime_error(no_cuda_backend_message(op));
}
void match_anchors(const char* op, const Tensor&, const kernels::MatchThresholds<double>&, Tensor&, Tensor&) {
  throw std::runtime_error(no_cuda_backend_message(op));
}
void select_anchors(const char* op, const Tensor&, const Tensor&, const Tensor&, DType, Tensor&, Tensor&,
                    Tensor&, Tensor&) {
  throw std::runtime_error(no_cuda_backend_message(op));
}
std::vector<int64_t> nms_sorted(const char* op, const Tensor&, const Tensor&, double) {
  throw std::runtime_error(no_cuda_backend_message(op));
}

}  // namespace icd::cuda_ops
