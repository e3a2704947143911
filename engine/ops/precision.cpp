// round_to_precision: engine/ops/precision.h states the op and why its backward rounds the gradient.
// The rounding itself is kernels::RoundF16Op / RoundBf16Op (engine/kernels/half_math.h), one body for the
// CPU loop here and the CUDA elementwise kernel.
#include "engine/ops/precision.h"

#include <stdexcept>
#include <string>

#include "engine/autograd.h"
#include "engine/cpu/strided.h"
#include "engine/cuda_ops.h"
#include "engine/dispatch.h"
#include "engine/factory.h"
#include "engine/kernels/half_math.h"
#include "engine/kernels/unary_op.h"

namespace icd {
namespace {

template <class Round>
Tensor rounded(const Tensor& x, Round round) {
  if (op_device("round_to_precision", {{"x", x}}).is_cuda()) {
    Tensor out = empty(x.shape(), x.options());
    cuda_ops::map_unary("round_to_precision", kernels::unary_op_call(round), x, out);
    return out;
  }
  const Tensor source = x.detach().contiguous();
  Tensor out = empty(x.shape(), x.options());
  const float* in = source.data<float>();
  float* o = out.data<float>();
  const int64_t n = x.numel();
#pragma omp parallel for schedule(static) if (n >= cpu::kParallelGrain)
  for (int64_t i = 0; i < n; ++i)
    o[i] = round(in[i]);
  return out;
}

Tensor round_values(const Tensor& x, DType precision) {
  return precision == DType::f16 ? rounded(x, kernels::RoundF16Op{}) : rounded(x, kernels::RoundBf16Op{});
}

}  // namespace

Tensor round_to_precision(const Tensor& x, DType precision) {
  if (!x.defined()) throw std::invalid_argument("round_to_precision: undefined tensor");
  if (x.dtype() != DType::f32)
    throw std::invalid_argument(std::string("round_to_precision: x has dtype ") + dtype_name(x.dtype()) +
                                "; only f32 tensors are rounded to a 16-bit format");
  if (precision != DType::f16 && precision != DType::bf16)
    throw std::invalid_argument(std::string("round_to_precision: the precision must be f16 or bf16, got ") +
                                dtype_name(precision));
  Tensor y = round_values(x, precision);
  autograd::record(y, "round_to_precision", {x}, [precision](const Tensor& g) -> std::vector<Tensor> {
    return {round_values(g, precision)};
  });
  return y;
}

}  // namespace icd
