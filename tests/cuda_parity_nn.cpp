// Part of test_cuda_parity (its main skips the whole binary without a GPU): pooling, resizing and
// normalisation on CUDA tensors (engine/cuda/pool.cu, resize.cu, norm.cu) against the CPU, forward and
// backward, in f32 and f64, with odd sizes, padding, strides, dilation, ceil_mode, ties and NaN, affine
// parameters or none, running statistics, and non-contiguous inputs.
//
// Tolerances, as the largest |gpu - cpu| over the largest |cpu|:
// - pooling and nearest resizing: 0. Both devices select the same elements and add the same values in the
//   same order (the GPU's backward gathers in the order the CPU's scatter adds; window sums accumulate in
//   double on both), with no multiply that could fuse into a multiply-add.
// - bilinear resizing: 1e-5 (f32), 1e-13 (f64). The products and sums are the same, but either compiler
//   may fuse a multiply and an add into one rounding where the other does not. In the source coordinate
//   src = scale (d + 0.5) - 0.5 that moves an interpolation weight by up to an ulp of src (about 1e-6
//   for coordinates near 10 in f32, 2e-15 in f64), which changes an output by that much times the
//   difference of two neighbouring pixels; the weighted sums add a few roundings more.
// - batch, group and layer norm: 1e-5 (f32), 1e-12 (f64). The statistics and the backward's sums add the
//   same terms in double but in another order (a tree over a block's threads against the CPU's eight
//   accumulators), the per-element maps run in the dtype where either compiler may fuse multiply-adds, and
//   dx = a g + c_x (x - mu) + c_0 adds terms of opposite signs, losing about a digit against the largest
//   gradient.
#include <doctest/doctest.h>

#if defined(ICD_WITH_CUDA)
#include <algorithm>
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "cuda_parity.h"
#include "engine/autograd.h"
#include "engine/factory.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/norm.h"
#include "engine/ops/pool.h"
#include "engine/ops/reduce.h"
#include "engine/ops/resize.h"
#include "engine/random.h"
#include "engine/transfer.h"

using namespace icd;
using testing::host_values;
using testing::kGpu;
using testing::scaled_difference;

namespace {

using Op = std::function<Tensor(const std::vector<Tensor>&)>;

// f(leaves) on both devices (f takes its views inside, so the ops see non-contiguous inputs): the values,
// and the gradients of sum(f * weights) for fixed random weights, twice (the second pass accumulates).
void check_parity(const std::string& what, const std::vector<Tensor>& cpu_leaves, const Op& f,
                  double tolerance) {
  INFO(what, " ", dtype_name(cpu_leaves[0].dtype()));
  std::vector<Tensor> gpu_leaves;
  for (const Tensor& t : cpu_leaves)
    gpu_leaves.push_back(to_device(t.detach(), kGpu).set_requires_grad(t.requires_grad()));
  const Tensor cpu_out = f(cpu_leaves), gpu_out = f(gpu_leaves);
  REQUIRE(gpu_out.device() == kGpu);
  REQUIRE(gpu_out.shape() == cpu_out.shape());
  CHECK(scaled_difference(cpu_out, gpu_out) <= tolerance);
  Generator gen(9);
  const Tensor weights = randn(cpu_out.shape(), gen, {cpu_out.dtype()});
  const Tensor gpu_weights = to_device(weights, kGpu);
  for (int pass = 0; pass < 2; ++pass) {
    sum(mul(f(cpu_leaves), weights)).backward();
    sum(mul(f(gpu_leaves), gpu_weights)).backward();
    for (std::size_t i = 0; i < cpu_leaves.size(); ++i) {
      INFO("gradient of leaf ", i, ", pass ", pass);
      if (!cpu_leaves[i].grad().defined()) {
        CHECK_FALSE(gpu_leaves[i].grad().defined());
        continue;
      }
      REQUIRE(gpu_leaves[i].grad().defined());
      CHECK(gpu_leaves[i].grad().device() == kGpu);
      CHECK(scaled_difference(cpu_leaves[i].grad(), gpu_leaves[i].grad()) <= tolerance);
    }
  }
}

Tensor leaf(const Shape& shape, DType dtype, uint64_t seed) {
  Generator gen(seed);
  return randn(shape, gen, {dtype}).set_requires_grad(true);
}

// Values on a grid of halves: many ties inside pooling windows.
Tensor tied_leaf(const Shape& shape, DType dtype, uint64_t seed) {
  Generator gen(seed);
  std::vector<double> values = randn(shape, gen, {DType::f64}).to_vector<double>();
  for (double& v : values)
    v = std::floor(v * 2) / 2;
  return from_vector(values, shape).to(dtype).set_requires_grad(true);
}

// [2, 9, 3, 11] stored, seen as [2, 3, 9, 11] through a permutation.
Tensor planes_view(const Tensor& t) {
  return t.permute({0, 2, 1, 3});
}

}  // namespace

