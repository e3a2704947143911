// Part of test_kernel_bodies: the CPU launch of the pooling, resizing and normalisation bodies the CUDA
// backend runs (engine/kernels/pool_math.h, resize_math.h, norm_math.h), checked by hand and, launched over
// whole tensors the way engine/cuda/pool.cu, resize.cu and norm.cu launch them, against the CPU ops'
// outputs and gradients. Runs on every machine, GPU or not.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <utility>
#include <vector>

#include "engine/autograd.h"
#include "engine/factory.h"
#include "engine/kernels/norm_math.h"
#include "engine/kernels/pool_math.h"
#include "engine/kernels/resize_math.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/norm.h"
#include "engine/ops/pool.h"
#include "engine/ops/reduce.h"
#include "engine/ops/resize.h"
#include "engine/random.h"

using namespace icd::kernels;

// ---- pooling and resizing

namespace {

// An [N, C, H, W] f64 tensor with values on a coarse grid (many ties for max pooling).
icd::Tensor tie_heavy(const icd::Shape& shape, uint64_t seed) {
  icd::Generator gen(seed);
  std::vector<double> values = icd::randn(shape, gen, {icd::DType::f64}).to_vector<double>();
  for (double& v : values)
    v = std::floor(v * 2) / 2;
  return icd::from_vector(values, shape, {icd::DType::f64});
}

// Runs body(k) for every k < n into a vector.
template <class T, class Body>
std::vector<T> launch_all(int64_t n, Body body) {
  std::vector<T> out(n);
  for (int64_t k = 0; k < n; ++k)
    out[k] = body(k);
  return out;
}

// The largest |a - b| over the largest |b| (exact agreement gives 0; NaN where b has none gives NaN).
double scaled_gap(const std::vector<double>& a, const std::vector<double>& b) {
  REQUIRE(a.size() == b.size());
  double worst = 0, scale = 1e-300;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (std::isnan(a[i]) && std::isnan(b[i])) continue;
    worst = std::max(worst, std::abs(a[i] - b[i]));
    scale = std::max(scale, std::abs(b[i]));
  }
  return worst / scale;
}

// The gradient the CPU op gives x for the upstream gradient `upstream` (a fixed random tensor).
std::vector<double> cpu_op_gradient(const icd::Tensor& x, const icd::Tensor& y, const icd::Tensor& upstream) {
  icd::sum(icd::mul(y, upstream)).backward();
  return x.grad().to_vector<double>();
}

}  // namespace

TEST_CASE("WindowAxis spans: strided, padded, dilated and adaptive windows, by hand") {
  const WindowAxis padded{5, 3, 3, 2, 1, 1, false};  // kernel 3, stride 2, padding 1 over 5 inputs
  const int64_t expected[3][4] = {{0, 2, 1, 3}, {1, 4, 1, 3}, {3, 5, 1, 3}};
  for (int64_t i = 0; i < 3; ++i) {
    const WindowSpan s = padded.span(i);
    CAPTURE(i);
    CHECK(s.begin == expected[i][0]);
    CHECK(s.end == expected[i][1]);
    CHECK(s.step == expected[i][2]);
    CHECK(s.padded == expected[i][3]);
  }
  const WindowAxis dilated{6, 4, 3, 1, 1, 2, false};  // taps i - 1, i + 1, i + 3 over 6 inputs
  CHECK(dilated.span(0).begin == 1);
  CHECK(dilated.span(0).end == 4);  // taps 1, 3 (-1 is padding)
  CHECK(dilated.span(0).taps() == 2);
  CHECK(dilated.span(3).begin == 2);
  CHECK(dilated.span(3).end == 5);  // taps 2, 4 (6 is past the end)
  CHECK(dilated.span(3).contains(4));
  CHECK_FALSE(dilated.span(3).contains(3));
  const WindowAxis adaptive{5, 3, 1, 1, 0, 1, true};  // [0, 2), [1, 4), [3, 5)
  CHECK(adaptive.span(0).begin == 0);
  CHECK(adaptive.span(0).end == 2);
  CHECK(adaptive.span(1).begin == 1);
  CHECK(adaptive.span(1).end == 4);
  CHECK(adaptive.span(2).begin == 3);
  CHECK(adaptive.span(2).end == 5);
  int64_t first = -1, last = -1;
  adaptive.outputs_reading(3, first, last);
  CHECK(first == 1);
  CHECK(last == 2);
}

