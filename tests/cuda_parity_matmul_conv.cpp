// Part of test_cuda_parity (its main skips the whole binary without a GPU): matmul, bmm and linear on
// cuBLAS and conv2d on cuDNN, against the CPU backend, forward and backward, f32 and f64, with
// transposed, sliced, expanded and permuted inputs, broadcast batch dimensions, and every conv2d option
// (stride, padding, dilation, groups, with and without bias, an empty batch).
//
// Tolerances, relative to the scale of the result (its largest |value|, at least 1): every output is a
// sum of products, which cuBLAS/cuDNN and the CPU's GEMMs add up in different orders (blocking, split
// reductions, fused multiply-adds), so the two differ by a few roundings of partial sums of about the
// result's scale, not bit for bit. f64: 1e-12 (a rounding is 1.1e-16 of the partial sum; the longest
// sums here have a few thousand terms). f32: 1e-5 (a rounding is 6e-8). TF32 tensor cores, which keep
// 10 mantissa bits, would miss the f32 bound by two orders of magnitude: passing it also shows that
// cuBLAS and cuDNN ran in full FP32.
#include <doctest/doctest.h>

#if defined(ICD_WITH_CUDA)
#include <algorithm>
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "cuda_parity.h"
#include "engine/autograd.h"
#include "engine/cuda/device_memory.h"
#include "engine/factory.h"
#include "engine/ops/conv.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/matmul.h"
#include "engine/ops/reduce.h"
#include "engine/random.h"
#include "engine/transfer.h"

using namespace icd;
using testing::kGpu;

namespace {

double product_tolerance(DType dtype) {
  return dtype == DType::f64 ? 1e-12 : 1e-5;
}

// Every element of on_gpu within product_tolerance * max(max |on_cpu|, 1) of on_cpu.
void check_close(const Tensor& on_gpu, const Tensor& on_cpu, const std::string& what) {
  INFO(what);
  REQUIRE(on_gpu.defined());
  REQUIRE(on_cpu.defined());
  CHECK(on_gpu.device() == kGpu);
  CHECK(on_gpu.shape() == on_cpu.shape());
  CHECK(on_gpu.dtype() == on_cpu.dtype());
  const std::vector<double> actual = to_device(on_gpu, Device::cpu()).to_vector<double>();
  const std::vector<double> expected = on_cpu.to_vector<double>();
  REQUIRE(actual.size() == expected.size());
  double scale = 1, worst = 0;
  std::size_t worst_at = 0;
  for (double value : expected)
    scale = std::max(scale, std::abs(value));
  for (std::size_t i = 0; i < actual.size(); ++i) {
    const double error = std::abs(actual[i] - expected[i]);
    if (!(error <= worst)) {  // a NaN difference counts as the worst
      worst = std::isnan(error) ? INFINITY : error;
      worst_at = i;
    }
  }
  if (!actual.empty())
    INFO("largest difference ", worst, " at ", worst_at, ": cpu ", expected[worst_at], ", gpu ",
         actual[worst_at], "; scale ", scale);
  CHECK(worst <= product_tolerance(on_cpu.dtype()) * scale);
}

// An op's input: a random base tensor (uniform in [-1, 1]) and the view of it that the op receives, so
// GPU inputs are views of GPU storage with the CPU's strides.
struct Input {
  Shape base;
  std::function<Tensor(const Tensor&)> view = [](const Tensor& t) { return t; };
};

using Op = std::function<Tensor(const std::vector<Tensor>&)>;

// op on both devices from the same values, in f32 and f64: the outputs, then the gradients of
// sum(out * w), for a random w, with respect to every base tensor.
void check_parity(const std::string& name, const std::vector<Input>& inputs, const Op& op, uint64_t seed) {
  for (DType dtype : {DType::f32, DType::f64}) {
    const std::string what = name + " " + dtype_name(dtype);
    Generator gen(seed);
    std::vector<Tensor> cpu_leaves, gpu_leaves, cpu_views, gpu_views;
    for (const Input& input : inputs) {
      const Tensor base = uniform(input.base, -1.0, 1.0, gen, {dtype});
      cpu_leaves.push_back(base.clone().set_requires_grad());
      gpu_leaves.push_back(to_device(base, kGpu).set_requires_grad());
    }
    for (std::size_t i = 0; i < inputs.size(); ++i) {
      cpu_views.push_back(inputs[i].view(cpu_leaves[i]));
      gpu_views.push_back(inputs[i].view(gpu_leaves[i]));
    }
    const Tensor cpu_out = op(cpu_views), gpu_out = op(gpu_views);
    check_close(gpu_out, cpu_out, what + " forward");
    const Tensor weight = randn(cpu_out.shape(), gen, {dtype});
    sum(mul(cpu_out, weight)).backward();
    sum(mul(gpu_out, to_device(weight, kGpu))).backward();
    for (std::size_t i = 0; i < inputs.size(); ++i) {
      const std::string grad_what = what + " gradient of input " + std::to_string(i);
      if (!cpu_leaves[i].grad().defined()) {
        INFO(grad_what);
        CHECK_FALSE(gpu_leaves[i].grad().defined());
        continue;
      }
      check_close(gpu_leaves[i].grad(), cpu_leaves[i].grad(), grad_what);
    }
  }
}

Tensor transposed(const Tensor& t) {
  return t.transpose(-1, -2);
}

Op matmul_op() {
  return [](const std::vector<Tensor>& in) { return matmul(in[0], in[1]); };
}

Op conv_op(const Conv2dOptions& options, bool with_bias) {
  return [options, with_bias](const std::vector<Tensor>& in) {
    return conv2d(in[0], in[1], with_bias ? in[2] : Tensor(), options);
  };
}

}  // namespace

