// conv2d and im2col/col2im: hand-computed values, the adjoint identity, parity with torch (forward and
// gradients, f64 and f32), direct loops as the reference for large images split among threads, f64
// gradient checks over every option, and bad inputs.
#include <doctest/doctest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "engine/autograd.h"
#include "engine/cpu/im2col.h"
#include "engine/factory.h"
#include "engine/ops/conv.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/reduce.h"
#include "fixture.h"
#include "gradcheck.h"

using namespace icd;
using icd::testing::f64;
using icd::testing::max_abs;
using icd::testing::max_relative_error;
using icd::testing::random_leaf;
using Inputs = std::vector<Tensor>;

namespace {

Conv2dOptions options_from(const nlohmann::json& p) {
  Conv2dOptions o;
  o.stride_h = p.at("stride")[0];
  o.stride_w = p.at("stride")[1];
  o.padding_h = p.at("padding")[0];
  o.padding_w = p.at("padding")[1];
  o.dilation_h = p.at("dilation")[0];
  o.dilation_w = p.at("dilation")[1];
  o.groups = p.at("groups");
  return o;
}

// The error relative to the tensor's own scale (its largest magnitude): an output that is a sum of terms
// of size ~1 cancelling to ~0 carries the rounding of the terms, not of the result. For f32 results, and
// for the million-element comparison where some sums cancel to 1e-7.
double scaled_error(const Tensor& actual, const Tensor& expected) {
  return max_relative_error(actual, expected, max_abs(expected));
}

struct Gradients {
  Tensor y, dx, dw, db;
};

// Direct convolution by its definition, in plain loops: y, and the gradients of sum(y * dy).
Gradients direct_conv2d(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& dy,
                        const Conv2dOptions& o) {
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t O = w.size(0), Cg = w.size(1), KH = w.size(2), KW = w.size(3);
  const int64_t OH = dy.size(2), OW = dy.size(3), Og = O / o.groups;
  std::vector<double> xv = x.to_vector<double>(), wv = w.to_vector<double>(), bv = b.to_vector<double>();
  std::vector<double> dyv = dy.to_vector<double>();
  std::vector<double> y(N * O * OH * OW), dx(xv.size(), 0.0), dw(wv.size(), 0.0), db(O, 0.0);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t oc = 0; oc < O; ++oc)
      for (int64_t oh = 0; oh < OH; ++oh)
        for (int64_t ow = 0; ow < OW; ++ow) {
          const int64_t yi = ((n * O + oc) * OH + oh) * OW + ow;
          double acc = bv[oc];
          for (int64_t cg = 0; cg < Cg; ++cg)
            for (int64_t i = 0; i < KH; ++i)
              for (int64_t j = 0; j < KW; ++j) {
                const int64_t ih = oh * o.stride_h - o.padding_h + i * o.dilation_h;
                const int64_t iw = ow * o.stride_w - o.padding_w + j * o.dilation_w;
                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                const int64_t xi = ((n * C + (oc / Og) * Cg + cg) * H + ih) * W + iw;
                const int64_t wi = ((oc * Cg + cg) * KH + i) * KW + j;
                acc += wv[wi] * xv[xi];
                dx[xi] += wv[wi] * dyv[yi];
                dw[wi] += xv[xi] * dyv[yi];
              }
          y[yi] = acc;
          db[oc] += dyv[yi];
        }
  return {f64(y, dy.shape()), f64(dx, x.shape()), f64(dw, w.shape()), f64(db, b.shape())};
}

// Runs conv2d forward and backward with upstream gradient dy; returns y and the three gradients.
Gradients run_conv2d(Tensor x, Tensor w, Tensor b, const Tensor& dy, const Conv2dOptions& o) {
  x.set_requires_grad(true);
  w.set_requires_grad(true);
  if (b.defined()) b.set_requires_grad(true);
  Tensor y = conv2d(x, w, b, o);
  y.backward(dy);
  return {y.detach(), x.grad(), w.grad(), b.defined() ? b.grad() : Tensor()};
}

}  // namespace

