// engine/cuda_ops.h with the CUDA backend: each entry point turns tensors into the kernels' strided
// layouts (engine/kernels/strided_index.h) and element pointers, and calls a kernel of
// engine/cuda/strided_kernels.h.
#include <array>
#include <stdexcept>
#include <string>

#include "engine/cuda/optimizer_kernels.h"
#include "engine/cuda/position_kernels.h"
#include "engine/cuda/strided_kernels.h"
#include "engine/cuda/topk_kernels.h"
#include "engine/cuda_ops.h"

namespace icd::cuda_ops {
namespace {

// Strides that read t as if it had shape `shape` (t's shape broadcasts to it): stride 0 along the
// dimensions t lacks or has as size 1.
Shape broadcast_strides(const Tensor& t, const Shape& shape) {
  Shape strides(shape.size(), 0);
  const std::size_t lead = shape.size() - t.shape().size();
  for (std::size_t i = 0; i < t.shape().size(); ++i)
    strides[lead + i] = t.shape()[i] == 1 ? 0 : t.strides()[i];
  return strides;
}

template <int N>
kernels::StridedLayout<N> layout_over(const char* op, const Tensor& out,
                                      const std::array<const Tensor*, N - 1>& in) {
  std::array<std::vector<int64_t>, N> strides;
  strides[0] = out.strides();
  for (int k = 0; k < N - 1; ++k)
    strides[k + 1] = broadcast_strides(*in[k], out.shape());
  return kernels::make_strided_layout<N>(out.shape(), strides, op);
}

}  // namespace

void map_unary(const char* op, kernels::UnaryOpCall call, const Tensor& x, Tensor& out) {
  cuda::cuda_map_unary(op, call, out.dtype(), layout_over<2>(op, out, {&x}), out.raw_data(), x.raw_data(),
                       out.device().index);
}

void map_binary(const char* op, kernels::BinaryOpCall call, const Tensor& a, const Tensor& b, Tensor& out) {
  cuda::cuda_map_binary(op, call, out.dtype(), layout_over<3>(op, out, {&a, &b}), out.raw_data(),
                        a.raw_data(), b.raw_data(), out.device().index);
}

void where(const char* op, const Tensor& condition, const Tensor& a, const Tensor& b, Tensor& out) {
  cuda::cuda_where(op, out.dtype(), layout_over<4>(op, out, {&condition, &a, &b}), out.raw_data(),
                   condition.raw_data(), a.raw_data(), b.raw_data(), out.device().index);
}

void copy(const char* op, const Tensor& src, Tensor& out) {
  cuda::cuda_copy(op, out.dtype(), src.dtype(), layout_over<2>(op, out, {&src}), out.raw_data(),
                  src.raw_data(), out.device().index);
}

void fill(const char* op, Tensor& out, double value) {
  cuda::cuda_fill(op, out.dtype(), layout_over<1>(op, out, {}), out.raw_data(), value, out.device().index);
}

void sum(const char* op, const Tensor& x, const std::vector<bool>& reduced, Tensor& out) {
  if (!out.is_contiguous())
    throw std::invalid_argument(std::string(op) + " (CUDA): the output must be contiguous");
  Shape outer_shape, outer_strides, inner_shape, inner_strides;
  for (int64_t d = 0; d < x.dim(); ++d) {
    (reduced[d] ? inner_shape : outer_shape).push_back(x.size(d));
    (reduced[d] ? inner_strides : outer_strides).push_back(x.stride(d));
  }
  kernels::SumLayout layout{kernels::make_strided_layout<1>(outer_shape, {outer_strides}, op),
                            kernels::make_strided_layout<1>(inner_shape, {inner_strides}, op)};
  cuda::cuda_sum(op, x.dtype(), layout, x.raw_data(), out.raw_data(), x.device().index);
}

void sine_position_embedding(const char* op, const kernels::PositionLevels& levels, const Tensor& extents,
                             Tensor& out) {
  cuda::cuda_sine_position_embedding(op, out.dtype(), levels, static_cast<const int64_t*>(extents.raw_data()),
                                     out.size(1), out.size(2), out.numel(), out.raw_data(),
                                     out.device().index);
}

void topk(const char* op, const Tensor& x, int64_t k, Tensor& values, Tensor& indices) {
  cuda::cuda_topk(op, x.dtype(), x.raw_data(), x.numel(), k, values.raw_data(),
                  static_cast<int64_t*>(indices.raw_data()), x.device().index);
}

void sgd_update(const char* op, const kernels::SgdUpdate<double>& update, Tensor& param, const Tensor& grad,
                Tensor* momentum_buffer) {
  cuda::cuda_sgd_update(update, param.dtype(), param.raw_data(), grad.raw_data(),
                        momentum_buffer ? momentum_buffer->raw_data() : nullptr, param.numel(),
                        param.device().index);
}

void adamw_update(const char* op, const kernels::AdamWUpdate<double>& update, Tensor& param,
                  const Tensor& grad, Tensor& exp_avg, Tensor& exp_avg_sq) {
  cuda::cuda_adamw_update(update, param.dtype(), param.raw_data(), grad.raw_data(), exp_avg.raw_data(),
                          exp_avg_sq.raw_data(), param.numel(), param.device().index);
}

void clip_by_value(const char* op, Tensor& grad, double clip_value) {
  cuda::cuda_clip_by_value(clip_value, grad.dtype(), grad.raw_data(), grad.numel(), grad.device().index);
}

}  // namespace icd::cuda_ops
