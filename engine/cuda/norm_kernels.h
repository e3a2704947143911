// The normalisation kernels (engine/cuda/norm.cu): batch, group and layer norm, forward and backward,
// running the ICD_HD bodies of engine/kernels/norm_math.h that the CPU tests run too. Host-only
// declarations with no CUDA headers.
//
// Pointers are in the memory of `device`: x, grad, y, dx contiguous ([N, C, S] or [R, D]) of `dtype`
// (f32 or f64); weight, bias, dw, db contiguous of dtype or null (no weight / no bias / gradient not
// wanted); mean, invstd, var contiguous f64 arrays of one entry per set. Statistics sum in double in a
// fixed order (one block per set, a tree over its threads), so results repeat bit for bit. Scratch memory
// comes from the device's caching allocator. Work is queued on the device's stream. std::invalid_argument
// for another dtype, std::runtime_error when CUDA is unavailable or a launch fails.
#pragma once
#include <cstdint>

#include "engine/dtype.h"
#include "engine/kernels/norm_math.h"

namespace icd::cuda {

// mean, invstd = 1 / sqrt(var + eps) and (var not null) the biased variance of every set.
void cuda_norm_moments(DType dtype, const kernels::NormSets& sets, const void* x, double eps, double* mean,
                       double* invstd, double* var, int device);
// Eval-mode batch norm: mean, invstd of C channels from the running statistics (element c at c * stride).
void cuda_norm_stats_from_running(DType dtype, int64_t C, const void* running_mean, int64_t mean_stride,
                                  const void* running_var, int64_t var_stride, double eps, double* mean,
                                  double* invstd, int device);
// Training-mode batch norm: the running statistics updated in place from the batch's mean and variance.
void cuda_update_running_stats(DType dtype, int64_t C, void* running_mean, int64_t mean_stride,
                               void* running_var, int64_t var_stride, const double* mean, const double* var,
                               double momentum, double unbias, int device);

void cuda_channel_norm_forward(DType dtype, const kernels::ChannelNorm& cn, const void* x, const double* mean,
                               const double* invstd, const void* weight, const void* bias, void* y,
                               int device);
void cuda_layer_norm_forward(DType dtype, int64_t R, int64_t D, const void* x, const double* mean,
                             const double* invstd, const void* weight, const void* bias, void* y, int device);

// Backward passes: dx, dw, db (each null when not wanted) from the output gradient `grad`.
void cuda_batch_norm_backward(DType dtype, const kernels::ChannelNorm& cn, const void* x, const void* grad,
                              const double* mean, const double* invstd, const void* weight, bool training,
                              void* dx, void* dw, void* db, int device);
void cuda_group_norm_backward(DType dtype, const kernels::ChannelNorm& cn, const void* x, const void* grad,
                              const double* mean, const double* invstd, const void* weight, void* dx,
                              void* dw, void* db, int device);
void cuda_layer_norm_backward(DType dtype, int64_t R, int64_t D, const void* x, const void* grad,
                              const double* mean, const double* invstd, const void* weight, void* dx,
                              void* dw, void* db, int device);

}  // namespace icd::cuda