TEST_CASE("im2col: hand-computed columns with padding, blocks, and col2im sums the overlaps") {
  // One 3x3 image 1..9, a 2x2 window, padding 1 on the left only (pad_w = 1, pad_h = 0), stride 2 across.
  cpu::Im2colGeometry g;
  g.channels = 1, g.height = 3, g.width = 3, g.kernel_h = 2, g.kernel_w = 2;
  g.stride_w = 2, g.padding_w = 1, g.out_h = 2, g.out_w = 2;
  std::vector<double> image{1, 2, 3, 4, 5, 6, 7, 8, 9};
  std::vector<double> columns(16, -1.0);
  cpu::im2col(image.data(), g, cpu::whole_matrix(g), columns.data());
  // rows (i, j) = (0,0), (0,1), (1,0), (1,1); columns (oh, ow) = (0,0), (0,1), (1,0), (1,1);
  // input column iw = 2 ow - 1 + j.
  CHECK(columns == std::vector<double>{0, 2, 0, 5,  //
                                       1, 3, 4, 6,  //
                                       0, 5, 0, 8,  //
                                       4, 6, 7, 9});
  // A block: rows 1..2, columns 1..2 (the end of output row 0 and the start of output row 1).
  std::vector<double> block(4, -1.0);
  cpu::im2col(image.data(), g, {1, 3, 1, 3}, block.data());
  CHECK(block == std::vector<double>{3, 4, 5, 0});
  // col2im of all ones counts how many windows read each pixel (on top of the 1 already there).
  std::vector<double> counts(9, 1.0), ones(columns.size(), 1.0);
  cpu::col2im(ones.data(), g, cpu::whole_matrix(g), counts.data());
  CHECK(counts == std::vector<double>{2, 2, 2, 3, 3, 3, 2, 2, 2});
}

TEST_CASE("im2col: f32 stride-2 runs and a row stride wider than the block, against the definition") {
  // Stride 2 across with long valid runs takes the vectorised copy (8 outputs from 16 inputs) and its
  // element-by-element tail; widths 37 and 40 end the run on either parity, reaching the image's last
  // element. The block is stored with a row stride of width + 5, and the gap must stay untouched.
  for (int64_t width : {37, 40}) {
    INFO("width " << width);
    cpu::Im2colGeometry g;
    g.channels = 2, g.height = 4, g.width = width, g.kernel_h = 3, g.kernel_w = 3;
    g.stride_h = 1, g.stride_w = 2, g.padding_h = 1, g.padding_w = 1;
    g.out_h = conv2d_output_size(g.height, 3, 1, 1, 1);
    g.out_w = conv2d_output_size(g.width, 3, 2, 1, 1);
    std::vector<float> image(g.channels * g.height * g.width);
    for (size_t i = 0; i < image.size(); ++i)
      image[i] = float(i + 1);
    const int64_t rows = g.column_rows(), cols = g.column_cols(), ld = cols + 5;
    std::vector<float> columns(rows * ld, -1.0f);
    cpu::im2col(image.data(), g, cpu::whole_matrix(g), columns.data(), ld);
    int64_t wrong = 0;
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t p = 0; p < ld; ++p) {
        float want = -1.0f;  // the gap past the block
        if (p < cols) {
          const int64_t c = r / 9, ih = p / g.out_w - 1 + r / 3 % 3, iw = p % g.out_w * 2 - 1 + r % 3;
          const bool inside = ih >= 0 && ih < g.height && iw >= 0 && iw < g.width;
          want = inside ? image[(c * g.height + ih) * g.width + iw] : 0.0f;
        }
        wrong += columns[r * ld + p] != want;
      }
    CHECK(wrong == 0);
  }
}

