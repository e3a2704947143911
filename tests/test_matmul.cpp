// Matrix products: matmul (1-D, 2-D, batched with broadcasting), bmm, linear. Forward values by hand
// and against torch (tests/fixtures/matmul.json), f64 gradient checks on transposed, sliced and
// broadcast inputs, and shape errors.
#include <doctest/doctest.h>

#include "engine/factory.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/matmul.h"
#include "engine/ops/reduce.h"
#include "fixture.h"
#include "gradcheck.h"

using namespace icd;
using icd::testing::f64;
using icd::testing::max_relative_error;
using icd::testing::random_leaf;
using Inputs = std::vector<Tensor>;

namespace {

// GEMM rounding errors scale with the products summed, not with a result that happens to cancel to
// near zero: f32 results are compared relative to the largest expected element (a normwise error).
double normwise_error(const Tensor& actual, const Tensor& expected) {
  return max_relative_error(actual, expected, amax(abs(expected)).item());
}

// The product computed from its definition, sum_k a[m, k] b[k, n], for 2-D a and b.
Tensor reference_mm(const Tensor& a, const Tensor& b) {
  return sum(mul(a.unsqueeze(2), b.unsqueeze(0)), {1});
}
}  // namespace

TEST_CASE("matmul: hand-computed values for every rank combination") {
  Tensor a = f64({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor b = f64({7, 8, 9, 10, 11, 12}, {3, 2});
  Tensor c = matmul(a, b);
  CHECK(c.shape() == Shape{2, 2});
  CHECK(c.to_vector<double>() == std::vector<double>{58, 64, 139, 154});
  Tensor v = f64({1, 0, -1}, {3});
  Tensor dot = matmul(v, f64({4, 5, 6}, {3}));
  CHECK(dot.shape() == Shape{});
  CHECK(dot.item() == -2);
  CHECK(matmul(a, v).to_vector<double>() == std::vector<double>{-2, -2});  // [2, 3] x [3]
  CHECK(matmul(f64({1, -1}, {2}), a).to_vector<double>() == std::vector<double>{-3, -3, -3});
  // Transposed and sliced views give the same products as their contiguous copies.
  CHECK(matmul(b.transpose(0, 1), a.transpose(0, 1)).to_vector<double>() ==
        c.transpose(0, 1).contiguous().to_vector<double>());
  Tensor wide = arange(20, {DType::f64}).reshape({4, 5});
  Tensor cols = wide.narrow(1, 1, 3);  // row stride 5, 3 columns
  CHECK(matmul(cols, b).to_vector<double>() == matmul(cols.contiguous(), b).to_vector<double>());
  CHECK(matmul(b.transpose(0, 1), cols.transpose(0, 1)).to_vector<double>() ==
        matmul(b.transpose(0, 1).contiguous(), cols.transpose(0, 1).contiguous()).to_vector<double>());
  // Broadcast (stride 0) inside a matrix: copied, same answer.
  Tensor row = f64({1, 2, 3}, {1, 3}).expand({4, 3});
  CHECK(matmul(row, b).to_vector<double>() == std::vector<double>{58, 64, 58, 64, 58, 64, 58, 64});
  // Empty contraction: zeros, not garbage.
  CHECK(matmul(zeros({2, 0}, {DType::f64}), zeros({0, 3}, {DType::f64})).to_vector<double>() ==
        std::vector<double>(6, 0.0));
}

TEST_CASE("matmul: batched shapes with broadcasting, bmm") {
  Generator gen(1);
  Tensor a = randn({2, 1, 3, 4}, gen, {DType::f64});
  Tensor b = randn({5, 4, 6}, gen, {DType::f64});
  Tensor c = matmul(a, b);
  CHECK(c.shape() == Shape{2, 5, 3, 6});
  for (int64_t i = 0; i < 2; ++i)
    for (int64_t j = 0; j < 5; ++j)
      CHECK(max_relative_error(c.select(0, i).select(0, j),
                               reference_mm(a.select(0, i).select(0, 0), b.select(0, j))) < 1e-13);
  CHECK(matmul(randn({3, 4}, gen, {DType::f64}), b).shape() == Shape{5, 3, 6});
  CHECK(matmul(a, randn({4}, gen, {DType::f64})).shape() == Shape{2, 1, 3});
  CHECK(matmul(randn({3}, gen, {DType::f64}), a).shape() == Shape{2, 1, 4});
  // Batch folded into rows (contiguous a) and the batched path (transposed a) agree.
  Tensor x = randn({3, 7, 4}, gen, {DType::f64});
  Tensor w = randn({4, 2}, gen, {DType::f64});
  Tensor xt = x.transpose(1, 2).contiguous().transpose(1, 2);  // same values, column-major matrices
  CHECK(max_relative_error(matmul(xt, w), matmul(x, w)) < 1e-12);
  Tensor p = randn({3, 4, 5}, gen, {DType::f64}), q = randn({3, 5, 2}, gen, {DType::f64});
  Tensor r = bmm(p, q);
  CHECK(r.shape() == Shape{3, 4, 2});
  CHECK(max_relative_error(r.select(0, 2), reference_mm(p.select(0, 2), q.select(0, 2))) < 1e-13);
}

TEST_CASE("linear: y = x W^T + b") {
  Tensor x = f64({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor w = f64({1, 0, 0, 0, 1, 1}, {2, 3});
  Tensor bias = f64({10, 20}, {2});
  CHECK(linear(x, w, bias).to_vector<double>() == std::vector<double>{11, 25, 14, 31});
  CHECK(linear(x, w).to_vector<double>() == std::vector<double>{1, 5, 4, 11});
  CHECK(linear(f64({1, 2, 3}, {3}), w, bias).shape() == Shape{2});
  Tensor x3 = arange(24, {DType::f64}).reshape({2, 4, 3});
  Tensor y3 = linear(x3, w, bias);
  CHECK(y3.shape() == Shape{2, 4, 2});
  CHECK(y3.to_vector<double>()[7] == 20 + 10 + 11);  // row [9, 10, 11]
  // A transposed weight view and a permuted input.
  Tensor wt = f64({1, 0, 0, 1, 0, 1}, {3, 2}).transpose(0, 1);  // equals w
  CHECK(linear(x, wt, bias).to_vector<double>() == std::vector<double>{11, 25, 14, 31});
  CHECK(max_relative_error(linear(x3.transpose(0, 1), w, bias), y3.transpose(0, 1)) < 1e-15);
}

TEST_CASE("shape errors name the op and the shapes") {
  Tensor m = zeros({2, 3}, {DType::f64});
  CHECK_THROWS_AS(matmul(m, m), std::invalid_argument);
  CHECK_THROWS_AS(matmul(zeros({3}, {DType::f64}), zeros({4}, {DType::f64})), std::invalid_argument);
  CHECK_THROWS_AS(matmul(scalar_tensor(1.0, {DType::f64}), m), std::invalid_argument);
  CHECK_THROWS_AS(matmul(zeros({2, 2, 3}, {DType::f64}), zeros({3, 3, 1}, {DType::f64})),
                  std::invalid_argument);
  CHECK_THROWS_AS(matmul(m, zeros({3, 2})), std::invalid_argument);  // f64 x f32
  CHECK_THROWS_AS(bmm(m, m), std::invalid_argument);
  CHECK_THROWS_AS(bmm(zeros({2, 2, 3}, {DType::f64}), zeros({3, 3, 2}, {DType::f64})), std::invalid_argument);
  CHECK_THROWS_AS(linear(m, zeros({4, 2}, {DType::f64})), std::invalid_argument);
  CHECK_THROWS_AS(linear(m, zeros({3}, {DType::f64})), std::invalid_argument);
  CHECK_THROWS_AS(linear(m, zeros({4, 3}, {DType::f64}), zeros({3}, {DType::f64})), std::invalid_argument);
  try {
    matmul(m, zeros({4, 2}, {DType::f64}));
    FAIL("no error");
  } catch (const std::invalid_argument& e) {
    CHECK(std::string(e.what()).find("[2, 3]") != std::string::npos);
    CHECK(std::string(e.what()).find("matmul") != std::string::npos);
  }
}

TEST_CASE("f32: large and batched products agree with f64") {
  Generator gen(2);
  Tensor a = randn({96, 130}, gen), b = randn({130, 70}, gen);
  CHECK(normwise_error(matmul(a, b), matmul(a.to(DType::f64), b.to(DType::f64))) < 1e-5);
  Tensor p = randn({16, 9, 12}, gen), q = randn({16, 12, 5}, gen);  // one GEMM per thread
  CHECK(normwise_error(bmm(p, q.transpose(1, 2).contiguous().transpose(1, 2)),
                       bmm(p.to(DType::f64), q.to(DType::f64))) < 1e-5);
}

TEST_CASE("gradcheck: 2-D products with transposed and sliced inputs") {
  Tensor a = random_leaf({4, 5}, 1), b = random_leaf({5, 3}, 2);
  CHECK_GRADCHECK([](const Inputs& in) { return matmul(in[0], in[1]); }, {a, b});
  CHECK_GRADCHECK([](const Inputs& in) { return matmul(in[1].transpose(0, 1), in[0].transpose(0, 1)); },
                  {a, b});
  Tensor wide = random_leaf({4, 8}, 3);
  CHECK_GRADCHECK([](const Inputs& in) { return matmul(in[0].narrow(1, 2, 5), in[1]); }, {wide, b});
  Tensor tall = random_leaf({3, 7}, 20);  // narrowed to [3, 5] and transposed: column stride 7
  CHECK_GRADCHECK([](const Inputs& in) { return matmul(in[0], in[1].narrow(1, 1, 5).transpose(0, 1)); },
                  {a, tall});
  Tensor row = random_leaf({1, 5}, 4);
  CHECK_GRADCHECK([](const Inputs& in) { return matmul(in[0].expand({3, 5}), in[1]); }, {row, b});
  // The same tensor on both sides: the two gradients add up.
  Tensor sq = random_leaf({4, 4}, 5);
  CHECK_GRADCHECK([](const Inputs& in) { return matmul(in[0], in[0].transpose(0, 1)); }, {sq});
}

TEST_CASE("gradcheck: 1-D cases") {
  Tensor u = random_leaf({5}, 6), v = random_leaf({5}, 7), m = random_leaf({5, 3}, 8),
         t = random_leaf({2, 5, 3}, 9);
  CHECK_GRADCHECK([](const Inputs& in) { return matmul(in[0], in[1]); }, {u, v});
  CHECK_GRADCHECK([](const Inputs& in) { return matmul(in[0], in[1]); }, {u, m});
  CHECK_GRADCHECK([](const Inputs& in) { return matmul(in[1].transpose(0, 1), in[0]); }, {u, m});
  CHECK_GRADCHECK([](const Inputs& in) { return matmul(in[0], in[1]); }, {u, t});
  CHECK_GRADCHECK([](const Inputs& in) { return matmul(in[1].transpose(1, 2), in[0]); }, {u, t});
}

TEST_CASE("gradcheck: batched products, broadcast batch dims, bmm") {
  Tensor a = random_leaf({2, 1, 3, 4}, 10), b = random_leaf({3, 4, 2}, 11);
  CHECK_GRADCHECK([](const Inputs& in) { return matmul(in[0], in[1]); }, {a, b});
  CHECK_GRADCHECK([](const Inputs& in) { return matmul(in[1].transpose(-1, -2), in[0].transpose(-1, -2)); },
                  {a, b});
  Tensor x = random_leaf({2, 3, 4}, 12), w = random_leaf({4, 5}, 13);
  CHECK_GRADCHECK([](const Inputs& in) { return matmul(in[0], in[1]); }, {x, w});  // folded
  CHECK_GRADCHECK(
      [](const Inputs& in) {
        return matmul(in[0].permute({1, 0, 2}), in[1]);
      },
      {x, w});  // batched
  CHECK_GRADCHECK([](const Inputs& in) { return matmul(in[1].transpose(0, 1), in[0].transpose(1, 2)); },
                  {x, w});
  Tensor p = random_leaf({3, 2, 4}, 14), q = random_leaf({3, 4, 3}, 15);
  CHECK_GRADCHECK([](const Inputs& in) { return bmm(in[0], in[1]); }, {p, q});
  CHECK_GRADCHECK([](const Inputs& in) { return bmm(in[1].transpose(1, 2), in[0].transpose(1, 2)); }, {p, q});
}

TEST_CASE("gradcheck: linear with and without bias") {
  Tensor x = random_leaf({2, 3, 4}, 16), w = random_leaf({5, 4}, 17), bias = random_leaf({5}, 18);
  CHECK_GRADCHECK([](const Inputs& in) { return linear(in[0], in[1], in[2]); }, {x, w, bias});
  CHECK_GRADCHECK([](const Inputs& in) { return linear(in[0], in[1]); }, {x, w});
  CHECK_GRADCHECK([](const Inputs& in) { return linear(in[0].transpose(0, 1), in[1], in[2]); }, {x, w, bias});
  CHECK_GRADCHECK([](const Inputs& in) { return linear(in[0].select(0, 1), in[1], in[2]); }, {x, w, bias});
  CHECK_GRADCHECK([](const Inputs& in) { return linear(in[0].select(0, 0).select(0, 2), in[1], in[2]); },
                  {x, w, bias});  // 1-D x
  Tensor wt = random_leaf({4, 5}, 19);
  CHECK_GRADCHECK([](const Inputs& in) { return linear(in[0], in[1].transpose(0, 1), in[2]); },
                  {x, wt, bias});
  // Only the weight requires grad (the input is data).
  Tensor data = x.detach();
  CHECK_GRADCHECK([data](const Inputs& in) { return linear(data, in[0], in[1]); }, {w, bias});
}

TEST_CASE("parity with torch (tests/fixtures/matmul.json), f64 and f32") {
  icd::testing::Fixture fixture("matmul.json");
  for (const std::string& name : fixture.case_names()) {
    INFO("case " << name);
    icd::testing::FixtureCase c = fixture[name];
    const std::string op = c.params().at("op");
    const std::vector<std::string> names = c.params().at("inputs");
    for (DType dtype : {DType::f64, DType::f32}) {
      INFO(dtype_name(dtype));
      std::vector<Tensor> in;
      for (const std::string& input : names) {
        in.push_back(c.tensor(input, dtype));
        in.back().set_requires_grad(true);
      }
      Tensor y;
      if (op == "matmul")
        y = matmul(in[0], in[1]);
      else if (op == "bmm")
        y = bmm(in[0], in[1]);
      else
        y = linear(in[0], in[1], in.size() > 2 ? in[2] : Tensor());
      auto error = [dtype](const Tensor& actual, const Tensor& expected) {
        return dtype == DType::f64 ? max_relative_error(actual, expected) : normwise_error(actual, expected);
      };
      const double tolerance = dtype == DType::f64 ? 1e-10 : 1e-5;
      CHECK(error(y, c.tensor("y")) < tolerance);
      y.backward(c.tensor("g", dtype));
      for (std::size_t k = 0; k < names.size(); ++k) {
        INFO("gradient of " << names[k]);
        CHECK(error(in[k].grad(), c.tensor("d" + names[k])) < tolerance);
      }
    }
  }
}