TEST_CASE("matmul on CUDA tensors (cuBLAS) matches the CPU: every rank, transposes, slices, broadcasting") {
  check_parity("matmul 2-D", {{{3, 5}}, {{5, 4}}}, matmul_op(), 1);
  check_parity("matmul of transposed views", {{{5, 3}, transposed}, {{4, 5}, transposed}}, matmul_op(), 2);
  // A column slice (row stride 8) goes to cuBLAS as it is; an expanded matrix (stride 0) is copied first.
  check_parity("matmul of a column slice and an expanded matrix",
               {{{3, 8}, [](const Tensor& t) { return t.narrow(1, 2, 5); }},
                {{5, 1},
                 [](const Tensor& t) {
                   return t.expand({5, 4});
                 }}},
               matmul_op(), 3);
  check_parity("matmul batched, permuted",
               {{{3, 5, 2},
                 [](const Tensor& t) {
                   return t.permute({2, 0, 1});
                 }},
                {{2, 5, 4}}},
               matmul_op(), 4);
  // Batch [2, 3]: a repeats each matrix 3 times, b cycles through 3: two strided-batched runs.
  check_parity("matmul with broadcast batch dims", {{{2, 1, 3, 5}}, {{3, 5, 4}}}, matmul_op(), 5);
  check_parity("matmul [..., M, K] x [K, N] folded into one GEMM", {{{2, 3, 5}}, {{5, 4}}}, matmul_op(), 6);
  check_parity("matmul vector x matrix", {{{5}}, {{5, 4}}}, matmul_op(), 7);
  check_parity("matmul matrix x vector", {{{3, 5}}, {{5}}}, matmul_op(), 8);
  check_parity("matmul dot product", {{{5}}, {{5}}}, matmul_op(), 9);
  check_parity("matmul with K = 0 (zeros)", {{{3, 0}}, {{0, 4}}}, matmul_op(), 10);
  check_parity("matmul large enough for cuBLAS's tiled kernels", {{{64, 96}}, {{96, 80}}}, matmul_op(), 11);
}

TEST_CASE("bmm and linear on CUDA tensors (cuBLAS) match the CPU") {
  const Op bmm_op = [](const std::vector<Tensor>& in) { return bmm(in[0], in[1]); };
  check_parity("bmm with a transposed b", {{{2, 3, 5}}, {{2, 4, 5}, transposed}}, bmm_op, 20);
  check_parity("bmm of larger matrices", {{{8, 33, 47}}, {{8, 47, 29}}}, bmm_op, 21);

  const Op linear_op = [](const std::vector<Tensor>& in) { return linear(in[0], in[1], in[2]); };
  const Op linear_without_bias = [](const std::vector<Tensor>& in) { return linear(in[0], in[1]); };
  check_parity("linear with bias, 3-D x", {{{2, 3, 5}}, {{4, 5}}, {{4}}}, linear_op, 22);
  check_parity("linear without bias, permuted x, transposed weight",
               {{{5, 2, 3},
                 [](const Tensor& t) {
                   return t.permute({1, 2, 0});
                 }},
                {{5, 4}, transposed}},
               linear_without_bias, 23);
  check_parity("linear with 0 input features (the bias alone)", {{{3, 0}}, {{4, 0}}, {{4}}}, linear_op, 24);
  check_parity("linear of a batch of 40 rows", {{{40, 70}}, {{30, 70}}, {{30}}}, linear_op, 25);
}