TEST_CASE("WindowAxis::outputs_reading covers every window that reads a position") {
  const std::vector<WindowAxis> axes = {{5, 3, 3, 2, 1, 1, false}, {6, 4, 3, 1, 1, 2, false},
                                        {9, 4, 2, 3, 1, 2, false}, {7, 7, 3, 1, 1, 1, false},
                                        {5, 3, 1, 1, 0, 1, true},  {4, 9, 1, 1, 0, 1, true},
                                        {13, 4, 1, 1, 0, 1, true}, {3, 1, 1, 1, 0, 1, true}};
  for (const WindowAxis& axis : axes)
    for (int64_t h = 0; h < axis.in; ++h) {
      int64_t first = 0, last = 0;
      axis.outputs_reading(h, first, last);
      for (int64_t i = 0; i < axis.out; ++i) {
        CAPTURE(axis.in);
        CAPTURE(axis.out);
        CAPTURE(h);
        CAPTURE(i);
        if (axis.span(i).contains(h)) CHECK((i >= first && i <= last));
      }
    }
}

TEST_CASE(
    "max_pool_element: ties pick the first maximum, NaN wins, the gather sums each argmax's gradients") {
  const double nan = std::nan(""), inf = INFINITY;
  const std::vector<double> plane = {1, 3, 3, 0, 2, 3, 5, nan, -inf, -inf, 4, 4};        // 3 x 4
  const PoolGeometry g{1, {3, 2, 2, 1, 0, 1, false}, {4, 3, 2, 1, 0, 1, false}, false};  // kernel 2, stride 1
  std::vector<double> y(6);
  std::vector<int64_t> argmax(6);
  for (int64_t o = 0; o < 6; ++o)
    max_pool_element(plane.data(), g, o, y.data(), argmax.data());
  CHECK(y[0] == 3);
  CHECK(y[1] == 5);
  CHECK(std::isnan(y[2]));
  CHECK(y[3] == 3);
  CHECK(y[4] == 5);
  CHECK(std::isnan(y[5]));
  CHECK(argmax == std::vector<int64_t>{1, 6, 7, 5, 6, 7});
  const std::vector<double> upstream = {1, 2, 3, 4, 5, 6};
  const std::vector<double> grad = launch_all<double>(
      12, [&](int64_t i) { return max_pool_grad_element(upstream.data(), argmax.data(), g, i); });
  CHECK(grad == std::vector<double>{0, 1, 0, 0, 0, 4, 7, 9, 0, 0, 0, 0});
  // A window of -inf gives its first tap; without argmax only y is written.
  const std::vector<double> low = {-inf, -inf};
  const PoolGeometry row{1, {1, 1, 1, 1, 0, 1, false}, {2, 1, 2, 1, 0, 1, false}, false};
  double out = 0;
  int64_t at = -7;
  max_pool_element(low.data(), row, 0, &out, &at);
  CHECK(out == -inf);
  CHECK(at == 0);
  max_pool_element(low.data(), row, 0, &out, static_cast<int64_t*>(nullptr));
  CHECK(out == -inf);
}

TEST_CASE("avg_pool_element: count_include_pad divisors, by hand") {
  const std::vector<double> plane = {1, 2, 3, 4, 5, 6};  // 2 x 3
  PoolGeometry g{1, {2, 2, 3, 1, 1, 1, false}, {3, 3, 3, 1, 1, 1, false}, true};
  CHECK(avg_pool_element(plane.data(), g, 0) == 12.0 / 9.0);  // 1 + 2 + 4 + 5 over 3 x 3
  CHECK(avg_pool_element(plane.data(), g, 1) == 21.0 / 9.0);
  g.count_padding = false;
  CHECK(avg_pool_element(plane.data(), g, 0) == 3.0);  // over the 4 elements inside
  CHECK(avg_pool_element(plane.data(), g, 1) == 3.5);
  // Element (0, 0) is in windows (0, 0), (0, 1), (1, 0), (1, 1) of 4, 6, 4, 6 elements.
  const std::vector<double> ones(6, 1.0);
  CHECK(avg_pool_grad_element(ones.data(), g, 0) == 1.0 / 4 + 1.0 / 6 + 1.0 / 4 + 1.0 / 6);
}

