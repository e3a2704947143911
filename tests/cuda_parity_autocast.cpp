// Part of test_cuda_parity (its main skips the whole binary without a GPU): mixed precision on the GPU.
// The conversions to 16-bit storage and back must equal round_to_precision on the CPU bit for bit (the
// same bodies, engine/kernels/half_math.h). conv2d, matmul, bmm and linear under an AutocastGuard run on
// cuDNN/cuBLAS with 16-bit operands and f32 accumulation; on the CPU they run the rounded composition of
// engine/autocast.h. Both round every result to the same format, so they agree except where a different
// order of the f32 sums tips a rounding: at most about one 16-bit ulp of the largest value.
#include <doctest/doctest.h>

#if defined(ICD_WITH_CUDA)
#include <vector>

#include "cuda_parity.h"
#include "engine/autocast.h"
#include "engine/factory.h"
#include "engine/ops/conv.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/matmul.h"
#include "engine/ops/precision.h"
#include "engine/ops/reduce.h"
#include "engine/transfer.h"

using namespace icd;
using testing::host_values;
using testing::kGpu;
using testing::scaled_difference;

namespace {

// One 16-bit ulp relative to the largest value, twice over for the sums of the backward.
double tolerance(DType precision) {
  return precision == DType::f16 ? 2e-3 : 1.6e-2;
}

struct Pair {
  Tensor cpu, gpu;
};

Pair leaf_pair(const Shape& shape, uint64_t seed) {
  Generator gen(seed);
  Tensor cpu = randn(shape, gen);
  Tensor gpu = to_device(cpu, kGpu);
  cpu.set_requires_grad(true);
  gpu.set_requires_grad(true);
  return {cpu, gpu};
}

template <class Op>
void check_autocast_op(DType precision, std::vector<Pair> inputs, Op op) {
  Tensor cpu_out, gpu_out;
  {
    AutocastGuard autocast(precision);
    std::vector<Tensor> cpu_in, gpu_in;
    for (const Pair& p : inputs) {
      cpu_in.push_back(p.cpu);
      gpu_in.push_back(p.gpu);
    }
    cpu_out = op(cpu_in);
    gpu_out = op(gpu_in);
  }
  CHECK(gpu_out.dtype() == DType::f32);
  CHECK(scaled_difference(cpu_out, gpu_out) < tolerance(precision));
  // Every GPU result is a 16-bit value.
  const std::vector<double> values = host_values(gpu_out);
  const std::vector<double> rounded =
      host_values(round_to_precision(to_device(gpu_out, Device::cpu()), precision));
  CHECK(values == rounded);
  Generator gen(99);
  const Tensor g = randn(cpu_out.shape(), gen);
  cpu_out.backward(g);
  gpu_out.backward(to_device(g, kGpu));
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    CAPTURE(i);
    REQUIRE(inputs[i].gpu.grad().defined());
    CHECK(scaled_difference(inputs[i].cpu.grad(), inputs[i].gpu.grad()) < tolerance(precision));
  }
}

}  // namespace

TEST_CASE("16-bit storage on the GPU converts exactly as round_to_precision on the CPU") {
  Generator gen(1);
  Tensor x = mul(randn({1000}, gen), 1000.0);
  for (DType precision : {DType::f16, DType::bf16}) {
    CAPTURE(dtype_name(precision));
    const Tensor stored = to_device(x, kGpu).to(precision);
    CHECK(stored.dtype() == precision);
    CHECK(host_values(stored.to(DType::f32)) == host_values(round_to_precision(x, precision)));
  }
}

TEST_CASE("conv2d, matmul, bmm and linear under autocast: GPU tensor cores against the CPU's rounding") {
  for (DType precision : {DType::f16, DType::bf16}) {
    CAPTURE(dtype_name(precision));
    check_autocast_op(
        precision, {leaf_pair({2, 8, 11, 9}, 2), leaf_pair({16, 8, 3, 3}, 3), leaf_pair({16}, 4)},
        [](const std::vector<Tensor>& t) { return conv2d(t[0], t[1], t[2], Conv2dOptions::square(2, 1)); });
    check_autocast_op(precision, {leaf_pair({3, 5, 24}, 5), leaf_pair({24, 7}, 6)},
                      [](const std::vector<Tensor>& t) { return matmul(t[0], t[1]); });
    check_autocast_op(precision, {leaf_pair({3, 5, 24}, 7), leaf_pair({3, 24, 6}, 8)},
                      [](const std::vector<Tensor>& t) { return bmm(t[0], t[1]); });
    check_autocast_op(precision, {leaf_pair({4, 5, 24}, 9), leaf_pair({10, 24}, 10), leaf_pair({10}, 11)},
                      [](const std::vector<Tensor>& t) { return linear(t[0], t[1], t[2]); });
  }
}

#endif  // ICD_WITH_CUDA