TEST_CASE("max_pool2d on the GPU: the CPU's maxima, argmax ties, NaN and gradients, exactly") {
  const std::vector<Pool2dOptions> options = {
      {.kernel = 3, .stride = 2, .padding = 1},
      {.kernel = {3, 2}, .stride = {2, 1}, .padding = {1, 0}, .dilation = {2, 1}, .ceil_mode = true},
      {.kernel = 3, .stride = 1},  // overlapping windows: an element may win several of them
      {.kernel = 2},
      {.kernel = {2, 3}, .stride = 2, .padding = {1, 1}, .ceil_mode = true},
  };
  for (DType dtype : {DType::f32, DType::f64}) {
    for (const Pool2dOptions& o : options) {
      const std::string what =
          "max_pool2d kernel " + std::to_string(o.kernel.h) + "x" + std::to_string(o.kernel.w);
      check_parity(
          what, {tied_leaf({2, 9, 3, 11}, dtype, 1)},
          [o](const std::vector<Tensor>& in) { return max_pool2d(planes_view(in[0]), o); }, 0.0);
      check_parity(
          what + " 3-d", {leaf({3, 7, 6}, dtype, 2)},
          [o](const std::vector<Tensor>& in) { return max_pool2d(in[0].transpose(1, 2), o); }, 0.0);
    }
    // NaN wins its windows (the gradient goes to the last NaN), -inf windows pick their first tap.
    const double nan = std::nan(""), inf = INFINITY;
    const Tensor special =
        from_vector(std::vector<double>{1, 3, 3, 0, 2, 3, 5, nan, -inf, -inf, 4, 4, -inf, -inf, nan, 1},
                    {1, 1, 4, 4})
            .to(dtype)
            .set_requires_grad(true);
    check_parity(
        "max_pool2d NaN and -inf", {special},
        [](const std::vector<Tensor>& in) { return max_pool2d(in[0], {.kernel = 2, .stride = 1}); }, 0.0);
    // Without a gradient no argmax is kept; the values are the same.
    const Tensor x = tied_leaf({2, 9, 3, 11}, dtype, 3).detach();
    CHECK(scaled_difference(max_pool2d(x, {.kernel = 3, .stride = 2}),
                            max_pool2d(to_device(x, kGpu), {.kernel = 3, .stride = 2})) == 0.0);
  }
}

TEST_CASE("avg_pool2d and adaptive_avg_pool2d on the GPU give the CPU's values and gradients exactly") {
  const std::vector<Pool2dOptions> options = {
      {.kernel = 3, .stride = 2, .padding = 1},
      {.kernel = 3, .stride = 2, .padding = 1, .count_include_pad = false},
      {.kernel = {2, 3}, .stride = {2, 2}, .padding = {1, 1}, .ceil_mode = true},
      {.kernel = {2, 3}, .stride = {2, 2}, .padding = {1, 1}, .ceil_mode = true, .count_include_pad = false},
      {.kernel = 2},
  };
  for (DType dtype : {DType::f32, DType::f64}) {
    for (const Pool2dOptions& o : options)
      check_parity(
          "avg_pool2d", {leaf({2, 9, 3, 11}, dtype, 4)},
          [o](const std::vector<Tensor>& in) { return avg_pool2d(planes_view(in[0]), o); }, 0.0);
    for (auto [out_h, out_w] : std::vector<std::pair<int64_t, int64_t>>{{4, 5}, {1, 1}, {13, 17}, {9, 11}})
      check_parity(
          "adaptive_avg_pool2d " + std::to_string(out_h) + "x" + std::to_string(out_w),
          {leaf({2, 9, 3, 11}, dtype, 5)},
          [out_h, out_w](const std::vector<Tensor>& in) {
            return adaptive_avg_pool2d(planes_view(in[0]), out_h, out_w);
          },
          0.0);
  }
}