TEST_CASE("pool bodies give the CPU ops' outputs and gradients bit for bit") {
  using icd::Pool2dOptions;
  const icd::Tensor base = tie_heavy({2, 3, 9, 11}, 21);
  struct Case {
    Pool2dOptions options;
    int64_t out_h, out_w;  // the pooled size, by hand
  };
  const std::vector<Case> cases = {
      {{.kernel = 3, .stride = 2, .padding = 1}, 5, 6},
      {{.kernel = {3, 2}, .stride = {2, 1}, .padding = {1, 0}, .dilation = {2, 1}, .ceil_mode = true}, 4, 10},
      {{.kernel = 3, .stride = 1}, 7, 9},
      {{.kernel = {2, 3}, .stride = 2, .padding = {1, 1}, .ceil_mode = true, .count_include_pad = false},
       5,
       6},
  };
  icd::Generator gen(22);
  for (const Case& c : cases) {
    const Pool2dOptions& o = c.options;
    const int64_t sh = o.stride.h ? o.stride.h : o.kernel.h, sw = o.stride.w ? o.stride.w : o.kernel.w;
    const PoolGeometry g{6,
                         {9, c.out_h, o.kernel.h, sh, o.padding.h, o.dilation.h, false},
                         {11, c.out_w, o.kernel.w, sw, o.padding.w, o.dilation.w, false},
                         o.count_include_pad};
    const std::vector<double> x = base.to_vector<double>();
    const icd::Tensor upstream_t = icd::randn({2, 3, c.out_h, c.out_w}, gen, {icd::DType::f64});
    const std::vector<double> upstream = upstream_t.to_vector<double>();
    CAPTURE(c.out_h);
    CAPTURE(c.out_w);
    // max_pool2d
    std::vector<double> y(g.out_numel());
    std::vector<int64_t> argmax(g.out_numel());
    for (int64_t k = 0; k < g.out_numel(); ++k)
      max_pool_element(x.data(), g, k, y.data(), argmax.data());
    icd::Tensor leaf = base.clone().set_requires_grad(true);
    icd::Tensor cpu_y = icd::max_pool2d(leaf, o);
    REQUIRE(cpu_y.shape() == icd::Shape{2, 3, c.out_h, c.out_w});
    CHECK(y == cpu_y.to_vector<double>());
    CHECK(launch_all<double>(g.in_numel(), [&](int64_t i) {
            return max_pool_grad_element(upstream.data(), argmax.data(), g, i);
          }) == cpu_op_gradient(leaf, cpu_y, upstream_t));
    // avg_pool2d (no dilation)
    if (o.dilation.h != 1) continue;
    leaf = base.clone().set_requires_grad(true);
    cpu_y = icd::avg_pool2d(leaf, o);
    CHECK(launch_all<double>(g.out_numel(), [&](int64_t k) { return avg_pool_element(x.data(), g, k); }) ==
          cpu_y.to_vector<double>());
    CHECK(launch_all<double>(g.in_numel(), [&](int64_t i) {
            return avg_pool_grad_element(upstream.data(), g, i);
          }) == cpu_op_gradient(leaf, cpu_y, upstream_t));
  }
  // adaptive_avg_pool2d, shrinking and growing, in f32.
  for (auto [out_h, out_w] : std::vector<std::pair<int64_t, int64_t>>{{4, 5}, {1, 1}, {13, 17}}) {
    const icd::Tensor base32 = base.to(icd::DType::f32);
    const PoolGeometry g{6, {9, out_h, 1, 1, 0, 1, true}, {11, out_w, 1, 1, 0, 1, true}, false};
    const std::vector<float> x = base32.to_vector<float>();
    const icd::Tensor upstream_t = icd::randn({2, 3, out_h, out_w}, gen, {icd::DType::f32});
    const std::vector<float> upstream = upstream_t.to_vector<float>();
    icd::Tensor leaf = base32.clone().set_requires_grad(true);
    const icd::Tensor cpu_y = icd::adaptive_avg_pool2d(leaf, out_h, out_w);
    CAPTURE(out_h);
    CHECK(launch_all<float>(g.out_numel(), [&](int64_t k) { return avg_pool_element(x.data(), g, k); }) ==
          cpu_y.to_vector<float>());
    icd::sum(icd::mul(cpu_y, upstream_t)).backward();
    CHECK(launch_all<float>(g.in_numel(), [&](int64_t i) {
            return avg_pool_grad_element(upstream.data(), g, i);
          }) == leaf.grad().to_vector<float>());
  }
}

