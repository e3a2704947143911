// Matrix products.
//
// C = A B, A [M, K], B [K, N]:  C[m, n] = sum_k A[m, k] B[k, n].
// Backward: C[m, n] depends on A[m, k] with slope B[k, n] and on B[k, n] with slope A[m, k], so
//   dL/dA[m, k] = sum_n dL/dC[m, n] B[k, n]   ->  dA = dC B^T   ([M, N] x [N, K])
//   dL/dB[k, n] = sum_m A[m, k] dL/dC[m, n]   ->  dB = A^T dC   ([K, M] x [M, N])
// Batched ([..., M, K] x [..., K, N]): the same for each batch element. A batch dimension along which
// an input was broadcast (missing or of size 1) fed every output along it, so that input's gradient is
// summed over it (sum_to). B^T and A^T above are transposed views, handed to the GEMM as flags.
//
// linear: y = x W^T + b on the rows of x flattened to [R, in], W [out, in]. By the rules above
//   dx = dy W  ([R, out] x [out, in]),   dW = dy^T x  ([out, R] x [R, in]),   db = sum over rows of dy.
// The bias is written into y first and the GEMM accumulates onto it (beta = 1): no extra pass over y.
//
// A matrix reaches the GEMM without a copy when one of its two dimensions has unit stride: row-major
// with a row stride (a plain matrix, or a narrow() of its columns) or column-major (a transpose).
//
// On CUDA tensors the same GEMMs (same transpose flags, leading dimensions and batch offsets) run on
// cuBLAS (engine/cuda_ops.h, gemm); the backward, which calls the same kernels, then runs there too.
#include "engine/ops/matmul.h"

#include <algorithm>
#include <optional>
#include <stdexcept>

#include "engine/autocast.h"
#include "engine/autograd.h"
#include "engine/cpu/gemm.h"
#include "engine/cpu/strided.h"
#include "engine/cuda_ops.h"
#include "engine/dispatch.h"
#include "engine/factory.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/precision.h"
#include "engine/ops/reduce.h"

