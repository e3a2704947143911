// engine/cuda_ops.h's matrix products and convolutions with the CUDA backend: the tensors' layouts and
// element pointers handed to cuBLAS (engine/cuda/blas.h) and cuDNN (engine/cuda/cudnn_conv.h).
#include <cstddef>
#include <stdexcept>
#include <string>

#include "engine/cuda/blas.h"
#include "engine/cuda/cudnn_conv.h"
#include "engine/cuda_ops.h"
#include "engine/kernels/gemm_plan.h"

namespace icd::cuda_ops {
namespace {

void require_contiguous(const char* op, const char* name, const Tensor& t) {
  if (t.defined() && !t.is_contiguous())
    throw std::invalid_argument(std::string(op) + " (CUDA): " + name + " " + shape_str(t.shape()) +
                                " must be contiguous");
}

// Element `offset` (in elements) of t, as raw device memory.
const void* element(const Tensor& t, int64_t offset) {
  return static_cast<const char*>(t.raw_data()) + offset * static_cast<int64_t>(dtype_size(t.dtype()));
}

}  // namespace

void gemm(const char* op, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const Tensor& a,
          int64_t lda, const std::vector<int64_t>& a_offsets, const Tensor& b, int64_t ldb,
          const std::vector<int64_t>& b_offsets, double beta, Tensor& c) {
  const int64_t count = static_cast<int64_t>(a_offsets.size());
  require_contiguous(op, "the output", c);
  if (c.numel() != count * M * N)
    throw std::invalid_argument(std::string(op) + " (CUDA): the output " + shape_str(c.shape()) +
                                " does not hold " + std::to_string(count) + " products of " +
                                std::to_string(M) + " x " + std::to_string(N));
  const int device = c.device().index;
  char* out = static_cast<char*>(c.raw_data());
  const int64_t c_element = static_cast<int64_t>(dtype_size(c.dtype()));
  for (const kernels::GemmRun& run : kernels::plan_gemm_runs(a_offsets, b_offsets))
    cuda::gemm_strided_batched(op, device, c.dtype(), trans_a, trans_b, M, N, K, 1.0,
                               element(a, run.a_offset), lda, run.a_stride, element(b, run.b_offset), ldb,
                               run.b_stride, beta, out + run.first * M * N * c_element, N, M * N, run.count);
}

void conv2d_forward(const char* op, const Tensor& x, const Tensor& weight, const Tensor& bias,
                    const Conv2dOptions& options, Tensor& y) {
  require_contiguous(op, "x", x);
  require_contiguous(op, "weight", weight);
  require_contiguous(op, "bias", bias);
  require_contiguous(op, "the output", y);
  cuda::cudnn_conv_forward(
      op, y.device().index, cuda::conv_problem(y.dtype(), x.shape(), weight.shape(), y.shape(), options),
      x.raw_data(), weight.raw_data(), bias.defined() ? bias.raw_data() : nullptr, y.raw_data());
}

void conv2d_backward_data(const char* op, const Tensor& dy, const Tensor& weight,
                          const Conv2dOptions& options, Tensor& dx) {
  require_contiguous(op, "the output gradient", dy);
  require_contiguous(op, "weight", weight);
  require_contiguous(op, "the input gradient", dx);
  cuda::cudnn_conv_backward_data(
      op, dx.device().index, cuda::conv_problem(dx.dtype(), dx.shape(), weight.shape(), dy.shape(), options),
      dy.raw_data(), weight.raw_data(), dx.raw_data());
}

void conv2d_backward_filter(const char* op, const Tensor& x, const Tensor& dy, const Conv2dOptions& options,
                            Tensor& dweight) {
  require_contiguous(op, "x", x);
  require_contiguous(op, "the output gradient", dy);
  require_contiguous(op, "the weight gradient", dweight);
  cuda::cudnn_conv_backward_filter(
      op, dweight.device().index,
      cuda::conv_problem(dweight.dtype(), x.shape(), dweight.shape(), dy.shape(), options), x.raw_data(),
      dy.raw_data(), dweight.raw_data());
}

}  // namespace icd::cuda_ops