TEST_CASE("col2im is the adjoint of im2col: <im2col(x), c> == <x, col2im(c)>, and blocks tile the matrix") {
  struct Case {
    int64_t c, h, w, kh, kw, sh, sw, ph, pw, dh, dw;
  };
  for (const Case& k : {Case{2, 7, 6, 3, 3, 1, 1, 1, 1, 1, 1}, Case{3, 9, 8, 3, 2, 2, 3, 2, 0, 1, 2},
                        Case{1, 5, 5, 2, 2, 3, 3, 4, 4, 2, 2}, Case{2, 4, 5, 1, 1, 2, 1, 0, 0, 1, 1}}) {
    cpu::Im2colGeometry g{k.c,
                          k.h,
                          k.w,
                          k.kh,
                          k.kw,
                          k.sh,
                          k.sw,
                          k.ph,
                          k.pw,
                          k.dh,
                          k.dw,
                          conv2d_output_size(k.h, k.kh, k.sh, k.ph, k.dh),
                          conv2d_output_size(k.w, k.kw, k.sw, k.pw, k.dw)};
    const int64_t rows = g.column_rows(), cols = g.column_cols();
    Generator gen(17);
    std::vector<double> x = randn({g.channels * g.height * g.width}, gen, {DType::f64}).to_vector<double>();
    std::vector<double> c = randn({rows * cols}, gen, {DType::f64}).to_vector<double>();
    std::vector<double> full(c.size());
    cpu::im2col(x.data(), g, cpu::whole_matrix(g), full.data());
    std::vector<double> back(x.size(), 0.0);
    cpu::col2im(c.data(), g, cpu::whole_matrix(g), back.data());
    double lhs = 0, rhs = 0;
    for (std::size_t i = 0; i < c.size(); ++i)
      lhs += full[i] * c[i];
    for (std::size_t i = 0; i < x.size(); ++i)
      rhs += x[i] * back[i];
    CHECK(lhs == doctest::Approx(rhs).epsilon(1e-12));
    // Blocks cut at rows and columns that split channels and output rows: each block equals its part of
    // the whole matrix, and col2im of every block, accumulated, equals col2im of the whole.
    std::vector<double> blocked_back(x.size(), 0.0);
    const std::vector<int64_t> row_cuts{0, rows / 3 + 1, rows};
    const std::vector<int64_t> col_cuts{0, 1, cols / 2 + 1, cols};
    for (std::size_t r = 0; r + 1 < row_cuts.size(); ++r)
      for (std::size_t q = 0; q + 1 < col_cuts.size(); ++q) {
        const cpu::ColumnBlock b{row_cuts[r], row_cuts[r + 1], col_cuts[q], col_cuts[q + 1]};
        const int64_t width = b.col_end - b.col_begin;
        std::vector<double> block((b.row_end - b.row_begin) * width), block_c(block.size());
        cpu::im2col(x.data(), g, b, block.data());
        bool same = true;
        for (int64_t i = b.row_begin; i < b.row_end; ++i)
          for (int64_t j = b.col_begin; j < b.col_end; ++j) {
            same = same && block[(i - b.row_begin) * width + (j - b.col_begin)] == full[i * cols + j];
            block_c[(i - b.row_begin) * width + (j - b.col_begin)] = c[i * cols + j];
          }
        CHECK(same);
        cpu::col2im(block_c.data(), g, b, blocked_back.data());
      }
    for (std::size_t i = 0; i < x.size(); ++i)
      CHECK(blocked_back[i] == doctest::Approx(back[i]).epsilon(1e-14));
  }
}

