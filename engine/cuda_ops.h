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
#include <vector>

#include "engine/kernels/binary_op.h"
#include "engine/kernels/optimizer_math.h"
#include "engine/kernels/unary_op.h"
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

}  // namespace icd::cuda_ops