TEST_CASE("resize bodies: nearest sources and bilinear taps by hand") {
  CHECK(nearest_source(11, 26, 22, 26.0f / 22.0f) == 12);  // the f32 ratio, as torch (resize.cpp)
  CHECK(nearest_source(5, 4, 8, 0.5f) == 2);               // doubling: d / 2
  CHECK(nearest_source(3, 7, 7, 1.0f) == 3);
  CHECK(nearest_source(4, 3, 5, 0.6f) == 2);  // floor(2.4)
  CHECK(first_nearest_output(2, 4, 8, 0.5f) == 4);
  CHECK(first_nearest_output(4, 4, 8, 0.5f) == 8);                     // past the last input: none
  const BilinearTap<double> a = bilinear_tap<double>(3, 4, 8, false);  // src = 0.5 * 3.5 - 0.5 = 1.25
  CHECK(a.i0 == 1);
  CHECK(a.i1 == 2);
  CHECK(a.w0 == 0.75);
  CHECK(a.w1 == 0.25);
  const BilinearTap<double> left = bilinear_tap<double>(0, 4, 8, false);  // src -0.25 clamps to 0
  CHECK(left.i0 == 0);
  CHECK(left.w0 == 1.0);
  CHECK(left.w1 == 0.0);
  const BilinearTap<double> right = bilinear_tap<double>(7, 4, 8, false);  // src 3.25: past the last centre
  CHECK(right.i0 == 3);
  CHECK(right.i1 == 3);
  CHECK(right.w0 + right.w1 == 1.0);
  const BilinearTap<float> corner = bilinear_tap<float>(6, 4, 7, true);  // src = 6 * 3 / 6 = 3
  CHECK(corner.i0 == 3);
  CHECK(corner.i1 == 3);
  CHECK(corner.w0 == 1.0f);
  CHECK(bilinear_tap<float>(0, 5, 1, true).i0 == 0);          // one output: src 0
  CHECK(first_bilinear_output<double>(2, 4, 8, false) == 5);  // d = 5: src 2.25
}

TEST_CASE("resize bodies give the CPU ops' outputs and gradients") {
  icd::Generator gen(23);
  const icd::Tensor base = icd::randn({2, 3, 5, 4}, gen, {icd::DType::f64});
  const std::vector<double> x = base.to_vector<double>();
  struct Size {
    int64_t in_h, in_w, out_h, out_w;
  };
  for (const Size s :
       {Size{5, 4, 10, 8}, Size{5, 4, 7, 13}, Size{5, 4, 3, 2}, Size{5, 4, 1, 1}, Size{5, 4, 5, 4}}) {
    CAPTURE(s.out_h);
    CAPTURE(s.out_w);
    ResizeGeometry g{6,
                     s.in_h,
                     s.in_w,
                     s.out_h,
                     s.out_w,
                     float(s.in_h) / float(s.out_h),
                     float(s.in_w) / float(s.out_w),
                     false};
    const icd::Tensor upstream_t = icd::randn({2, 3, s.out_h, s.out_w}, gen, {icd::DType::f64});
    const std::vector<double> upstream = upstream_t.to_vector<double>();
    const int64_t outputs = 6 * s.out_h * s.out_w, inputs = 6 * s.in_h * s.in_w;
    // Nearest: copies and sums of copies, exact.
    icd::Tensor leaf = base.clone().set_requires_grad(true);
    icd::Tensor cpu_y = icd::upsample_nearest2d(leaf, s.out_h, s.out_w);
    CHECK(launch_all<double>(outputs, [&](int64_t k) { return nearest_element(x.data(), g, k); }) ==
          cpu_y.to_vector<double>());
    CHECK(launch_all<double>(inputs, [&](int64_t e) {
            return nearest_grad_element(upstream.data(), g, e);
          }) == cpu_op_gradient(leaf, cpu_y, upstream_t));
    // Bilinear: the same products and sums, but the host compiler may fuse a multiply-add in one place and
    // not the other (-march=native has FMA): within a few roundings of the largest value.
    for (bool align_corners : {false, true}) {
      CAPTURE(align_corners);
      g.align_corners = align_corners;
      leaf = base.clone().set_requires_grad(true);
      cpu_y = icd::interpolate_bilinear(leaf, s.out_h, s.out_w, align_corners);
      CHECK(
          scaled_gap(launch_all<double>(outputs, [&](int64_t k) { return bilinear_element(x.data(), g, k); }),
                     cpu_y.to_vector<double>()) <= 1e-14);
      CHECK(scaled_gap(launch_all<double>(
                           inputs, [&](int64_t e) { return bilinear_grad_element(upstream.data(), g, e); }),
                       cpu_op_gradient(leaf, cpu_y, upstream_t)) <= 1e-14);
    }
  }
  // The scale_factor overload's ratio (1 / scale), shrinking 26 -> 22 with torch's f32 rounding.
  const icd::Tensor wide = icd::randn({1, 1, 26, 3}, gen, {icd::DType::f64});
  const ResizeGeometry g{1, 26, 3, 22, 3, 26.0f / 22.0f, 1.0f, false};
  const std::vector<double> w = wide.to_vector<double>();
  CHECK(launch_all<double>(66, [&](int64_t k) { return nearest_element(w.data(), g, k); }) ==
        icd::upsample_nearest2d(wide, 22, 3).to_vector<double>());
  const ResizeGeometry half{1, 26, 3, 13, 1, float(1.0 / 0.5), float(1.0 / 0.5), false};
  CHECK(launch_all<double>(13, [&](int64_t k) { return nearest_element(w.data(), half, k); }) ==
        icd::upsample_nearest2d(wide, 0.5).to_vector<double>());
}