TEST_CASE("conv2d: hand-computed forward values") {
  Tensor x = f64({1, 2, 3, 4, 5, 6, 7, 8, 9}, {1, 1, 3, 3});
  Tensor w = f64({1, 1, 1, 1}, {1, 1, 2, 2});
  CHECK(conv2d(x, w, Tensor()).to_vector<double>() == std::vector<double>{12, 16, 24, 28});
  // Padding 1, stride 2, a bias of 0.5: windows at the corners see one, two or four pixels.
  Tensor y = conv2d(x, w, f64({0.5}, {1}), Conv2dOptions::square(2, 1));
  CHECK(y.shape() == Shape{1, 1, 2, 2});
  CHECK(y.to_vector<double>() == std::vector<double>{1.5, 5.5, 11.5, 28.5});
  // Two groups: each output channel sees only its own input channel (here scaled by 1 and by 10).
  Tensor two = f64({1, 2, 3, 4, 1, 2, 3, 4}, {1, 2, 2, 2});
  Tensor gw = f64({1, 10}, {2, 1, 1, 1});
  CHECK(conv2d(two, gw, Tensor(), {.groups = 2}).to_vector<double>() ==
        std::vector<double>{1, 2, 3, 4, 10, 20, 30, 40});
  // Dilation 2 turns the 2x2 kernel into the four corners of the 3x3 image.
  CHECK(conv2d(x, w, Tensor(), {.dilation_h = 2, .dilation_w = 2}).to_vector<double>() ==
        std::vector<double>{1 + 3 + 7 + 9});
  // An empty batch gives an empty output, and a zero weight gradient.
  Tensor none = zeros({0, 1, 3, 3}, {DType::f64});
  Tensor w_leaf = random_leaf({2, 1, 2, 2}, 3);
  Tensor empty_y = conv2d(none, w_leaf, Tensor());
  CHECK(empty_y.shape() == Shape{0, 2, 2, 2});
  sum(empty_y).backward();
  CHECK(w_leaf.grad().to_vector<double>() == std::vector<double>(8, 0.0));
  CHECK(conv2d_output_size(56, 3, 1, 1, 1) == 56);
  CHECK(conv2d_output_size(224, 7, 2, 3, 1) == 112);
  CHECK(conv2d_output_size(2, 5, 1, 1, 1) == 0);
}

TEST_CASE("conv2d: parity with torch, forward and gradients, f64 and f32") {
  testing::Fixture fixture("conv.json");
  CHECK(fixture.case_names().size() >= 9);
  for (const std::string& name : fixture.case_names()) {
    INFO("case " << name);
    testing::FixtureCase c = fixture[name];
    const Conv2dOptions o = options_from(c.params());
    const bool has_bias = c.has_tensor("bias");
    for (DType dtype : {DType::f64, DType::f32}) {
      INFO("dtype " << dtype_name(dtype));
      Gradients got = run_conv2d(c.tensor("x", dtype), c.tensor("weight", dtype),
                                 has_bias ? c.tensor("bias", dtype) : Tensor(), c.tensor("grad_y", dtype), o);
      std::vector<std::pair<Tensor, std::string>> pairs{
          {got.y, "y"}, {got.dx, "grad_x"}, {got.dw, "grad_weight"}};
      if (has_bias) pairs.push_back({got.db, "grad_bias"});
      for (const auto& [actual, key] : pairs) {
        INFO("tensor " << key);
        REQUIRE(actual.dtype() == dtype);
        if (dtype == DType::f64)
          CHECK(max_relative_error(actual, c.tensor(key)) < 1e-10);
        else
          CHECK(scaled_error(actual, c.tensor(key)) < 1e-5);
      }
      if (!has_bias) CHECK_FALSE(got.db.defined());
    }
  }
}

TEST_CASE("conv2d: large images split among threads, against direct loops") {
  // Two threads, whatever the machine: every pass then splits into tasks (chunks of output positions,
  // blocks of column rows, blocks of input channels), with batches of 2 (even) and 3 (uneven).
  const int previous_threads = omp_get_max_threads();
  omp_set_num_threads(2);
  struct Case {
    Shape x, w;
    Conv2dOptions options;
  };
  // 1. 8 channels x 3x3 = 72 column rows over 172 x 172 outputs: 2.1M column elements, so each image is
  //    cut into several chunks of the buffer budget; groups = 2; "same" padding (the memcpy path).
  // 2. One group whose 3 x 3x2 = 18 rows split mid-channel between the two threads; stride, dilation
  //    and asymmetric padding (the piecewise path).
  const Case cases[] = {{{0, 8, 172, 172}, {4, 4, 3, 3}, {.padding_h = 1, .padding_w = 1, .groups = 2}},
                        {{0, 3, 64, 50}, {5, 3, 3, 2}, {.stride_h = 2, .padding_h = 1, .dilation_w = 2}}};
  Generator gen(3);
  for (const Case& c : cases) {
    Tensor w = randn(c.w, gen, {DType::f64}), b = randn({c.w[0]}, gen, {DType::f64});
    for (int64_t batch : {2, 3}) {
      INFO("x " << shape_str(c.x) << ", batch " << batch);
      Shape x_shape = c.x;
      x_shape[0] = batch;
      Tensor x = randn(x_shape, gen, {DType::f64});
      Shape y_shape = conv2d(x, w, b, c.options).shape();
      Tensor dy = randn(y_shape, gen, {DType::f64});
      Gradients want = direct_conv2d(x, w, b, dy, c.options);
      Gradients got = run_conv2d(x, w.detach().clone(), b.detach().clone(), dy, c.options);
      CHECK(scaled_error(got.y, want.y) < 1e-13);
      CHECK(scaled_error(got.dx, want.dx) < 1e-13);
      CHECK(scaled_error(got.dw, want.dw) < 1e-13);
      CHECK(scaled_error(got.db, want.db) < 1e-13);
      // f32: the blocked GEMM, with the weights packed once and shared by the tasks' column blocks.
      Gradients got32 = run_conv2d(x.detach().to(DType::f32), w.detach().to(DType::f32),
                                   b.detach().to(DType::f32), dy.to(DType::f32), c.options);
      CHECK(scaled_error(got32.y, want.y) < 1e-5);
      CHECK(scaled_error(got32.dx, want.dx) < 1e-5);
      CHECK(scaled_error(got32.dw, want.dw) < 1e-5);
      CHECK(scaled_error(got32.db, want.db) < 1e-5);
    }
  }
  omp_set_num_threads(previous_threads);
}