namespace icd {
namespace {

// How a [rows, cols] matrix with strides (row_stride, col_stride) is handed to the GEMM: as row-major
// storage with leading dimension ld, or (transposed) as row-major [cols, rows] storage with leading
// dimension ld.
struct GemmLayout {
  bool usable = false;
  bool transposed = false;
  int64_t ld = 1;
};

GemmLayout gemm_layout(int64_t rows, int64_t cols, int64_t row_stride, int64_t col_stride) {
  if (rows == 0 || cols == 0) return {true, false, std::max<int64_t>(cols, 1)};  // never read
  // The stride of a size-1 dimension is never used, so any value that satisfies the GEMM will do.
  if ((cols == 1 || col_stride == 1) && (rows == 1 || row_stride >= cols))
    return {true, false, rows == 1 ? cols : row_stride};
  if ((rows == 1 || row_stride == 1) && (cols == 1 || col_stride >= rows))
    return {true, true, cols == 1 ? rows : col_stride};
  return {};
}

GemmLayout matrix_layout(const Tensor& t) {
  return gemm_layout(t.size(-2), t.size(-1), t.stride(-2), t.stride(-1));
}

// t itself when its matrices (last two dims) can go to the GEMM as they are, else a row-major copy.
Tensor gemm_ready(const Tensor& t) {
  return matrix_layout(t).usable ? t : t.contiguous();
}

// Element offset of each batch element's matrix, for t's batch dims broadcast to `batch`.
std::vector<int64_t> batch_offsets(const Tensor& t, const Shape& batch) {
  const int64_t t_batch_dims = t.dim() - 2;
  const int64_t lead = static_cast<int64_t>(batch.size()) - t_batch_dims;
  Shape strides(batch.size(), 0);
  for (int64_t d = 0; d < t_batch_dims; ++d)
    if (t.size(d) != 1) strides[lead + d] = t.stride(d);
  std::vector<int64_t> offsets;
  offsets.reserve(shape_numel(batch));
  cpu::for_each_offset(batch, strides, [&](int64_t off) { offsets.push_back(off); });
  return offsets;
}

// Up to this many multiply-adds per matrix, a batch runs one GEMM per thread instead of threading
// each GEMM (small matrices do not split well); below kParallelBatchWork in all, it runs on one thread.
constexpr int64_t kSmallGemm = int64_t{1} << 21;
constexpr int64_t kParallelBatchWork = int64_t{1} << 16;

// C = A B for a [..., M, K] and b [..., K, N] (batch dims broadcast; shapes already checked). Records
// no graph; C is a new row-major tensor [batch..., M, N].
Tensor matmul_kernel(const Tensor& a_in, const Tensor& b_in, const char* op) {
  const Tensor a = gemm_ready(a_in.detach()), b = gemm_ready(b_in.detach());
  const int64_t M = a.size(-2), K = a.size(-1), N = b.size(-1);
  const Shape batch = broadcast_shapes(Shape(a.shape().begin(), a.shape().end() - 2),
                                       Shape(b.shape().begin(), b.shape().end() - 2), op);
  Shape out_shape = batch;
  out_shape.push_back(M);
  out_shape.push_back(N);
  Tensor c = empty(out_shape, a.options());
  if (c.numel() == 0) return c;
  const std::vector<int64_t> a_offsets = batch_offsets(a, batch), b_offsets = batch_offsets(b, batch);
  const GemmLayout la = matrix_layout(a), lb = matrix_layout(b);
  if (c.device().is_cuda()) {
    cuda_ops::gemm(op, la.transposed, lb.transposed, M, N, K, a, la.ld, a_offsets, b, lb.ld, b_offsets, 0.0,
                   c);
    return c;
  }
  const int64_t count = shape_numel(batch);
  dispatch_floating(a.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
    const T* pa = a.data<T>();
    const T* pb = b.data<T>();
    T* pc = c.data<T>();
    auto product = [&](int64_t i) {
      cpu::gemm<T>(la.transposed, lb.transposed, M, N, K, T(1), pa + a_offsets[i], la.ld, pb + b_offsets[i],
                   lb.ld, T(0), pc + i * M * N, N);
    };
    const int64_t work = M * N * K;
    if (count > 1 && work <= kSmallGemm && count * work >= kParallelBatchWork) {
#pragma omp parallel for schedule(static)
      for (int64_t i = 0; i < count; ++i)
        product(i);
    } else {
      for (int64_t i = 0; i < count; ++i)
        product(i);
    }
  });
  return c;
}

// The differentiable batched product; see the comment at the top for the backward.
Tensor matmul_recorded(const Tensor& a, const Tensor& b, const char* op) {
  Tensor c = matmul_kernel(a, b, op);
  autograd::record(c, op, {a, b},
                   [a = a.detach(), b = b.detach(), need_a = a.requires_grad(), need_b = b.requires_grad(),
                    op](const Tensor& g) -> std::vector<Tensor> {
                     Tensor grad_a, grad_b;
                     if (need_a) grad_a = sum_to(matmul_kernel(g, b.transpose(-1, -2), op), a.shape());
                     if (need_b) grad_b = sum_to(matmul_kernel(a.transpose(-1, -2), g, op), b.shape());
                     return {grad_a, grad_b};
                   });
  return c;
}

// matmul and bmm under autocast on CUDA tensors: the values of round(matmul(round(a), round(b))) with the
// operands handed to cuBLAS as 16-bit storage (`low`), f32 accumulation on tensor cores. Gradients are
// rounded once more after a broadcast batch is summed, as the composition rounds them.
Tensor matmul_cuda_16bit(const Tensor& a, const Tensor& b, DType low, const char* op) {
  const Tensor a16 = a.detach().to(low), b16 = b.detach().to(low);
  Tensor c = matmul_kernel(a16, b16, op).to(DType::f32);
  autograd::record(
      c, op, {a, b},
      [a16, b16, low, a_shape = a.shape(), b_shape = b.shape(), need_a = a.requires_grad(),
       need_b = b.requires_grad(), op](const Tensor& g) -> std::vector<Tensor> {
        const Tensor g16 = g.to(low);
        Tensor grad_a, grad_b;
        if (need_a)
          grad_a = round_to_precision(
              sum_to(matmul_kernel(g16, b16.transpose(-1, -2), op).to(DType::f32), a_shape), low);
        if (need_b)
          grad_b = round_to_precision(
              sum_to(matmul_kernel(a16.transpose(-1, -2), g16, op).to(DType::f32), b_shape), low);
        return {grad_a, grad_b};
      });
  return c;
}

std::string shapes_str(const Tensor& a, const Tensor& b) {
  return "a " + shape_str(a.shape()) + " and b " + shape_str(b.shape());
}

// Product of all dims but the last (the number of rows when the last dim is the features).
int64_t leading_numel(const Shape& shape) {
  return shape_numel(Shape(shape.begin(), shape.end() - 1));
}

// linear under autocast on CUDA tensors, as matmul_cuda_16bit: x W^T + b accumulated in f32 from 16-bit
// operands (the bias is the GEMM's C, so each output is rounded once), and the gradients from 16-bit
// products. The shapes are checked.
Tensor linear_cuda_16bit(const Tensor& x, const Tensor& weight, const Tensor& bias, DType low) {
  const int64_t in = weight.size(1), out = weight.size(0), rows = leading_numel(x.shape());
  Shape out_shape = x.shape();
  out_shape.back() = out;
  const Tensor x16 = x.detach().reshape({rows, in}).to(low), w16 = weight.detach().to(low);
  Tensor y16 = empty({rows, out}, {low, x.device()});
  if (bias.defined()) copy_(y16, bias.detach().to(low));  // the GEMM adds x W^T onto the bias rows
  cuda_ops::gemm("linear", false, true, rows, out, in, x16, in, {0}, w16, in, {0}, bias.defined() ? 1.0 : 0.0,
                 y16);
  Tensor result = y16.to(DType::f32).reshape(out_shape);
  autograd::record(result, "linear", {x, weight, bias},
                   [x16, w16, low, x_shape = x.shape(), rows, out, need_x = x.requires_grad(),
                    need_w = weight.requires_grad(),
                    need_b = bias.defined() && bias.requires_grad()](const Tensor& g) -> std::vector<Tensor> {
                     const Tensor g16 = g.reshape({rows, out}).to(low);
                     Tensor grad_x, grad_w, grad_b;
                     if (need_x) grad_x = matmul_kernel(g16, w16, "linear").to(DType::f32).reshape(x_shape);
                     if (need_w) grad_w = matmul_kernel(g16.transpose(0, 1), x16, "linear").to(DType::f32);
                     if (need_b) grad_b = round_to_precision(sum(g16.to(DType::f32), {0}), low);
                     return {grad_x, grad_w, grad_b};
                   });
  return result;
}

}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b) {
  const Device device = op_device("matmul", {{"a", a}, {"b", b}});
  if (a.dim() == 0 || b.dim() == 0)
    throw std::invalid_argument("matmul: both arguments need at least one dimension, got " +
                                shapes_str(a, b));
  const bool vector_a = a.dim() == 1, vector_b = b.dim() == 1;
  const Tensor a2 = vector_a ? a.unsqueeze(0) : a;  // [1, K]
  const Tensor b2 = vector_b ? b.unsqueeze(1) : b;  // [K, 1]
  if (a2.size(-1) != b2.size(-2))
    throw std::invalid_argument("matmul: " + shapes_str(a, b) +
                                " do not agree on the contracted dimension (" + std::to_string(a2.size(-1)) +
                                " vs " + std::to_string(b2.size(-2)) + ")");
  if (const std::optional<DType> low = autocast_precision_for(a)) {  // engine/autocast.h
    if (device.is_cuda() && !vector_a && !vector_b) return matmul_cuda_16bit(a, b, *low, "matmul");
    AutocastGuard f32(DType::f32);
    return round_to_precision(matmul(round_to_precision(a, *low), round_to_precision(b, *low)), *low);
  }
  Tensor c;
  if (b2.dim() == 2 && a2.dim() > 2 && a2.is_contiguous()) {
    // [..., M, K] x [K, N]: the batch folds into the rows of one large GEMM.
    Shape out_shape = a2.shape();
    out_shape.back() = b2.size(1);
    c = matmul_recorded(a2.reshape({leading_numel(a2.shape()), a2.size(-1)}), b2, "matmul")
            .reshape(out_shape);
  } else {
    c = matmul_recorded(a2, b2, "matmul");
  }
  if (vector_a) c = c.squeeze(-2);
  if (vector_b) c = c.squeeze(-1);
  return c;
}

