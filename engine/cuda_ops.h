// The CUDA backend as the ops see it: tensor-level entry points that the ops in engine/ops/ call once
// op_device() has said their tensors live on a CUDA device. Declared for every build: engine/cuda/
// tensor_ops.cpp implements them with the strided kernels (engine/cuda/strided_kernels.h), and
// engine/cuda_ops_without_cuda.cpp, in a build without CUDA, throws naming the op and saying the build
// has no CUDA (unreachable in practice: no CUDA tensor can be made in such a build).
//
// Contract of every entry point: all tensors are on one CUDA device (the caller checked); `op` names the
// calling op in errors; inputs broadcast (NumPy rules, already checked by the caller) to the shape of
// `out`, which is written, may have any strides, and may be the first input itself (in-place updates)
// but must not otherwise overlap an input. Work is queued on the device's stream; results are visible
// to later work on it and to copies back to the host (engine/transfer.h).
#pragma once
#include <optional>
#include <vector>

#include "engine/kernels/binary_op.h"
#include "engine/kernels/box_math.h"
#include "engine/kernels/loss_math.h"
#include "engine/kernels/optimizer_math.h"
#include "engine/kernels/pool_math.h"
#include "engine/kernels/position_math.h"
#include "engine/kernels/reduce_dim.h"
#include "engine/kernels/resize_math.h"
#include "engine/kernels/unary_op.h"
#include "engine/ops/conv.h"
#include "engine/tensor.h"

