// The gradient checker itself: it passes correct gradients and catches planted wrong ones.
#include <doctest/doctest.h>

#include "engine/autograd.h"
#include "engine/factory.h"
#include "engine/ops/elementwise.h"
#include "gradcheck.h"

using namespace icd;
using icd::testing::gradcheck;
using icd::testing::random_leaf;

namespace {
// x^2 with a backward that is deliberately off by a factor `scale` (1 = correct).
Tensor square_with_scaled_grad(const Tensor& x, double scale) {
  Tensor y;
  {
    NoGradGuard no_grad;
    y = mul(x, x);
  }
  autograd::record(y, "planted_square", {x}, [x = x.detach(), scale](const Tensor& g) -> std::vector<Tensor> {
    return {mul(mul(g, x), 2.0 * scale)};
  });
  return y;
}
}  // namespace

TEST_CASE("gradcheck passes a correct backward") {
  Tensor x = random_leaf({3, 4}, 1);
  CHECK_GRADCHECK([](const std::vector<Tensor>& in) { return square_with_scaled_grad(in[0], 1.0); }, {x});
}

TEST_CASE("gradcheck catches a planted wrong gradient") {
  Tensor x = random_leaf({3, 4}, 1);
  auto result =
      gradcheck([](const std::vector<Tensor>& in) { return square_with_scaled_grad(in[0], 1.001); }, {x});
  CHECK_FALSE(result.ok);
  CHECK(result.message.find("input 0") != std::string::npos);
}

TEST_CASE("gradcheck catches a gradient that drops one element") {
  Tensor x = random_leaf({5}, 2);
  auto f = [](const std::vector<Tensor>& in) {
    Tensor y;
    {
      NoGradGuard no_grad;
      y = mul(in[0], 3.0);
    }
    autograd::record(y, "planted_drop", {in[0]}, [](const Tensor& g) -> std::vector<Tensor> {
      Tensor gx = mul(g, 3.0);
      NoGradGuard no_grad;
      Tensor last = gx.narrow(0, 4, 1);
      fill_(last, 0.0);
      return {gx};
    });
    return y;
  };
  CHECK_FALSE(gradcheck(f, {x}).ok);
}

TEST_CASE("gradcheck handles non-contiguous leaves") {
  Generator gen(3);
  Tensor base = randn({4, 3}, gen, {DType::f64});
  Tensor xt = base.transpose(0, 1).detach();
  xt.set_requires_grad(true);
  CHECK_FALSE(xt.is_contiguous());
  CHECK_GRADCHECK([](const std::vector<Tensor>& in) { return mul(in[0], exp(in[0])); }, {xt});
}

TEST_CASE("gradcheck refuses non-f64 inputs") {
  Tensor x = zeros({2});
  x.set_requires_grad(true);
  CHECK_THROWS_AS(gradcheck([](const std::vector<Tensor>& in) { return in[0]; }, {x}), std::invalid_argument);
}
