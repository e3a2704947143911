// Mixed precision (engine/autocast.h, engine/ops/precision.h, engine/optim/grad_scaler.h): rounding to
// f16/bf16 and its straight-through backward; conv2d, matmul, bmm and linear inside an AutocastGuard are
// exactly the f32 op on rounded operands, rounded, in the forward and the backward; f64 is never touched;
// the guard nests; the loss scaler unscales, detects overflow, skips and adapts its scale.
//
// round_to_precision has no gradient check against central differences on purpose: rounding is a step
// function (derivative 0 almost everywhere), and its backward is a convention (the gradient rounded the
// same way), which is checked exactly here instead.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "engine/autocast.h"
#include "engine/autograd.h"
#include "engine/factory.h"
#include "engine/kernels/half_math.h"
#include "engine/ops/conv.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/matmul.h"
#include "engine/ops/precision.h"
#include "engine/ops/reduce.h"
#include "engine/optim/grad_scaler.h"

using namespace icd;

namespace {

// Values with more mantissa bits than f16 or bf16 hold, so rounding changes almost every one of them.
Tensor random_f32(const Shape& shape, uint64_t seed, bool requires_grad = true) {
  Generator gen(seed);
  Tensor t = randn(shape, gen);
  if (requires_grad) t.set_requires_grad(true);
  return t;
}

std::vector<float> values(const Tensor& t) {
  return t.contiguous().to_vector<float>();
}

// Every element of t is exactly a value of `precision`.
bool representable(const Tensor& t, DType precision) {
  for (float v : values(t)) {
    const float r = precision == DType::f16 ? kernels::round_to_f16(v) : kernels::round_to_bf16(v);
    if (!(r == v || (std::isnan(r) && std::isnan(v)))) return false;
  }
  return true;
}

Tensor rounded(const Tensor& t, DType precision) {
  NoGradGuard no_grad;
  return round_to_precision(t.detach(), precision);
}

}  // namespace

TEST_CASE("round_to_precision: nearest value, f32 storage, the gradient rounded the same way") {
  for (DType precision : {DType::f16, DType::bf16}) {
    CAPTURE(dtype_name(precision));
    Tensor x = random_f32({3, 5}, 1);
    Tensor y = round_to_precision(x, precision);
    CHECK(y.dtype() == DType::f32);
    CHECK(y.shape() == x.shape());
    CHECK(representable(y, precision));
    const std::vector<float> xs = values(x), ys = values(y);
    int changed = 0;
    for (std::size_t i = 0; i < xs.size(); ++i) {
      CHECK(std::abs(ys[i] - xs[i]) <= std::abs(xs[i]) * (precision == DType::f16 ? 0x1p-11f : 0x1p-8f));
      changed += ys[i] != xs[i];
    }
    CHECK(changed > 10);  // the test inputs really exercise the rounding

    const Tensor g = random_f32({3, 5}, 2, false);
    y.backward(g);
    CHECK(values(x.grad()) == values(rounded(g, precision)));
  }
  // A strided view rounds like its contiguous copy.
  Tensor m = random_f32({4, 6}, 3, false);
  CHECK(values(round_to_precision(m.transpose(0, 1), DType::bf16)) ==
        values(round_to_precision(m.transpose(0, 1).contiguous(), DType::bf16)));
}