Tensor bmm(const Tensor& a, const Tensor& b) {
  const Device device = op_device("bmm", {{"a", a}, {"b", b}});
  if (a.dim() != 3 || b.dim() != 3)
    throw std::invalid_argument("bmm: expects [B, M, K] and [B, K, N], got " + shapes_str(a, b));
  if (a.size(0) != b.size(0) || a.size(2) != b.size(1))
    throw std::invalid_argument("bmm: " + shapes_str(a, b) + " do not match ([B, M, K] x [B, K, N])");
  if (const std::optional<DType> low = autocast_precision_for(a)) {  // engine/autocast.h
    if (device.is_cuda()) return matmul_cuda_16bit(a, b, *low, "bmm");
    AutocastGuard f32(DType::f32);
    return round_to_precision(bmm(round_to_precision(a, *low), round_to_precision(b, *low)), *low);
  }
  return matmul_recorded(a, b, "bmm");
}

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  const Device device = op_device("linear", {{"x", x}, {"weight", weight}, {"bias", bias}});
  if (weight.dim() != 2)
    throw std::invalid_argument("linear: weight must be [out, in], got " + shape_str(weight.shape()));
  const int64_t in = weight.size(1), out = weight.size(0);
  if (x.dim() == 0 || x.size(-1) != in)
    throw std::invalid_argument("linear: x " + shape_str(x.shape()) + " must end in the " +
                                std::to_string(in) + " input features of weight " +
                                shape_str(weight.shape()));
  if (bias.defined() && (bias.dim() != 1 || bias.size(0) != out))
    throw std::invalid_argument("linear: bias " + shape_str(bias.shape()) + " must be [" +
                                std::to_string(out) + "] for weight " + shape_str(weight.shape()));
  if (const std::optional<DType> low = autocast_precision_for(x)) {  // engine/autocast.h
    if (device.is_cuda()) return linear_cuda_16bit(x, weight, bias, *low);
    AutocastGuard f32(DType::f32);
    const Tensor b = bias.defined() ? round_to_precision(bias, *low) : Tensor();
    return round_to_precision(linear(round_to_precision(x, *low), round_to_precision(weight, *low), b), *low);
  }
  const int64_t rows = leading_numel(x.shape());
  Shape out_shape = x.shape();
  out_shape.back() = out;
  // x as [rows, in]: x itself when 2-D (any strides the GEMM takes), a view when contiguous, else a copy.
  const Tensor x2 = gemm_ready(x.dim() == 2 ? x.detach() : x.detach().reshape({rows, in}));
  const Tensor w = gemm_ready(weight.detach());
  Tensor y = empty({rows, out}, x.options());
  if (bias.defined()) copy_(y, bias.detach());  // the GEMM adds x W^T onto the bias rows
  const GemmLayout lx = matrix_layout(x2), lw = matrix_layout(w);
  // op(B) = W^T: a row-major W is passed with the transpose flag, a transposed view of W without it.
  if (device.is_cuda()) {
    cuda_ops::gemm("linear", lx.transposed, !lw.transposed, rows, out, in, x2, lx.ld, {0}, w, lw.ld, {0},
                   bias.defined() ? 1.0 : 0.0, y);
  } else {
    dispatch_floating(x.dtype(), "linear", [&](auto tag) {
      using T = decltype(tag);
      cpu::gemm<T>(lx.transposed, !lw.transposed, rows, out, in, T(1), x2.data<T>(), lx.ld, w.data<T>(),
                   lw.ld, bias.defined() ? T(1) : T(0), y.data<T>(), out);
    });
  }
  Tensor result = y.reshape(out_shape);
  autograd::record(
      result, "linear", {x, weight, bias},
      [x2, w, x_shape = x.shape(), rows, out, need_x = x.requires_grad(), need_w = weight.requires_grad(),
       need_b = bias.defined() && bias.requires_grad()](const Tensor& g) -> std::vector<Tensor> {
        const Tensor g2 = g.reshape({rows, out});
        Tensor grad_x, grad_w, grad_b;
        if (need_x) grad_x = matmul_kernel(g2, w, "linear").reshape(x_shape);
        if (need_w) grad_w = matmul_kernel(g2.transpose(0, 1), x2, "linear");
        if (need_b) grad_b = sum(g2, {0});
        return {grad_x, grad_w, grad_b};
      });
  return result;
}

}  // namespace icd