TEST_CASE("conv2d on CUDA tensors (cuDNN) matches the CPU: stride, padding, dilation, groups, bias") {
  check_parity("conv2d 3x3, padding 1, bias", {{{2, 3, 7, 6}}, {{4, 3, 3, 3}}, {{4}}},
               conv_op(Conv2dOptions::square(1, 1), true), 30);
  check_parity("conv2d stride 2, padding (1, 0), 3x2 kernel, no bias", {{{2, 3, 9, 8}}, {{5, 3, 3, 2}}},
               conv_op({2, 2, 1, 0, 1, 1, 1}, false), 31);
  check_parity("conv2d dilation 2, padding 2", {{{1, 2, 9, 8}}, {{3, 2, 3, 3}}, {{3}}},
               conv_op(Conv2dOptions::square(1, 2, 2), true), 32);
  check_parity("conv2d groups 2, stride (2, 1)", {{{2, 4, 6, 5}}, {{6, 2, 3, 3}}, {{6}}},
               conv_op({2, 1, 1, 1, 1, 1, 2}, true), 33);
  check_parity("conv2d depthwise", {{{2, 4, 6, 6}}, {{4, 1, 3, 3}}, {{4}}},
               conv_op(Conv2dOptions::square(1, 1, 1, 4), true), 34);
  check_parity("conv2d groups with dilation, no bias", {{{1, 6, 9, 9}}, {{3, 2, 3, 3}}},
               conv_op({1, 1, 2, 1, 2, 1, 3}, false), 35);
  check_parity("conv2d 1x1", {{{2, 3, 5, 5}}, {{4, 3, 1, 1}}, {{4}}}, conv_op({}, true), 36);
  check_parity("conv2d of a permuted x and a transposed weight",
               {{{3, 2, 6, 7},
                 [](const Tensor& t) {
                   return t.permute({1, 0, 2, 3});
                 }},
                {{3, 4, 3, 3}, [](const Tensor& t) { return t.transpose(0, 1); }}},
               conv_op(Conv2dOptions::square(1, 1), false), 37);
  check_parity("conv2d of an empty batch", {{{0, 3, 5, 5}}, {{4, 3, 3, 3}}, {{4}}},
               conv_op(Conv2dOptions::square(1, 1), true), 38);
  check_parity("conv2d of a 16 -> 32 channel 20x20 map", {{{4, 16, 20, 20}}, {{32, 16, 3, 3}}, {{32}}},
               conv_op(Conv2dOptions::square(1, 1), true), 39);
}

TEST_CASE("conv2d on CUDA: a repeated problem reuses its algorithm and gives the same values") {
  Generator gen(40);
  const Tensor x = uniform({2, 8, 12, 12}, -1.0, 1.0, gen), w = uniform({8, 8, 3, 3}, -1.0, 1.0, gen);
  const Tensor x_gpu = to_device(x, kGpu), w_gpu = to_device(w, kGpu);
  const Conv2dOptions options = Conv2dOptions::square(2, 1);
  const Tensor first = conv2d(x_gpu, w_gpu, Tensor(), options),
               second = conv2d(x_gpu, w_gpu, Tensor(), options);
  check_close(second, conv2d(x, w, Tensor(), options), "second call against the CPU");
  check_close(first, conv2d(x, w, Tensor(), options), "first call against the CPU");
}

TEST_CASE("matmul, linear and conv2d refuse a mix of CPU and CUDA tensors, naming the arguments") {
  Generator gen(41);
  const Tensor on_cpu = randn({2, 3}, gen), on_gpu = to_device(randn({3, 2}, gen), kGpu);
  CHECK_THROWS_WITH_AS(matmul(on_cpu, on_gpu), doctest::Contains("matmul: b is on cuda:0 but a is on cpu"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(bmm(on_gpu.unsqueeze(0), on_cpu.unsqueeze(0)),
                       doctest::Contains("bmm: b is on cpu but a is on cuda:0"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(linear(on_gpu.transpose(0, 1), on_cpu, to_device(randn({2}, gen), kGpu)),
                       doctest::Contains("linear: weight is on cpu but x is on cuda:0"),
                       std::invalid_argument);
  const Tensor image = to_device(randn({1, 2, 5, 5}, gen), kGpu), filter = randn({3, 2, 3, 3}, gen);
  CHECK_THROWS_WITH_AS(conv2d(image, filter, Tensor()),
                       doctest::Contains("conv2d: weight is on cpu but x is on cuda:0"),
                       std::invalid_argument);
}

TEST_CASE(
    "cuBLAS and cuDNN calls give every block (cuDNN workspaces included) back to the caching allocator") {
  const CachingAllocator::Stats before = cuda::cuda_caching_allocator(0).stats();
  {
    Generator gen(42);
    Tensor x = to_device(randn({2, 8, 16, 16}, gen), kGpu).set_requires_grad();
    Tensor w = to_device(randn({16, 8, 3, 3}, gen), kGpu).set_requires_grad();
    Tensor fc = to_device(randn({10, 16}, gen), kGpu).set_requires_grad();
    const Tensor features = mean(conv2d(x, w, Tensor(), Conv2dOptions::square(1, 1)), {2, 3});
    sum(linear(features, fc)).backward();
    CHECK(x.grad().device() == kGpu);
    CHECK(w.grad().device() == kGpu);
    CHECK(fc.grad().device() == kGpu);
  }
  CHECK(cuda::cuda_caching_allocator(0).stats().in_use_bytes == before.in_use_bytes);
}
#endif