TEST_CASE("round_to_precision refuses f64 and non-16-bit targets, naming the problem") {
  Generator gen(4);
  CHECK_THROWS_WITH_AS(round_to_precision(randn({2}, gen, {DType::f64}), DType::f16),
                       doctest::Contains("dtype f64"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(round_to_precision(randn({2}, gen), DType::f32), doctest::Contains("f16 or bf16"),
                       std::invalid_argument);
  CHECK_THROWS_AS(AutocastGuard(DType::i64), std::invalid_argument);
  CHECK(parse_precision("bf16") == DType::bf16);
  CHECK(parse_precision("f16") == DType::f16);
  CHECK(parse_precision("f32") == DType::f32);
  CHECK_THROWS_WITH_AS(parse_precision("fp16"), doctest::Contains("'fp16'"), std::invalid_argument);
}

TEST_CASE("the guard is per scope and nests; f64 operands are never autocast") {
  CHECK(autocast_precision() == DType::f32);
  {
    AutocastGuard outer(DType::bf16);
    CHECK(autocast_precision() == DType::bf16);
    {
      AutocastGuard inner(DType::f32);
      CHECK(autocast_precision() == DType::f32);
    }
    CHECK(autocast_precision() == DType::bf16);
    Generator gen(5);
    CHECK_FALSE(autocast_precision_for(randn({1}, gen, {DType::f64})).has_value());
    CHECK(autocast_precision_for(randn({1}, gen)) == DType::bf16);
  }
  CHECK(autocast_precision() == DType::f32);

  // An f64 convolution inside the guard is bit-identical to one outside it.
  Generator gen(6);
  const Tensor x = randn({1, 2, 5, 5}, gen, {DType::f64}), w = randn({3, 2, 3, 3}, gen, {DType::f64});
  const Tensor plain = conv2d(x, w, Tensor());
  AutocastGuard autocast(DType::f16);
  CHECK(conv2d(x, w, Tensor()).to_vector<double>() == plain.to_vector<double>());
}

TEST_CASE("conv2d under autocast: the f32 convolution of rounded operands, rounded, forward and backward") {
  for (DType precision : {DType::f16, DType::bf16}) {
    CAPTURE(dtype_name(precision));
    const Conv2dOptions options = Conv2dOptions::square(2, 1);
    Tensor x = random_f32({2, 3, 9, 8}, 10), w = random_f32({4, 3, 3, 3}, 11), b = random_f32({4}, 12);
    const Tensor g = random_f32({2, 4, 5, 4}, 13, false);
    Tensor y;
    {
      AutocastGuard autocast(precision);
      y = conv2d(x, w, b, options);
    }
    CHECK(representable(y, precision));
    y.backward(g);

    // The same computation spelled out with explicit rounding and no guard.
    Tensor xr = rounded(x, precision).set_requires_grad(true),
           wr = rounded(w, precision).set_requires_grad(true),
           br = rounded(b, precision).set_requires_grad(true);
    const Tensor reference = conv2d(xr, wr, br, options);
    CHECK(values(y) == values(rounded(reference, precision)));
    reference.backward(rounded(g, precision));
    CHECK(values(x.grad()) == values(rounded(xr.grad(), precision)));
    CHECK(values(w.grad()) == values(rounded(wr.grad(), precision)));
    CHECK(values(b.grad()) == values(rounded(br.grad(), precision)));
    CHECK(representable(w.grad(), precision));
    // The weights themselves (the f32 masters) are untouched.
    CHECK_FALSE(representable(w, precision));
  }
}

TEST_CASE("matmul, bmm and linear under autocast: the f32 product of rounded operands, rounded") {
  const DType precision = DType::bf16;
  Tensor a = random_f32({2, 3, 7}, 20), b = random_f32({2, 7, 5}, 21), m = random_f32({7, 4}, 22);
  Tensor w = random_f32({6, 7}, 23), bias = random_f32({6}, 24);
  Tensor mm, bm, lin;
  {
    AutocastGuard autocast(precision);
    mm = matmul(a, m);
    bm = bmm(a, b);
    lin = linear(a, w, bias);
  }
  const Tensor ar = rounded(a, precision), br = rounded(b, precision), mr = rounded(m, precision);
  CHECK(values(mm) == values(rounded(matmul(ar, mr), precision)));
  CHECK(values(bm) == values(rounded(bmm(ar, br), precision)));
  CHECK(values(lin) ==
        values(rounded(linear(ar, rounded(w, precision), rounded(bias, precision)), precision)));

  sum(lin).backward();
  Tensor wr = rounded(w, precision).set_requires_grad(true);
  sum(linear(ar, wr, rounded(bias, precision))).backward();
  CHECK(values(w.grad()) == values(rounded(wr.grad(), precision)));

  // Mixed precision is an approximation of f32, not something else: bf16 keeps 8 bits, so a product of
  // 7 terms lands within a few percent of the f32 one.
  const std::vector<float> exact = values(matmul(a.detach(), m.detach())), approx = values(mm);
  double worst = 0, scale = 0;
  for (std::size_t i = 0; i < exact.size(); ++i) {
    worst = std::max(worst, double(std::abs(exact[i] - approx[i])));
    scale = std::max(scale, double(std::abs(exact[i])));
  }
  CHECK(worst < 0.05 * scale);
}

TEST_CASE(
    "GradScaler: scales the loss, unscales the gradients, skips and backs off on overflow, grows back") {
  GradScaler scaler(GradScalerOptions{.init_scale = 1024, .growth_interval = 2});
  Tensor p = random_f32({3}, 30), q = random_f32({2}, 31), unused = random_f32({2}, 32);
  sum(mul(scaler.scale(add(sum(mul(p, p)), sum(q))), 1.0)).backward();
  CHECK(values(p.grad())[0] == doctest::Approx(1024 * 2 * values(p)[0]));
  CHECK(scaler.unscale({p, q, unused}));  // unused has no gradient: skipped
  CHECK(values(p.grad())[1] == doctest::Approx(2 * values(p)[1]));
  CHECK(values(q.grad()) == std::vector<float>{1, 1});
  scaler.update();
  CHECK(scaler.scale_value() == 1024);
  scaler.update();  // the second finite step in a row: the scale grows
  CHECK(scaler.scale_value() == 2048);

  for (float bad : {std::numeric_limits<float>::infinity(), std::numeric_limits<float>::quiet_NaN()}) {
    CAPTURE(bad);
    p.zero_grad();
    q.zero_grad();
    sum(mul(p, from_vector(std::vector<float>{1, bad, 1}, {3}))).backward();
    sum(q).backward();
    CHECK_FALSE(scaler.unscale({p, q}));
    CHECK_FALSE(p.grad().defined());  // dropped: no optimizer can step from them
    CHECK_FALSE(q.grad().defined());
    const double before = scaler.scale_value();
    scaler.update();
    CHECK(scaler.scale_value() == before / 2);
  }
  CHECK(scaler.skipped_steps() == 2);

  GradScaler restored;
  restored.load_state(scaler.state());
  CHECK(restored.scale_value() == scaler.scale_value());
  CHECK_THROWS_WITH_AS(restored.load_state({{"scale", scalar_tensor(-1)}}), doctest::Contains("scale"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(restored.load_state({{"bogus", scalar_tensor(1)}}), doctest::Contains("bogus"),
                       std::invalid_argument);
  CHECK_THROWS_AS(GradScaler(GradScalerOptions{.backoff_factor = 1.5}), std::invalid_argument);
}