namespace icd::cuda_ops {

// out = f(x), f32 or f64.
void map_unary(const char* op, kernels::UnaryOpCall call, const Tensor& x, Tensor& out);
// out = f(a, b), f32 or f64.
void map_binary(const char* op, kernels::BinaryOpCall call, const Tensor& a, const Tensor& b, Tensor& out);
// out = condition != 0 ? a : b.
void where(const char* op, const Tensor& condition, const Tensor& a, const Tensor& b, Tensor& out);
// out = src, converted to out's dtype (f32, f64, i64 among themselves; f16, bf16 to themselves).
void copy(const char* op, const Tensor& src, Tensor& out);
// out = value everywhere (f32, f64, i64).
void fill(const char* op, Tensor& out, double value);
// out (contiguous, x's shape with the `reduced` dimensions set to 1) = the sum of x over them, in a
// fixed order (kernels::plan_sum), accumulating in double.
void sum(const char* op, const Tensor& x, const std::vector<bool>& reduced, Tensor& out);

// The optimizers' fused updates (engine/kernels/optimizer_math.h), in place, over contiguous tensors of
// one shape: param and momentum_buffer (nullptr without momentum) from grad.
void sgd_update(const char* op, const kernels::SgdUpdate<double>& update, Tensor& param, const Tensor& grad,
                Tensor* momentum_buffer);
void adamw_update(const char* op, const kernels::AdamWUpdate<double>& update, Tensor& param,
                  const Tensor& grad, Tensor& exp_avg, Tensor& exp_avg_sq);
// grad = clamp(grad, -clip_value, clip_value), contiguous, in place.
void clip_by_value(const char* op, Tensor& grad, double clip_value);

// The matrix products of engine/ops/matmul.cpp on cuBLAS (engine/cuda/blas.h): for i in
// [0, a_offsets.size()), the row-major product  c_i = op(a_i) op(b_i) + beta c_i,  op(a_i) M x K,
// op(b_i) K x N, where a_i is the matrix at element offset a_offsets[i] from a's first element, stored
// row-major with row stride lda, or transposed (trans_a) as engine/cpu/gemm.h describes; likewise b_i.
// c is contiguous and holds the products one after another (c_i at i M N, row stride N). f32 or f64;
// beta 0 or 1 (1 adds onto c, e.g. a bias written there first). Products whose offsets are equally
// spaced go to cuBLAS in one strided-batched call (kernels::plan_gemm_runs).
void gemm(const char* op, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const Tensor& a,
          int64_t lda, const std::vector<int64_t>& a_offsets, const Tensor& b, int64_t ldb,
          const std::vector<int64_t>& b_offsets, double beta, Tensor& c);

// conv2d on cuDNN (engine/cuda/cudnn_conv.h), NCHW, f32 or f64, every tensor contiguous, shapes already
// checked by conv2d (engine/ops/conv.h). Each writes (overwrites) its last argument:
//   y [N, C_out, OH, OW] = conv(x, weight) + bias (bias [C_out], or undefined for none);
//   dx (x's shape)       = dL/dx for the output gradient dy;
//   dweight              = dL/dweight, summed over the batch.
void conv2d_forward(const char* op, const Tensor& x, const Tensor& weight, const Tensor& bias,
                    const Conv2dOptions& options, Tensor& y);
void conv2d_backward_data(const char* op, const Tensor& dy, const Tensor& weight,
                          const Conv2dOptions& options, Tensor& dx);
void conv2d_backward_filter(const char* op, const Tensor& x, const Tensor& dy, const Conv2dOptions& options,
                            Tensor& dweight);

// Pooling and resizing (engine/ops/pool.cpp, resize.cpp; engine/cuda/nn_ops.cpp) over the [planes, H, W]
// of contiguous tensors shaped as the geometry says (engine/kernels/pool_math.h, resize_math.h). Each
// writes (overwrites) every element of its output; the backward ones write the whole input gradient.
// argmax (i64, out's shape; nullptr when no gradient is wanted) records each maximum's offset in its plane.
void max_pool2d(const char* op, const kernels::PoolGeometry& g, const Tensor& x, Tensor& out, Tensor* argmax);
void max_pool2d_backward(const char* op, const kernels::PoolGeometry& g, const Tensor& grad_out,
                         const Tensor& argmax, Tensor& grad_x);
void avg_pool2d(const char* op, const kernels::PoolGeometry& g, const Tensor& x, Tensor& out);
void avg_pool2d_backward(const char* op, const kernels::PoolGeometry& g, const Tensor& grad_out,
                         Tensor& grad_x);
void upsample_nearest2d(const char* op, const kernels::ResizeGeometry& g, const Tensor& x, Tensor& out);
void upsample_nearest2d_backward(const char* op, const kernels::ResizeGeometry& g, const Tensor& grad_out,
                                 Tensor& grad_x);
void interpolate_bilinear(const char* op, const kernels::ResizeGeometry& g, const Tensor& x, Tensor& out);
void interpolate_bilinear_backward(const char* op, const kernels::ResizeGeometry& g, const Tensor& grad_out,
                                   Tensor& grad_x);

// Reductions along one dimension of x (contiguous, seen as [outer, n, inner] by `layout`; see
// engine/kernels/reduce_dim.h), outputs contiguous: per-lane results [outer, inner], per-element ones x's
// size. Deterministic (fixed trees, no atomics).
// The largest (is_max) or smallest element of each lane and its first index; values may be nullptr.
void extreme_along(const char* op, const Tensor& x, const kernels::LaneLayout& layout, bool is_max,
                   Tensor* values, Tensor& indices);
// dx = g at the saved indices along the lane, 0 elsewhere (the backward of max/min along a dimension).
void scatter_along(const char* op, const Tensor& g, const Tensor& indices, const kernels::LaneLayout& layout,
                   Tensor& dx);
void logsumexp(const char* op, const Tensor& x, const kernels::LaneLayout& layout, Tensor& out);
// y = softmax (log false) or log_softmax (log true) along the lanes, and dx from g and the saved y.
void softmax(const char* op, const Tensor& x, const kernels::LaneLayout& layout, bool log, Tensor& y);
void softmax_backward(const char* op, const Tensor& g, const Tensor& y, const kernels::LaneLayout& layout,
                      bool log, Tensor& dx);

// The fused losses (engine/kernels/loss_math.h) over contiguous tensors. An undefined output is not
// written. pointwise_loss: input, target, weight (undefined: 1) of one shape; `losses` (f64) gets each
// element's weighted loss for the caller's reduction. cross_entropy: logits [N, C], target i64 [N]
// (labels checked by the caller), per_row [N], row_losses f64 [N], d_logits [N, C] times scale.
void pointwise_loss(const char* op, const kernels::PointwiseLossCall& call, const Tensor& input,
                    const Tensor& target, const Tensor& weight, double scale, Tensor& per_element,
                    Tensor& losses, Tensor& d_input, Tensor& d_target, Tensor& d_weight);
void cross_entropy(const char* op, const Tensor& logits, const Tensor& target,
                   std::optional<int64_t> ignore_index, double scale, Tensor& per_row, Tensor& row_losses,
                   Tensor& d_logits);

// The sine position embedding of engine/ops/position.h into out [S, B, C] (contiguous, f32 or f64);
// extents: i64 [B, levels.count, 2] on out's device.
void sine_position_embedding(const char* op, const kernels::PositionLevels& levels, const Tensor& extents,
                             Tensor& out);

// topk (engine/ops/topk.h) of a contiguous 1-D x: values (x's dtype) and indices (i64), both [k],
// contiguous, k <= x's length.
void topk(const char* op, const Tensor& x, int64_t k, Tensor& values, Tensor& indices);

// Indexing (engine/kernels/index_math.h), contiguous tensors, indices i64 on the device and in range.
// index_select: x [outer, D, inner] -> out [outer, K, inner]; its backward from g [outer, K, inner] with
// the positions grouped by index value (kernels::group_by_target over D targets).
void index_select(const char* op, const Tensor& x, const Tensor& index, int64_t outer, int64_t inner,
                  Tensor& out);
void index_select_backward(const char* op, const Tensor& g, const Tensor& starts, const Tensor& positions,
                           int64_t outer, int64_t inner, Tensor& dx);
// gather along dim: out (index's shape) from x (any strides) and index (contiguous); its backward
// dx[q] = sum of g[sources[s]], s in [starts[q], starts[q + 1]), over dx's elements in row-major order.
void gather(const char* op, const Tensor& x, int64_t dim, const Tensor& index, Tensor& out);
void segment_sum(const char* op, const Tensor& g, const Tensor& starts, const Tensor& sources, Tensor& dx);

// Normalisation (engine/ops/norm.cpp; engine/cuda/norm.cu): x, weight, bias (undefined: none) contiguous,
// of x's dtype. The forward writes y and stats (f64 [2, sets], contiguous): row 0 each set's mean, row 1
// its 1 / sqrt(var + eps), which the backward reads. Sets: channels (batch norm), (sample, group) pairs
// (group norm), rows of the last D elements (layer norm). Training-mode batch_norm updates running_mean
// and running_var (undefined: none) in place; eval mode normalises with them. The backward writes dx, dw,
// db where defined (contiguous, shaped as x and weight) from the contiguous output gradient.
void batch_norm_forward(const char* op, const Tensor& x, const Tensor& weight, const Tensor& bias,
                        const Tensor& running_mean, const Tensor& running_var, bool training, double momentum,
                        double eps, Tensor& y, Tensor& stats);
void batch_norm_backward(const char* op, const Tensor& x, const Tensor& weight, const Tensor& stats,
                         const Tensor& grad, bool training, Tensor& dx, Tensor& dw, Tensor& db);
void group_norm_forward(const char* op, const Tensor& x, int64_t groups, const Tensor& weight,
                        const Tensor& bias, double eps, Tensor& y, Tensor& stats);
void group_norm_backward(const char* op, const Tensor& x, int64_t groups, const Tensor& weight,
                         const Tensor& stats, const Tensor& grad, Tensor& dx, Tensor& dw, Tensor& db);
void layer_norm_forward(const char* op, const Tensor& x, int64_t D, const Tensor& weight, const Tensor& bias,
                        double eps, Tensor& y, Tensor& stats);
void layer_norm_backward(const char* op, const Tensor& x, int64_t D, const Tensor& weight,
                         const Tensor& stats, const Tensor& grad, Tensor& dx, Tensor& dw, Tensor& db);

// Box geometry (engine/kernels/box_math.h; engine/cuda/box.cu) for models/box_coder.h, matcher.h and
// nms.h, which checked the shapes: boxes are contiguous [n, 4] of one float dtype, indices i64.
// iou [n, m] of a [n, 4] and b [m, 4]; deltas or boxes [n, 4] row by row.
void pairwise_iou(const char* op, const Tensor& a, const Tensor& b, Tensor& iou);
void encode_boxes(const char* op, const kernels::BoxCodingWeights& weights, const Tensor& anchors,
                  const Tensor& boxes, Tensor& deltas);
void decode_boxes(const char* op, const kernels::BoxCodingWeights& weights, const Tensor& deltas,
                  const Tensor& anchors, Tensor& boxes);
// The matcher over iou [G, R], G >= 1, into matched and labels (i64 [R]); throws std::invalid_argument
// for a negative or NaN entry.
void match_anchors(const char* op, const Tensor& iou, const kernels::MatchThresholds<double>& thresholds,
                   Tensor& matched, Tensor& labels);
// From a match (labels, matched: i64 [R]) and the boxes' classes (i64 [G]), new tensors on their device:
// kept and foreground anchor indices (i64, increasing), kept_classes (class_dtype [kept]: the class of
// each kept foreground anchor's box, -1 for background) and foreground_boxes (i64: each foreground
// anchor's box). Reads the two counts back, so it waits for the device.
void select_anchors(const char* op, const Tensor& labels, const Tensor& matched, const Tensor& box_classes,
                    DType class_dtype, Tensor& kept, Tensor& kept_classes, Tensor& foreground,
                    Tensor& foreground_boxes);
// Class-aware NMS of boxes [n, 4] sorted by decreasing score, classes i64 [n]: the kept positions in
// sorted order, on the host (the greedy walk runs there; see engine/cuda/box_kernels.h).
std::vector<int64_t> nms_sorted(const char* op, const Tensor& sorted_boxes, const Tensor& sorted_classes,
                                double iou_threshold);

}  // namespace icd::cuda_ops