TEST_CASE("upsample_nearest2d and interpolate_bilinear on the GPU match the CPU, forward and backward") {
  struct Size {
    int64_t out_h, out_w;
  };
  const std::vector<Size> sizes = {{18, 22}, {13, 7}, {3, 4}, {1, 1}, {9, 11}, {22, 30}};
  for (DType dtype : {DType::f32, DType::f64}) {
    const double bilinear_tolerance = dtype == DType::f32 ? 1e-5 : 1e-13;
    for (const Size s : sizes) {
      const std::string what = std::to_string(s.out_h) + "x" + std::to_string(s.out_w);
      check_parity(
          "upsample_nearest2d " + what, {leaf({2, 9, 3, 11}, dtype, 6)},
          [s](const std::vector<Tensor>& in) {
            return upsample_nearest2d(planes_view(in[0]), s.out_h, s.out_w);
          },
          0.0);
      for (bool align_corners : {false, true})
        check_parity(
            "interpolate_bilinear " + what + (align_corners ? " align_corners" : ""),
            {leaf({2, 9, 3, 11}, dtype, 7)},
            [s, align_corners](const std::vector<Tensor>& in) {
              return interpolate_bilinear(planes_view(in[0]), s.out_h, s.out_w, align_corners);
            },
            bilinear_tolerance);
    }
    for (double scale : {2.0, 1.5, 0.5, 3.0})
      check_parity(
          "upsample_nearest2d scale " + std::to_string(scale), {leaf({2, 9, 3, 11}, dtype, 8)},
          [scale](const std::vector<Tensor>& in) { return upsample_nearest2d(planes_view(in[0]), scale); },
          0.0);
    // 26 -> 22: torch's f32 ratio decides the source rows (engine/ops/resize.cpp).
    check_parity(
        "upsample_nearest2d 26 -> 22", {leaf({1, 2, 26, 5}, dtype, 9)},
        [](const std::vector<Tensor>& in) { return upsample_nearest2d(in[0], 22, 5); }, 0.0);
  }
}

TEST_CASE("pooling and resizing on the GPU reject bad arguments as the CPU does") {
  Generator gen(10);
  const Tensor flat = to_device(randn({4, 5}, gen), kGpu);
  CHECK_THROWS_AS(max_pool2d(flat, {.kernel = 2}), std::invalid_argument);
  CHECK_THROWS_AS(avg_pool2d(flat, {.kernel = 2}), std::invalid_argument);
  CHECK_THROWS_AS(adaptive_avg_pool2d(flat, 2, 2), std::invalid_argument);
  CHECK_THROWS_AS(upsample_nearest2d(flat, 2, 2), std::invalid_argument);
  CHECK_THROWS_AS(interpolate_bilinear(flat, 2, 2, false), std::invalid_argument);
  const Tensor image = to_device(randn({1, 1, 4, 4}, gen), kGpu);
  CHECK_THROWS_AS(max_pool2d(image, {.kernel = 2, .padding = 2}), std::invalid_argument);
  CHECK_THROWS_AS(upsample_nearest2d(image, 0.0), std::invalid_argument);
}

namespace {

double norm_tolerance(DType dtype) {
  return dtype == DType::f32 ? 1e-5 : 1e-12;
}

// Running statistics for both devices; an op picks the pair member on its input's device.
struct RunningStats {
  Tensor cpu_mean, cpu_var, gpu_mean, gpu_var;
  RunningStats(int64_t C, DType dtype, uint64_t seed) {
    Generator gen(seed);
    cpu_mean = randn({C}, gen, {dtype});
    cpu_var = uniform({C}, 0.5, 2.0, gen, {dtype});
    gpu_mean = to_device(cpu_mean, kGpu);
    gpu_var = to_device(cpu_var, kGpu);
  }
  const Tensor& mean(const Tensor& x) const { return x.device().is_cuda() ? gpu_mean : cpu_mean; }
  const Tensor& var(const Tensor& x) const { return x.device().is_cuda() ? gpu_var : cpu_var; }
};

}  // namespace

