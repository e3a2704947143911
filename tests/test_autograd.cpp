// The autograd engine: graphs, accumulation, detach, no-grad mode, retained graphs.
#include <doctest/doctest.h>

#include "engine/autograd.h"
#include "engine/factory.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/reduce.h"

using namespace icd;

namespace {
Tensor leaf(std::vector<double> values) {
  Tensor t = from_vector(values, {static_cast<int64_t>(values.size())}, {DType::f64});
  t.set_requires_grad(true);
  return t;
}
}  // namespace

TEST_CASE("a reused non-leaf gets the sum of its gradients") {
  Tensor x = leaf({2.0, 3.0});
  Tensor y = mul(x, x);               // y = x^2
  Tensor z = sum(add(y, mul(y, y)));  // z = sum(y + y^2), dz/dx = (1 + 2y) 2x
  z.backward();
  CHECK(x.grad().to_vector<double>() == std::vector<double>{(1 + 2 * 4.0) * 4.0, (1 + 2 * 9.0) * 6.0});
}

TEST_CASE("diamond graph: two paths from one leaf meet again") {
  Tensor x = leaf({1.5});
  Tensor a = exp(x), b = mul(x, 3.0);
  Tensor out = sum(mul(a, b));  // d/dx (3x e^x) = 3 e^x + 3x e^x
  out.backward();
  CHECK(x.grad().item() == doctest::Approx(3 * std::exp(1.5) * (1 + 1.5)).epsilon(1e-14));
}

TEST_CASE("gradients accumulate across backward calls until zero_grad") {
  Tensor x = leaf({1.0, -2.0});
  sum(mul(x, 2.0)).backward();
  sum(mul(x, 2.0)).backward();
  CHECK(x.grad().to_vector<double>() == std::vector<double>{4.0, 4.0});
  x.zero_grad();
  CHECK_FALSE(x.grad().defined());
  sum(x).backward();
  CHECK(x.grad().to_vector<double>() == std::vector<double>{1.0, 1.0});
}

TEST_CASE("backward twice needs retain_graph") {
  Tensor x = leaf({3.0});
  Tensor y = sum(mul(x, x));
  y.backward(Tensor(), /*retain_graph=*/true);
  y.backward();
  CHECK(x.grad().item() == 12.0);
  CHECK_THROWS_AS(y.backward(), std::logic_error);
}

TEST_CASE("no gradient flows through detach") {
  Tensor x = leaf({2.0});
  Tensor y = mul(x, x.detach());  // only the first factor carries gradient: dy/dx = x
  y.backward(ones({1}, {DType::f64}));
  CHECK(x.grad().item() == 2.0);
  CHECK_FALSE(x.detach().requires_grad());
  CHECK(x.detach().shares_storage_with(x));
}

TEST_CASE("no graph is built under NoGradGuard") {
  Tensor x = leaf({1.0});
  {
    NoGradGuard guard;
    Tensor y = mul(x, 2.0);
    CHECK_FALSE(y.requires_grad());
    CHECK(y.is_leaf());
    CHECK_FALSE(autograd::grad_enabled());
  }
  CHECK(autograd::grad_enabled());
  CHECK(mul(x, 2.0).requires_grad());
}

TEST_CASE("leaves only get .grad; inputs that do not require grad get none") {
  Tensor x = leaf({1.0, 2.0});
  Tensor c = from_vector(std::vector<double>{5.0, 6.0}, {2}, {DType::f64});
  Tensor y = mul(x, c);
  sum(y).backward();
  CHECK(x.grad().to_vector<double>() == std::vector<double>{5.0, 6.0});
  CHECK_FALSE(c.grad().defined());
  CHECK_FALSE(y.is_leaf());
  CHECK_THROWS_AS(y.set_requires_grad(false), std::logic_error);
}

TEST_CASE("backward of a non-scalar needs an explicit gradient") {
  Tensor x = leaf({1.0, 2.0});
  Tensor y = mul(x, 3.0);
  CHECK_THROWS_AS(y.backward(), std::logic_error);
  y.backward(from_vector(std::vector<double>{1.0, 10.0}, {2}, {DType::f64}));
  CHECK(x.grad().to_vector<double>() == std::vector<double>{3.0, 30.0});
}

TEST_CASE("in-place updates of tensors in the graph are refused while recording") {
  Tensor x = leaf({1.0});
  CHECK_THROWS_AS(fill_(x, 0.0), std::logic_error);
  NoGradGuard guard;
  fill_(x, 0.0);  // what an optimizer step does
  CHECK(x.item() == 0.0);
}

TEST_CASE("gradient through views lands in the right elements") {
  Tensor x = leaf({1, 2, 3, 4, 5, 6});
  Tensor m = x.reshape({2, 3}).transpose(0, 1).narrow(0, 1, 2);  // [[2,5],[3,6]]
  sum(mul(m, m)).backward();
  CHECK(x.grad().to_vector<double>() == std::vector<double>{0, 4, 6, 0, 10, 12});
}

TEST_CASE("a deep chain does not overflow the stack") {
  Tensor x = leaf({1.0});
  Tensor y = x;
  for (int i = 0; i < 20000; ++i)
    y = add(y, 1e-3);
  y.backward(ones({1}, {DType::f64}));
  CHECK(x.grad().item() == 1.0);
}
