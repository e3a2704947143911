// engine/cuda_ops.h with the CUDA backend, for the neural-network ops with kernels of their own: pooling
// (engine/cuda/pool.cu), resizing (engine/cuda/resize.cu) and normalisation (engine/cuda/norm.cu). Each
// entry point checks that its tensors are contiguous (the kernels index planes and rows directly) and
// hands their element pointers to the kernels.
#include <initializer_list>
#include <stdexcept>
#include <string>

#include "engine/cuda/norm_kernels.h"
#include "engine/cuda/pool_kernels.h"
#include "engine/cuda/resize_kernels.h"
#include "engine/cuda_ops.h"
#include "engine/factory.h"

namespace icd::cuda_ops {
namespace {

void require_contiguous(const char* op, std::initializer_list<const Tensor*> tensors) {
  for (const Tensor* t : tensors)
    if (!t->is_contiguous())
      throw std::invalid_argument(std::string(op) +
                                  " (CUDA): every tensor must be contiguous, got one of shape " +
                                  shape_str(t->shape()) + " with strides " + shape_str(t->strides()));
}

// Undefined tensors (no weight, no bias, gradient not wanted) pass as null.
void* data_or_null(const Tensor& t) {
  return t.defined() ? t.raw_data() : nullptr;
}

void require_defined_contiguous(const char* op, std::initializer_list<const Tensor*> tensors) {
  for (const Tensor* t : tensors)
    if (t->defined()) require_contiguous(op, {t});
}

double* f64_data(const char* op, const Tensor& t) {
  if (t.dtype() != DType::f64 || !t.is_contiguous())
    throw std::invalid_argument(std::string(op) + " (CUDA): statistics must be a contiguous f64 tensor");
  return static_cast<double*>(t.raw_data());
}

// x [N, C, *] as [N, C, S]; groups 0 for batch norm.
kernels::ChannelNorm channel_norm(const Tensor& x, int64_t groups) {
  int64_t spatial = 1;
  for (int64_t d = 2; d < x.dim(); ++d)
    spatial *= x.size(d);
  return {x.size(0), x.size(1), spatial, groups};
}

}  // namespace

void max_pool2d(const char* op, const kernels::PoolGeometry& g, const Tensor& x, Tensor& out,
                Tensor* argmax) {
  require_contiguous(op, {&x, &out});
  if (argmax) require_contiguous(op, {argmax});
  cuda::cuda_max_pool2d(g, x.dtype(), x.raw_data(), out.raw_data(),
                        argmax ? static_cast<int64_t*>(argmax->raw_data()) : nullptr, x.device().index);
}

void max_pool2d_backward(const char* op, const kernels::PoolGeometry& g, const Tensor& grad_out,
                         const Tensor& argmax, Tensor& grad_x) {
  require_contiguous(op, {&grad_out, &argmax, &grad_x});
  cuda::cuda_max_pool2d_backward(g, grad_out.dtype(), grad_out.raw_data(),
                                 static_cast<const int64_t*>(argmax.raw_data()), grad_x.raw_data(),
                                 grad_x.device().index);
}

void avg_pool2d(const char* op, const kernels::PoolGeometry& g, const Tensor& x, Tensor& out) {
  require_contiguous(op, {&x, &out});
  cuda::cuda_avg_pool2d(g, x.dtype(), x.raw_data(), out.raw_data(), x.device().index);
}

void avg_pool2d_backward(const char* op, const kernels::PoolGeometry& g, const Tensor& grad_out,
                         Tensor& grad_x) {
  require_contiguous(op, {&grad_out, &grad_x});
  cuda::cuda_avg_pool2d_backward(g, grad_out.dtype(), grad_out.raw_data(), grad_x.raw_data(),
                                 grad_x.device().index);
}

void upsample_nearest2d(const char* op, const kernels::ResizeGeometry& g, const Tensor& x, Tensor& out) {
  require_contiguous(op, {&x, &out});
  cuda::cuda_upsample_nearest2d(g, x.dtype(), x.raw_data(), out.raw_data(), x.device().index);
}

void upsample_nearest2d_backward(const char* op, const kernels::ResizeGeometry& g, const Tensor& grad_out,
                                 Tensor& grad_x) {
  require_contiguous(op, {&grad_out, &grad_x});
  cuda::cuda_upsample_nearest2d_backward(g, grad_out.dtype(), grad_out.raw_data(), grad_x.raw_data(),
                                         grad_x.device().index);
}

void interpolate_bilinear(const char* op, const kernels::ResizeGeometry& g, const Tensor& x, Tensor& out) {
  require_contiguous(op, {&x, &out});
  cuda::cuda_interpolate_bilinear(g, x.dtype(), x.raw_data(), out.raw_data(), x.device().index);
}

void interpolate_bilinear_backward(const char* op, const kernels::ResizeGeometry& g, const Tensor& grad_out,
                                   Tensor& grad_x) {
  require_contiguous(op, {&grad_out, &grad_x});
  cuda::cuda_interpolate_bilinear_backward(g, grad_out.dtype(), grad_out.raw_data(), grad_x.raw_data(),
                                           grad_x.device().index);
}

void batch_norm_forward(const char* op, const Tensor& x, const Tensor& weight, const Tensor& bias,
                        const Tensor& running_mean, const Tensor& running_var, bool training, double momentum,
                        double eps, Tensor& y, Tensor& stats) {
  require_contiguous(op, {&x, &y});
  require_defined_contiguous(op, {&weight, &bias});
  const kernels::ChannelNorm cn = channel_norm(x, 0);
  const int device = x.device().index;
  double* mean = f64_data(op, stats);
  double* invstd = mean + cn.C;
  if (!training) {
    cuda::cuda_norm_stats_from_running(x.dtype(), cn.C, running_mean.raw_data(), running_mean.stride(0),
                                       running_var.raw_data(), running_var.stride(0), eps, mean, invstd,
                                       device);
  } else {
    const Tensor var = running_mean.defined() ? empty({cn.C}, {DType::f64, x.device()}) : Tensor();
    cuda::cuda_norm_moments(x.dtype(), cn.stat_sets(), x.raw_data(), eps, mean, invstd,
                            var.defined() ? f64_data(op, var) : nullptr, device);
    if (running_mean.defined()) {
      const double m = static_cast<double>(cn.N * cn.S);
      cuda::cuda_update_running_stats(x.dtype(), cn.C, running_mean.raw_data(), running_mean.stride(0),
                                      running_var.raw_data(), running_var.stride(0), mean, f64_data(op, var),
                                      momentum, m / (m - 1.0), device);
    }
  }
  cuda::cuda_channel_norm_forward(x.dtype(), cn, x.raw_data(), mean, invstd, data_or_null(weight),
                                  data_or_null(bias), y.raw_data(), device);
}

void batch_norm_backward(const char* op, const Tensor& x, const Tensor& weight, const Tensor& stats,
                         const Tensor& grad, bool training, Tensor& dx, Tensor& dw, Tensor& db) {
  require_contiguous(op, {&x, &grad});
  require_defined_contiguous(op, {&weight, &dx, &dw, &db});
  const kernels::ChannelNorm cn = channel_norm(x, 0);
  const double* mean = f64_data(op, stats);
  cuda::cuda_batch_norm_backward(x.dtype(), cn, x.raw_data(), grad.raw_data(), mean, mean + cn.C,
                                 data_or_null(weight), training, data_or_null(dx), data_or_null(dw),
                                 data_or_null(db), x.device().index);
}

void group_norm_forward(const char* op, const Tensor& x, int64_t groups, const Tensor& weight,
                        const Tensor& bias, double eps, Tensor& y, Tensor& stats) {
  require_contiguous(op, {&x, &y});
  require_defined_contiguous(op, {&weight, &bias});
  const kernels::ChannelNorm cn = channel_norm(x, groups);
  const int device = x.device().index;
  double* mean = f64_data(op, stats);
  double* invstd = mean + cn.N * groups;
  cuda::cuda_norm_moments(x.dtype(), cn.stat_sets(), x.raw_data(), eps, mean, invstd, nullptr, device);
  cuda::cuda_channel_norm_forward(x.dtype(), cn, x.raw_data(), mean, invstd, data_or_null(weight),
                                  data_or_null(bias), y.raw_data(), device);
}

void group_norm_backward(const char* op, const Tensor& x, int64_t groups, const Tensor& weight,
                         const Tensor& stats, const Tensor& grad, Tensor& dx, Tensor& dw, Tensor& db) {
  require_contiguous(op, {&x, &grad});
  require_defined_contiguous(op, {&weight, &dx, &dw, &db});
  const kernels::ChannelNorm cn = channel_norm(x, groups);
  const double* mean = f64_data(op, stats);
  cuda::cuda_group_norm_backward(x.dtype(), cn, x.raw_data(), grad.raw_data(), mean, mean + cn.N * groups,
                                 data_or_null(weight), data_or_null(dx), data_or_null(dw), data_or_null(db),
                                 x.device().index);
}

void layer_norm_forward(const char* op, const Tensor& x, int64_t D, const Tensor& weight, const Tensor& bias,
                        double eps, Tensor& y, Tensor& stats) {
  require_contiguous(op, {&x, &y});
  require_defined_contiguous(op, {&weight, &bias});
  const int64_t R = x.numel() / D;
  const int device = x.device().index;
  double* mean = f64_data(op, stats);
  cuda::cuda_norm_moments(x.dtype(), {R, D, D, 0, D}, x.raw_data(), eps, mean, mean + R, nullptr, device);
  cuda::cuda_layer_norm_forward(x.dtype(), R, D, x.raw_data(), mean, mean + R, data_or_null(weight),
                                data_or_null(bias), y.raw_data(), device);
}

void layer_norm_backward(const char* op, const Tensor& x, int64_t D, const Tensor& weight,
                         const Tensor& stats, const Tensor& grad, Tensor& dx, Tensor& dw, Tensor& db) {
  require_contiguous(op, {&x, &grad});
  require_defined_contiguous(op, {&weight, &dx, &dw, &db});
  const int64_t R = x.numel() / D;
  const double* mean = f64_data(op, stats);
  cuda::cuda_layer_norm_backward(x.dtype(), R, D, x.raw_data(), grad.raw_data(), mean, mean + R,
                                 data_or_null(weight), data_or_null(dx), data_or_null(dw), data_or_null(db),
                                 x.device().index);
}

}  // namespace icd::cuda_ops
