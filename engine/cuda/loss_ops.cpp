// engine/cuda_ops.h for the reductions along one dimension, the fused losses and the indexing ops: each
// entry point checks what its kernel assumes of the tensors (contiguous operands, i64 indices, f64
// per-element losses) and hands element pointers to engine/cuda/reduce_dim_kernels.h, loss_kernels.h or
// indexing_kernels.h.
#include <stdexcept>
#include <string>
#include <utility>

#include "engine/cuda/indexing_kernels.h"
#include "engine/cuda/loss_kernels.h"
#include "engine/cuda/reduce_dim_kernels.h"
#include "engine/cuda_ops.h"

namespace icd::cuda_ops {
namespace {

// The kernels index their operands as dense row-major arrays.
void require_contiguous(const char* op, const char* name, const Tensor& t) {
  if (t.defined() && !t.is_contiguous())
    throw std::invalid_argument(std::string(op) + " (CUDA): " + name + " must be contiguous");
}

void require_dtype(const char* op, const char* name, const Tensor& t, DType dtype) {
  if (t.defined() && t.dtype() != dtype)
    throw std::invalid_argument(std::string(op) + " (CUDA): " + name + " must be " + dtype_name(dtype) +
                                ", got " + dtype_name(t.dtype()));
}

void* data_or_null(const Tensor& t) {
  return t.defined() ? t.raw_data() : nullptr;
}

const int64_t* indices_of(const Tensor& t) {
  return static_cast<const int64_t*>(t.raw_data());
}

}  // namespace

void extreme_along(const char* op, const Tensor& x, const kernels::LaneLayout& layout, bool is_max,
                   Tensor* values, Tensor& indices) {
  require_contiguous(op, "x", x);
  require_contiguous(op, "indices", indices);
  require_dtype(op, "indices", indices, DType::i64);
  if (values) require_contiguous(op, "values", *values);
  cuda::cuda_extreme_along(op, x.dtype(), is_max, layout, x.raw_data(), values ? values->raw_data() : nullptr,
                           static_cast<int64_t*>(indices.raw_data()), x.device().index);
}

void scatter_along(const char* op, const Tensor& g, const Tensor& indices, const kernels::LaneLayout& layout,
                   Tensor& dx) {
  require_contiguous(op, "g", g);
  require_contiguous(op, "indices", indices);
  require_contiguous(op, "dx", dx);
  require_dtype(op, "indices", indices, DType::i64);
  cuda::cuda_scatter_along(op, g.dtype(), layout, g.raw_data(), indices_of(indices), dx.raw_data(),
                           g.device().index);
}

void logsumexp(const char* op, const Tensor& x, const kernels::LaneLayout& layout, Tensor& out) {
  require_contiguous(op, "x", x);
  require_contiguous(op, "out", out);
  cuda::cuda_logsumexp(op, x.dtype(), layout, x.raw_data(), out.raw_data(), x.device().index);
}

void softmax(const char* op, const Tensor& x, const kernels::LaneLayout& layout, bool log, Tensor& y) {
  require_contiguous(op, "x", x);
  require_contiguous(op, "y", y);
  cuda::cuda_softmax(op, x.dtype(), log, layout, x.raw_data(), y.raw_data(), x.device().index);
}

void softmax_backward(const char* op, const Tensor& g, const Tensor& y, const kernels::LaneLayout& layout,
                      bool log, Tensor& dx) {
  require_contiguous(op, "g", g);
  require_contiguous(op, "y", y);
  require_contiguous(op, "dx", dx);
  cuda::cuda_softmax_backward(op, y.dtype(), log, layout, g.raw_data(), y.raw_data(), dx.raw_data(),
                              y.device().index);
}

void pointwise_loss(const char* op, const kernels::PointwiseLossCall& call, const Tensor& input,
                    const Tensor& target, const Tensor& weight, double scale, Tensor& per_element,
                    Tensor& losses, Tensor& d_input, Tensor& d_target, Tensor& d_weight) {
  for (const auto& [name, t] : {std::pair<const char*, const Tensor*>{"input", &input},
                                {"target", &target},
                                {"weight", &weight},
                                {"per_element", &per_element},
                                {"losses", &losses},
                                {"d_input", &d_input},
                                {"d_target", &d_target},
                                {"d_weight", &d_weight}})
    require_contiguous(op, name, *t);
  require_dtype(op, "losses", losses, DType::f64);
  cuda::cuda_pointwise_loss(op, call, input.dtype(), input.numel(), input.raw_data(), target.raw_data(),
                            data_or_null(weight), scale, data_or_null(per_element),
                            static_cast<double*>(data_or_null(losses)), data_or_null(d_input),
                            data_or_null(d_target), data_or_null(d_weight), input.device().index);
}

void cross_entropy(const char* op, const Tensor& logits, const Tensor& target,
                   std::optional<int64_t> ignore_index, double scale, Tensor& per_row, Tensor& row_losses,
                   Tensor& d_logits) {
  require_contiguous(op, "logits", logits);
  require_contiguous(op, "target", target);
  require_contiguous(op, "per_row", per_row);
  require_contiguous(op, "row_losses", row_losses);
  require_contiguous(op, "d_logits", d_logits);
  require_dtype(op, "target", target, DType::i64);
  require_dtype(op, "row_losses", row_losses, DType::f64);
  cuda::cuda_cross_entropy(op, logits.dtype(), logits.size(0), logits.size(1), logits.raw_data(),
                           indices_of(target), ignore_index.has_value(), ignore_index.value_or(0), scale,
                           per_row.raw_data(), static_cast<double*>(row_losses.raw_data()),
                           data_or_null(d_logits), logits.device().index);
}

void index_select(const char* op, const Tensor& x, const Tensor& index, int64_t outer, int64_t inner,
                  Tensor& out) {
  require_contiguous(op, "x", x);
  require_contiguous(op, "index", index);
  require_contiguous(op, "out", out);
  require_dtype(op, "index", index, DType::i64);
  const int64_t D = outer * inner > 0 ? x.numel() / (outer * inner) : 0;
  cuda::cuda_index_select(op, x.dtype(), x.raw_data(), indices_of(index), outer, D, index.numel(), inner,
                          out.raw_data(), x.device().index);
}

void index_select_backward(const char* op, const Tensor& g, const Tensor& starts, const Tensor& positions,
                           int64_t outer, int64_t inner, Tensor& dx) {
  require_contiguous(op, "g", g);
  require_contiguous(op, "starts", starts);
  require_contiguous(op, "positions", positions);
  require_contiguous(op, "dx", dx);
  require_dtype(op, "starts", starts, DType::i64);
  require_dtype(op, "positions", positions, DType::i64);
  cuda::cuda_index_select_backward(op, g.dtype(), g.raw_data(), indices_of(starts), indices_of(positions),
                                   outer, starts.numel() - 1, positions.numel(), inner, dx.raw_data(),
                                   g.device().index);
}

void gather(const char* op, const Tensor& x, int64_t dim, const Tensor& index, Tensor& out) {
  require_contiguous(op, "index", index);
  require_contiguous(op, "out", out);
  require_dtype(op, "index", index, DType::i64);
  // Operand 1 reads x at every coordinate but dim's, which the kernel adds from the index.
  Shape x_strides = x.strides();
  x_strides[dim] = 0;
  const kernels::StridedLayout<2> layout =
      kernels::make_strided_layout<2>(index.shape(), {contiguous_strides(index.shape()), x_strides}, op);
  cuda::cuda_gather(op, x.dtype(), layout, x.raw_data(), indices_of(index), x.stride(dim), out.raw_data(),
                    x.device().index);
}

void segment_sum(const char* op, const Tensor& g, const Tensor& starts, const Tensor& sources, Tensor& dx) {
  require_contiguous(op, "g", g);
  require_contiguous(op, "starts", starts);
  require_contiguous(op, "sources", sources);
  require_contiguous(op, "dx", dx);
  require_dtype(op, "starts", starts, DType::i64);
  require_dtype(op, "sources", sources, DType::i64);
  cuda::cuda_segment_sum(op, g.dtype(), g.raw_data(), indices_of(starts), indices_of(sources), dx.numel(),
                         dx.raw_data(), g.device().index);
}

}  // namespace icd::cuda_ops