TEST_CASE("conv2d: gradients only for the inputs that require them") {
  Generator gen(4);
  Tensor x = randn({1, 2, 5, 5}, gen, {DType::f64});
  Tensor w = random_leaf({3, 2, 3, 3}, 5);
  Tensor b = randn({3}, gen, {DType::f64});
  sum(conv2d(x, w, b, Conv2dOptions::square(1, 1))).backward();
  CHECK(w.grad().defined());
  CHECK_FALSE(x.grad().defined());
  CHECK_FALSE(b.grad().defined());
  // With nothing requiring grad, no graph is recorded.
  CHECK_FALSE(conv2d(x, w.detach(), b).requires_grad());
}

TEST_CASE("gradcheck: conv2d with stride, padding, dilation and rectangular kernels") {
  Tensor x = random_leaf({2, 3, 6, 5}, 11), w = random_leaf({4, 3, 3, 3}, 12), b = random_leaf({4}, 13);
  CHECK_GRADCHECK([](const Inputs& in) { return conv2d(in[0], in[1], in[2]); }, {x, w, b});
  CHECK_GRADCHECK([](const Inputs& in) { return conv2d(in[0], in[1], in[2], Conv2dOptions::square(2, 1)); },
                  {x, w, b});
  CHECK_GRADCHECK(
      [](const Inputs& in) {
        return conv2d(in[0], in[1], in[2],
                      {.padding_h = 2, .padding_w = 1, .dilation_h = 2, .dilation_w = 1});
      },
      {x, w, b});
  Tensor wr = random_leaf({2, 3, 2, 3}, 14);
  CHECK_GRADCHECK(
      [](const Inputs& in) {
        return conv2d(in[0], in[1], in[2], {.stride_h = 1, .stride_w = 2, .padding_h = 0, .padding_w = 2});
      },
      {x, wr, random_leaf({2}, 15)});
  // A 1x1 kernel: the plain-GEMM path (stride 1) and the im2col path (stride 2).
  Tensor w1 = random_leaf({4, 3, 1, 1}, 16);
  CHECK_GRADCHECK([](const Inputs& in) { return conv2d(in[0], in[1], in[2]); }, {x, w1, b});
  CHECK_GRADCHECK([](const Inputs& in) { return conv2d(in[0], in[1], in[2], Conv2dOptions::square(2)); },
                  {x, w1, b});
}