TEST_CASE("batch_norm on the GPU: training with running statistics, eval, with and without affine") {
  for (DType dtype : {DType::f32, DType::f64}) {
    const double tolerance = norm_tolerance(dtype);
    // x [3, 4, 5, 7] seen through a permutation of [3, 5, 4, 7].
    auto view = [](const Tensor& t) { return t.permute({0, 2, 1, 3}); };
    for (bool training : {true, false}) {
      const RunningStats stats(4, dtype, 11);
      const std::string mode = training ? "training" : "eval";
      check_parity(
          "batch_norm affine " + mode,
          {leaf({3, 5, 4, 7}, dtype, 12), leaf({4}, dtype, 13), leaf({4}, dtype, 14)},
          [&](const std::vector<Tensor>& in) {
            return batch_norm(view(in[0]), in[1], in[2], stats.mean(in[0]), stats.var(in[0]), training, 0.1,
                              1e-5);
          },
          tolerance);
      // Updated three times (the forward and two backward passes) on each device.
      CHECK(scaled_difference(stats.cpu_mean, stats.gpu_mean) <= tolerance);
      CHECK(scaled_difference(stats.cpu_var, stats.gpu_var) <= tolerance);
    }
    check_parity(
        "batch_norm no affine, no running statistics", {leaf({3, 5, 4, 7}, dtype, 15)},
        [&](const std::vector<Tensor>& in) {
          return batch_norm(view(in[0]), Tensor(), Tensor(), Tensor(), Tensor(), true, 0.1, 1e-5);
        },
        tolerance);
    check_parity(
        "batch_norm [N, C] with weight only", {leaf({6, 5}, dtype, 16), leaf({5}, dtype, 17)},
        [&](const std::vector<Tensor>& in) {
          return batch_norm(in[0], in[1], Tensor(), Tensor(), Tensor(), true, 0.1, 1e-3);
        },
        tolerance);
  }
}

TEST_CASE("group_norm and layer_norm on the GPU match the CPU, forward and backward") {
  for (DType dtype : {DType::f32, DType::f64}) {
    const double tolerance = norm_tolerance(dtype);
    for (int64_t groups : {1, 3, 6}) {
      check_parity(
          "group_norm affine, groups " + std::to_string(groups),
          {leaf({2, 3, 6, 5}, dtype, 18), leaf({6}, dtype, 19), leaf({6}, dtype, 20)},
          [groups](const std::vector<Tensor>& in) {
            return group_norm(in[0].permute({0, 2, 1, 3}), groups, in[1], in[2], 1e-5);
          },
          tolerance);
      check_parity(
          "group_norm no affine, groups " + std::to_string(groups), {leaf({2, 6, 7}, dtype, 21)},
          [groups](const std::vector<Tensor>& in) {
            return group_norm(in[0], groups, Tensor(), Tensor(), 1e-5);
          },
          tolerance);
    }
    // Rows of 10 (more rows than the 64 blocks of the parameter gradients' partial sums) and of 3 x 10.
    check_parity(
        "layer_norm [10] affine", {leaf({70, 10}, dtype, 22), leaf({10}, dtype, 23), leaf({10}, dtype, 24)},
        [](const std::vector<Tensor>& in) { return layer_norm(in[0], {10}, in[1], in[2], 1e-5); }, tolerance);
    check_parity(
        "layer_norm [3, 10] on a transposed input",
        {leaf({4, 10, 3}, dtype, 25), leaf({3, 10}, dtype, 26), leaf({3, 10}, dtype, 27)},
        [](const std::vector<Tensor>& in) {
          return layer_norm(in[0].transpose(1, 2), {3, 10}, in[1], in[2], 1e-5);
        },
        tolerance);
    check_parity(
        "layer_norm weight only", {leaf({5, 9}, dtype, 28), leaf({9}, dtype, 29)},
        [](const std::vector<Tensor>& in) { return layer_norm(in[0], {9}, in[1], Tensor(), 1e-5); },
        tolerance);
    check_parity(
        "layer_norm bias only", {leaf({5, 9}, dtype, 30), leaf({9}, dtype, 31)},
        [](const std::vector<Tensor>& in) { return layer_norm(in[0], {9}, Tensor(), in[1], 1e-5); },
        tolerance);
    check_parity(
        "layer_norm no affine", {leaf({5, 9}, dtype, 32)},
        [](const std::vector<Tensor>& in) { return layer_norm(in[0], {9}, Tensor(), Tensor(), 1e-5); },
        tolerance);
  }
}

TEST_CASE("normalisation on the GPU rejects bad arguments and tensors on two devices") {
  Generator gen(33);
  const Tensor x = to_device(randn({2, 4, 3}, gen), kGpu);
  CHECK_THROWS_AS(group_norm(x, 3, Tensor(), Tensor()), std::invalid_argument);
  CHECK_THROWS_AS(layer_norm(x, {4}, Tensor(), Tensor()), std::invalid_argument);
  CHECK_THROWS_AS(batch_norm(x, Tensor(), Tensor(), Tensor(), Tensor(), false), std::invalid_argument);
  CHECK_THROWS_AS(batch_norm(x, randn({4}, gen), Tensor(), Tensor(), Tensor(), true), std::invalid_argument);
}

#endif  // ICD_WITH_CUDA