// ---- normalisation

TEST_CASE("norm bodies by hand: set offsets, group indices, constants, running statistics") {
  const ChannelNorm batch{2, 3, 4, 0};
  const NormSets channels = batch.stat_sets();  // channel c: N runs of S elements, C S apart
  CHECK(channels.sets == 3);
  CHECK(channels.count == 8);
  CHECK(channels.offset(1, 5) == (1 * 3 + 1) * 4 + 1);  // element 5 of channel 1: n = 1, s = 1
  const ChannelNorm grouped{2, 6, 5, 3};                // 3 groups of 2 channels
  CHECK(grouped.stat_sets().sets == 6);
  CHECK(grouped.stat_sets().count == 10);
  CHECK(grouped.stat_sets().offset(5, 3) == 53);  // (sample 1, group 2) starts at (1 * 3 + 2) * 10
  CHECK(grouped.set((1 * 6 + 4) * 5 + 2) == 5);
  CHECK(grouped.channel((1 * 6 + 4) * 5 + 2) == 4);

  const GradConstants training = batch_norm_grad_constants({2, 4}, 0.5, 2, 0.25, true);
  CHECK(training.c_x == -0.25);  // a = invstd w = 1, sum g x_hat = 2: -a invstd 2 / 4
  CHECK(training.c_0 == -0.5);   // -a sum g / 4
  const GradConstants eval = batch_norm_grad_constants({2, 4}, 0.5, 2, 0.25, false);
  CHECK(eval.c_x == 0);
  CHECK(eval.c_0 == 0);
  const GradConstants set = set_grad_constants({2, 4}, 0.5, 0.25);
  CHECK(set.c_x == -0.125);  // -invstd^3 4 / 4
  CHECK(set.c_0 == -0.25);   // -invstd 2 / 4

  float running_mean = 1, running_var = 2;
  update_running_stats(running_mean, running_var, 3.0, 4.0, 0.5, 2.0);
  CHECK(running_mean == 2.0f);  // 0.5 * 1 + 0.5 * 3
  CHECK(running_var == 5.0f);   // 0.5 * 2 + 0.5 * 4 * 2
  CHECK(norm_inverse_std(3.75, 0.25) == 0.5);

  // A thread's share: elements first, first + step, ...; the shares add up to the whole.
  const std::vector<double> x = {1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12,
                                 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24};
  CHECK(set_partial_sum(x.data(), channels, 1, 0, 1) == 5 + 6 + 7 + 8 + 17 + 18 + 19 + 20);
  double shares = 0;
  for (int t = 0; t < 3; ++t)
    shares += set_partial_sum(x.data(), channels, 1, t, 3);
  CHECK(shares == 100);
  CHECK(set_partial_squares(x.data(), channels, 1, 0, 1, 12.5) ==
        2 * (7.5 * 7.5 + 6.5 * 6.5 + 5.5 * 5.5 + 4.5 * 4.5));
  const std::vector<double> g(24, 2.0), w = {1, 2, 3, 4, 5, 6, 7, 8};
  const NormGradSums weighted = set_partial_grad_sums(x.data(), g.data(), w.data(), channels, 1, 0, 1, 12.5);
  CHECK(weighted.g == 2 * 36);
  CHECK(weighted.g_x_mu ==
        2 * (-7.5 * 1 - 6.5 * 2 - 5.5 * 3 - 4.5 * 4 + 4.5 * 5 + 5.5 * 6 + 6.5 * 7 + 7.5 * 8));
}