TEST_CASE("gradcheck: conv2d with groups, depthwise, and no bias") {
  Tensor x = random_leaf({2, 4, 5, 5}, 21);
  Tensor wg = random_leaf({6, 2, 3, 3}, 22), bg = random_leaf({6}, 23);
  CHECK_GRADCHECK(
      [](const Inputs& in) { return conv2d(in[0], in[1], in[2], Conv2dOptions::square(1, 1, 1, 2)); },
      {x, wg, bg});
  Tensor wd = random_leaf({4, 1, 3, 3}, 24), bd = random_leaf({4}, 25);
  CHECK_GRADCHECK(
      [](const Inputs& in) { return conv2d(in[0], in[1], in[2], Conv2dOptions::square(2, 1, 1, 4)); },
      {x, wd, bd});
  Tensor w = random_leaf({3, 4, 2, 2}, 26);
  CHECK_GRADCHECK(
      [](const Inputs& in) { return conv2d(in[0], in[1], Tensor(), Conv2dOptions::square(1, 1, 2)); },
      {x, w});
}

TEST_CASE("gradcheck: conv2d of non-contiguous inputs (permuted and sliced views)") {
  // x is a permuted view of a [5, 3, 2, 5] leaf, weight a slice of a larger leaf.
  Tensor x_base = random_leaf({5, 3, 2, 5}, 31);
  Tensor w_base = random_leaf({4, 3, 3, 4}, 32);
  Tensor b = random_leaf({4}, 33);
  CHECK_GRADCHECK(
      [](const Inputs& in) {
        Tensor x = in[0].permute({2, 1, 0, 3});  // [2, 3, 5, 5]
        Tensor w = in[1].narrow(3, 1, 3);        // [4, 3, 3, 3]
        return conv2d(x, w, in[2], Conv2dOptions::square(1, 1));
      },
      {x_base, w_base, b});
}

TEST_CASE("conv2d: bad inputs are rejected with invalid_argument") {
  Tensor x = zeros({1, 4, 5, 5}), w = zeros({6, 4, 3, 3});
  CHECK_THROWS_AS(conv2d(zeros({4, 5, 5}), w, Tensor()), std::invalid_argument);     // x not 4-D
  CHECK_THROWS_AS(conv2d(x, zeros({6, 4, 3}), Tensor()), std::invalid_argument);     // weight not 4-D
  CHECK_THROWS_AS(conv2d(x, zeros({6, 3, 3, 3}), Tensor()), std::invalid_argument);  // channel mismatch
  CHECK_THROWS_AS(conv2d(x, zeros({6, 2, 3, 3}), Tensor(), {.groups = 3}), std::invalid_argument);  // 3 ∤ 4
  CHECK_THROWS_AS(conv2d(x, zeros({5, 2, 3, 3}), Tensor(), {.groups = 2}), std::invalid_argument);  // 2 ∤ 5
  CHECK_THROWS_AS(conv2d(x, w, Tensor(), {.groups = 0}), std::invalid_argument);
  CHECK_THROWS_AS(conv2d(x, zeros({6, 4, 7, 3}), Tensor()), std::invalid_argument);  // output height 0
  CHECK_THROWS_AS(conv2d(x, w, Tensor(), {.dilation_h = 3}),
                  std::invalid_argument);                               // dilated kernel too tall
  CHECK_THROWS_AS(conv2d(x, w, zeros({5})), std::invalid_argument);     // bias wrong size
  CHECK_THROWS_AS(conv2d(x, w, zeros({6, 1})), std::invalid_argument);  // bias not 1-D
  CHECK_THROWS_AS(conv2d(x, w, Tensor(), {.stride_h = 0}), std::invalid_argument);
  CHECK_THROWS_AS(conv2d(x, w, Tensor(), {.padding_w = -1}), std::invalid_argument);
  CHECK_THROWS_AS(conv2d(x, w, Tensor(), {.dilation_w = 0}), std::invalid_argument);
  CHECK_THROWS_AS(conv2d(x, zeros({6, 4, 3, 3}, {DType::f64}), Tensor()),
                  std::invalid_argument);  // dtypes differ
  // The message names the op and the shapes.
  try {
    conv2d(x, zeros({6, 3, 3, 3}), Tensor());
    FAIL("no exception");
  } catch (const std::invalid_argument& e) {
    const std::string message = e.what();
    CHECK(message.find("conv2d") != std::string::npos);
    CHECK(message.find("[6, 3, 3, 3]") != std::string::npos);
    CHECK(message.find("[1, 4, 5, 5]") != std::string::npos);
  }
}
