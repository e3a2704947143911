// Elementwise ops: forward values and f64 gradient checks, with broadcasting and non-contiguous inputs.
#include <doctest/doctest.h>

#include <cmath>

#include "engine/autograd.h"
#include "engine/factory.h"
#include "engine/ops/elementwise.h"
#include "gradcheck.h"

using namespace icd;
using icd::testing::f64;
using icd::testing::random_leaf;
using Inputs = std::vector<Tensor>;

namespace {
// Values bounded away from zero, for log/sqrt/div/pow and the kinks of relu/abs.
Tensor away_from_zero(const Shape& shape, uint64_t seed) {
  Tensor x = random_leaf(shape, seed, 0.2, 1.5);
  Generator gen(seed + 100);
  NoGradGuard no_grad;
  Tensor sign = sub(mul(gt(rand(shape, gen, {DType::f64}), 0.5), 2.0), 1.0);
  Tensor y = mul(x, sign).detach();
  y.set_requires_grad(true);
  return y;
}
}  // namespace

TEST_CASE("binary ops: forward with broadcasting") {
  Tensor a = f64({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor b = f64({10, 20, 30}, {3});
  CHECK(add(a, b).to_vector<double>() == std::vector<double>{11, 22, 33, 14, 25, 36});
  CHECK(sub(a, f64({1, 2}, {2, 1})).to_vector<double>() == std::vector<double>{0, 1, 2, 2, 3, 4});
  CHECK(mul(a, 2.0).to_vector<double>() == std::vector<double>{2, 4, 6, 8, 10, 12});
  CHECK(div(a, b).to_vector<double>()[5] == 0.2);
  CHECK(pow(f64({2, 3}, {2}), f64({3, 2}, {2})).to_vector<double>() == std::vector<double>{8, 9});
  CHECK(maximum(f64({1, 5}, {2}), f64({3, 2}, {2})).to_vector<double>() == std::vector<double>{3, 5});
  CHECK(minimum(f64({1, 5}, {2}), f64({3, 2}, {2})).to_vector<double>() == std::vector<double>{1, 2});
  // NaN on either side propagates, as torch.maximum / torch.minimum.
  for (const Tensor& m : {maximum(f64({std::nan(""), 1}, {2}), f64({1, std::nan("")}, {2})),
                          minimum(f64({std::nan(""), 1}, {2}), f64({1, std::nan("")}, {2}))})
    for (double v : m.to_vector<double>())
      CHECK(std::isnan(v));
  CHECK(add(f64({1}, {}), a).shape() == Shape{2, 3});
  CHECK(add(zeros({4, 1, 3}), zeros({2, 1})).shape() == Shape{4, 2, 3});
  CHECK_THROWS_AS(add(zeros({2, 3}), zeros({2})), std::invalid_argument);
}

TEST_CASE("unary ops: forward values") {
  Tensor x = f64({-2, -0.5, 0, 0.5, 2}, {5});
  CHECK(relu(x).to_vector<double>() == std::vector<double>{0, 0, 0, 0.5, 2});
  CHECK(abs(x).to_vector<double>() == std::vector<double>{2, 0.5, 0, 0.5, 2});
  CHECK(neg(x).to_vector<double>()[0] == 2);
  CHECK(clamp(x, -1, 1).to_vector<double>() == std::vector<double>{-1, -0.5, 0, 0.5, 1});
  CHECK(sigmoid(x).to_vector<double>()[2] == 0.5);
  CHECK(sigmoid(x).to_vector<double>()[4] == doctest::Approx(1 / (1 + std::exp(-2.0))).epsilon(1e-15));
  CHECK(tanh(x).to_vector<double>()[0] == doctest::Approx(std::tanh(-2.0)).epsilon(1e-15));
  CHECK(exp(x).to_vector<double>()[4] == doctest::Approx(std::exp(2.0)).epsilon(1e-15));
  CHECK(log(f64({1, std::exp(1.0)}, {2})).to_vector<double>()[1] == doctest::Approx(1.0).epsilon(1e-15));
  CHECK(sqrt(f64({4, 9}, {2})).to_vector<double>() == std::vector<double>{2, 3});
  CHECK(pow(f64({2, 3}, {2}), 2.0).to_vector<double>() == std::vector<double>{4, 9});
  // sigmoid stays finite and exact at the extremes (no exp overflow)
  Tensor extreme = sigmoid(f64({-1000, 1000}, {2}));
  CHECK(extreme.to_vector<double>() == std::vector<double>{0, 1});
  Tensor big = sigmoid(from_vector(std::vector<float>{-100.f, 100.f}, {2}));
  CHECK(big.to_vector<float>()[0] == doctest::Approx(3.7835e-44).epsilon(1e-3));  // denormal, as in torch
  CHECK(big.to_vector<float>()[1] == 1.f);
}

TEST_CASE("comparisons, where and masked_fill") {
  Tensor a = f64({1, 2, 3}, {3}), b = f64({2, 2, 2}, {3});
  CHECK(eq(a, b).to_vector<double>() == std::vector<double>{0, 1, 0});
  CHECK(ne(a, b).to_vector<double>() == std::vector<double>{1, 0, 1});
  CHECK(lt(a, b).to_vector<double>() == std::vector<double>{1, 0, 0});
  CHECK(le(a, b).to_vector<double>() == std::vector<double>{1, 1, 0});
  CHECK(gt(a, b).to_vector<double>() == std::vector<double>{0, 0, 1});
  CHECK(ge(a, b).to_vector<double>() == std::vector<double>{0, 1, 1});
  CHECK(where(f64({1, 0, 1}, {3}), a, f64({-1}, {1})).to_vector<double>() == std::vector<double>{1, -1, 3});
  CHECK(masked_fill(a, f64({0, 1, 0}, {3}), 9).to_vector<double>() == std::vector<double>{1, 9, 3});
  CHECK_THROWS_AS(masked_fill(a, zeros({2, 3}, {DType::f64}), 0), std::invalid_argument);
}

TEST_CASE("in-place ops write through views") {
  Tensor a = zeros({2, 3}, {DType::f64});
  Tensor col = a.narrow(1, 1, 1);
  add_(col, f64({1, 2}, {2, 1}), 3.0);
  CHECK(a.to_vector<double>() == std::vector<double>{0, 3, 0, 0, 6, 0});
  mul_(a, 2.0);
  CHECK(a.to_vector<double>()[4] == 12);
  Tensor f = zeros({2, 2});
  copy_(f, f64({1, 2}, {2}));
  CHECK(f.to_vector<float>() == std::vector<float>{1, 2, 1, 2});
  CHECK_THROWS_AS(add_(col, zeros({3}, {DType::f64})), std::invalid_argument);
}

TEST_CASE("f32 large tensors take the parallel path and agree with f64") {
  Generator gen(5);
  Tensor a = randn({300, 257}, gen), b = randn({257}, gen);
  std::vector<float> out = mul(sigmoid(a), b).to_vector<float>();
  std::vector<double> ref = mul(sigmoid(a.to(DType::f64)), b.to(DType::f64)).to_vector<double>();
  for (std::size_t i = 0; i < out.size(); i += 97)
    CHECK(out[i] == doctest::Approx(ref[i]).epsilon(1e-6));
}

TEST_CASE("gradcheck: binary ops with broadcasting") {
  Tensor a = random_leaf({2, 3, 4}, 1), b = random_leaf({3, 1}, 2);
  CHECK_GRADCHECK([](const Inputs& in) { return add(in[0], in[1]); }, {a, b});
  CHECK_GRADCHECK([](const Inputs& in) { return sub(in[0], in[1]); }, {a, b});
  CHECK_GRADCHECK([](const Inputs& in) { return mul(in[0], in[1]); }, {a, b});
  Tensor pos = random_leaf({3, 1}, 3, 0.5, 2.0);
  CHECK_GRADCHECK([](const Inputs& in) { return div(in[0], in[1]); }, {a, pos});
  Tensor base = random_leaf({2, 3}, 4, 0.5, 2.0), expo = random_leaf({3}, 5, -1.5, 1.5);
  CHECK_GRADCHECK([](const Inputs& in) { return pow(in[0], in[1]); }, {base, expo});
  // maximum/minimum away from ties
  Tensor m1 = f64({0.1, 0.9, -0.4, 0.3}, {4}), m2 = f64({0.5, 0.2, -0.1, -0.6}, {4});
  m1.set_requires_grad(true);
  m2.set_requires_grad(true);
  CHECK_GRADCHECK([](const Inputs& in) { return maximum(in[0], in[1]); }, {m1, m2});
  CHECK_GRADCHECK([](const Inputs& in) { return minimum(in[0], in[1]); }, {m1, m2});
  CHECK_GRADCHECK([](const Inputs& in) { return mul(in[0], 2.5) + in[0] * in[0] - 1.0; }, {a});
}

TEST_CASE("gradcheck: unary ops, away from kinks") {
  Tensor x = away_from_zero({3, 4}, 7);
  CHECK_GRADCHECK([](const Inputs& in) { return neg(in[0]); }, {x});
  CHECK_GRADCHECK([](const Inputs& in) { return exp(in[0]); }, {x});
  CHECK_GRADCHECK([](const Inputs& in) { return abs(in[0]); }, {x});
  CHECK_GRADCHECK([](const Inputs& in) { return relu(in[0]); }, {x});
  CHECK_GRADCHECK([](const Inputs& in) { return sigmoid(in[0]); }, {x});
  CHECK_GRADCHECK([](const Inputs& in) { return tanh(in[0]); }, {x});
  CHECK_GRADCHECK([](const Inputs& in) { return clamp(in[0], -0.7, 0.8); }, {x});
  CHECK_GRADCHECK([](const Inputs& in) { return pow(in[0], 3.0); }, {x});
  Tensor p = random_leaf({3, 4}, 8, 0.3, 2.0);
  CHECK_GRADCHECK([](const Inputs& in) { return log(in[0]); }, {p});
  CHECK_GRADCHECK([](const Inputs& in) { return sqrt(in[0]); }, {p});
  CHECK_GRADCHECK([](const Inputs& in) { return pow(in[0], -1.5); }, {p});
}

TEST_CASE("gradcheck: where and masked_fill send gradient only where selected") {
  Tensor a = random_leaf({2, 3}, 9), b = random_leaf({3}, 10);
  Tensor cond = f64({1, 0, 1, 0, 0, 1}, {2, 3});
  CHECK_GRADCHECK([cond](const Inputs& in) { return where(cond, in[0], in[1]); }, {a, b});
  CHECK_GRADCHECK([cond](const Inputs& in) { return masked_fill(in[0], cond, -3.0); }, {a});
}

TEST_CASE("gradcheck: non-contiguous (permuted, sliced, expanded) inputs") {
  Tensor a = random_leaf({4, 3, 2}, 11), b = random_leaf({2, 3}, 12);
  CHECK_GRADCHECK(
      [](const Inputs& in) {
        return mul(in[0].permute({2, 1, 0}), in[1].unsqueeze(-1));
      },
      {a, b});
  CHECK_GRADCHECK([](const Inputs& in) { return sigmoid(in[0].narrow(0, 1, 2).transpose(0, 2)); }, {a});
  CHECK_GRADCHECK([](const Inputs& in) { return tanh(in[0].expand({5, 2, 3})); }, {b});
  CHECK_GRADCHECK([](const Inputs& in) { return in[0].reshape({6, 4}).transpose(0, 1).contiguous(); }, {a});
  CHECK_GRADCHECK([](const Inputs& in) { return in[0].select(1, 2).flatten().clone(); }, {a});
  CHECK_GRADCHECK([](const Inputs& in) { return in[0].unsqueeze(1).squeeze(); }, {b});
}