namespace {

// Each set's mean and inverse standard deviation, as the kernels compute them (one thread per set here).
void body_moments(const double* x, const NormSets& s, double eps, std::vector<double>& mean,
                  std::vector<double>& invstd) {
  mean.assign(s.sets, 0);
  invstd.assign(s.sets, 0);
  for (int64_t set = 0; set < s.sets; ++set) {
    mean[set] = set_partial_sum(x, s, set, 0, 1) / double(s.count);
    invstd[set] = norm_inverse_std(set_partial_squares(x, s, set, 0, 1, mean[set]) / double(s.count), eps);
  }
}

std::vector<NormGradSums> body_grad_sums(const double* x, const double* g, const double* weight_by_k,
                                         const NormSets& s, const std::vector<double>& mean,
                                         int64_t per_stat) {
  std::vector<NormGradSums> sums(s.sets);
  for (int64_t set = 0; set < s.sets; ++set)
    sums[set] = set_partial_grad_sums(x, g, weight_by_k, s, set, 0, 1, mean[set / per_stat]);
  return sums;
}

struct NormCase {
  icd::Tensor x, w, b, upstream;
  std::vector<double> xs, ws, bs, gs;
  NormCase(const icd::Shape& shape, const icd::Shape& param_shape, uint64_t seed) {
    icd::Generator gen(seed);
    x = icd::randn(shape, gen, {icd::DType::f64}).set_requires_grad(true);
    w = icd::randn(param_shape, gen, {icd::DType::f64}).set_requires_grad(true);
    b = icd::randn(param_shape, gen, {icd::DType::f64}).set_requires_grad(true);
    upstream = icd::randn(shape, gen, {icd::DType::f64});
    xs = x.to_vector<double>();
    ws = w.to_vector<double>();
    bs = b.to_vector<double>();
    gs = upstream.to_vector<double>();
  }
  // The CPU op's output, then its gradients for x, w, b.
  std::vector<double> run(const icd::Tensor& y) {
    icd::sum(icd::mul(y, upstream)).backward();
    return y.to_vector<double>();
  }
};

constexpr double kNormBodyTolerance = 1e-13;  // other summation orders and multiply-add fusion (f64)

}  // namespace

TEST_CASE("batch and group norm bodies, launched as norm.cu launches them, give the CPU ops' results") {
  for (int64_t groups : {0, 1, 2, 6}) {  // 0: batch norm
    CAPTURE(groups);
    NormCase c({3, 6, 5}, {6}, 40 + groups);
    const ChannelNorm cn{3, 6, 5, groups};
    const std::vector<double> y_cpu =
        c.run(groups == 0 ? icd::batch_norm(c.x, c.w, c.b, icd::Tensor(), icd::Tensor(), true)
                          : icd::group_norm(c.x, groups, c.w, c.b));
    std::vector<double> mean, invstd;
    body_moments(c.xs.data(), cn.stat_sets(), 1e-5, mean, invstd);
    const int64_t n = cn.numel();
    CHECK(scaled_gap(launch_all<double>(n,
                                        [&](int64_t i) {
                                          return channel_norm_forward_element(c.xs.data(), cn, mean.data(),
                                                                              invstd.data(), c.ws.data(),
                                                                              c.bs.data(), i);
                                        }),
                     y_cpu) <= kNormBodyTolerance);
    // The backward: per-set constants, then dx per element; dw and db per channel.
    std::vector<double> c_x, c_0, dw(6), db(6);
    if (groups == 0) {
      const std::vector<NormGradSums> sums =
          body_grad_sums(c.xs.data(), c.gs.data(), nullptr, cn.stat_sets(), mean, 1);
      for (int64_t ch = 0; ch < 6; ++ch) {
        const GradConstants k = batch_norm_grad_constants(sums[ch], invstd[ch], c.ws[ch], 1.0 / 15, true);
        c_x.push_back(k.c_x);
        c_0.push_back(k.c_0);
        dw[ch] = sums[ch].g_x_mu * invstd[ch];
        db[ch] = sums[ch].g;
      }
    } else {
      const int64_t group_channels = 6 / groups;
      const std::vector<NormGradSums> sums =
          body_grad_sums(c.xs.data(), c.gs.data(), nullptr, {18, 5, 5, 0, 5}, mean, group_channels);
      for (int64_t ng = 0; ng < 3 * groups; ++ng) {
        NormGradSums group;
        for (int64_t j = 0; j < group_channels; ++j) {
          const int64_t ch = (ng % groups) * group_channels + j, at = (ng / groups) * 6 + ch;
          group.g += c.ws[ch] * sums[at].g;
          group.g_x_mu += c.ws[ch] * sums[at].g_x_mu;
        }
        const GradConstants k = set_grad_constants(group, invstd[ng], 1.0 / double(group_channels * 5));
        c_x.push_back(k.c_x);
        c_0.push_back(k.c_0);
      }
      for (int64_t ch = 0; ch < 6; ++ch)
        for (int64_t s = 0; s < 3; ++s) {
          dw[ch] += sums[s * 6 + ch].g_x_mu * invstd[s * groups + ch / group_channels];
          db[ch] += sums[s * 6 + ch].g;
        }
    }
    CHECK(scaled_gap(launch_all<double>(n,
                                        [&](int64_t i) {
                                          return channel_norm_grad_element(
                                              c.gs.data(), c.xs.data(), cn, mean.data(), invstd.data(),
                                              c.ws.data(), c_x.data(), c_0.data(), i);
                                        }),
                     c.x.grad().to_vector<double>()) <= kNormBodyTolerance);
    CHECK(scaled_gap(dw, c.w.grad().to_vector<double>()) <= kNormBodyTolerance);
    CHECK(scaled_gap(db, c.b.grad().to_vector<double>()) <= kNormBodyTolerance);
  }
}

TEST_CASE("layer norm bodies, launched as norm.cu launches them, give the CPU op's results") {
  const int64_t R = 70, D = 6;  // more rows than kLayerNormRowBlocks
  NormCase c({7, 10, D}, {D}, 50);
  const std::vector<double> y_cpu = c.run(icd::layer_norm(c.x, {D}, c.w, c.b));
  const NormSets rows{R, D, D, 0, D};
  std::vector<double> mean, invstd;
  body_moments(c.xs.data(), rows, 1e-5, mean, invstd);
  CHECK(scaled_gap(launch_all<double>(R * D,
                                      [&](int64_t i) {
                                        return layer_norm_forward_element(c.xs.data(), D, mean.data(),
                                                                          invstd.data(), c.ws.data(),
                                                                          c.bs.data(), i);
                                      }),
                   y_cpu) <= kNormBodyTolerance);
  const std::vector<NormGradSums> sums = body_grad_sums(c.xs.data(), c.gs.data(), c.ws.data(), rows, mean, 1);
  std::vector<double> c_x, c_0;
  for (int64_t r = 0; r < R; ++r) {
    const GradConstants k = set_grad_constants(sums[r], invstd[r], 1.0 / D);
    c_x.push_back(k.c_x);
    c_0.push_back(k.c_0);
  }
  CHECK(scaled_gap(launch_all<double>(R * D,
                                      [&](int64_t i) {
                                        return layer_norm_grad_element(
                                            c.gs.data(), c.xs.data(), D, mean.data(), invstd.data(),
                                            c.ws.data(), c_x.data(), c_0.data(), i);
                                      }),
                   c.x.grad().to_vector<double>()) <= kNormBodyTolerance);
  const int64_t blocks = std::min<int64_t>(R, kLayerNormRowBlocks),
                rows_per_block = (R + blocks - 1) / blocks;
  std::vector<double> dw(D), db(D);
  for (int64_t j = 0; j < D; ++j)
    for (int64_t block = 0; block < blocks; ++block) {
      double partial_w = 0, partial_b = 0;
      layer_norm_param_partial(c.gs.data(), c.xs.data(), D, mean.data(), invstd.data(),
                               block * rows_per_block, std::min(R, (block + 1) * rows_per_block), j,
                               partial_w, partial_b);
      dw[j] += partial_w;
      db[j] += partial_b;
    }
  CHECK(scaled_gap(dw, c.w.grad().to_vector<double>()) <= kNormBodyTolerance);
  CHECK(scaled_gap(db, c.b.grad().to_vector<double>()) <= kNormBodyTolerance);
}
