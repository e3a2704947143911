// Reductions: sum, mean, sum_to.
#include <doctest/doctest.h>

#include "engine/factory.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/reduce.h"
#include "gradcheck.h"

using namespace icd;
using icd::testing::random_leaf;
using Inputs = std::vector<Tensor>;

TEST_CASE("sum and mean: forward over chosen dims") {
  Tensor x = arange(24, {DType::f64}).reshape({2, 3, 4});
  CHECK(sum(x).item() == 276);
  CHECK(mean(x).item() == 11.5);
  CHECK(sum(x, {0}).shape() == Shape{3, 4});
  CHECK(sum(x, {0}).to_vector<double>()[0] == 12);
  CHECK(sum(x, {-1}, true).shape() == Shape{2, 3, 1});
  CHECK(sum(x, {-1}).to_vector<double>() == std::vector<double>{6, 22, 38, 54, 70, 86});
  CHECK(sum(x, {0, 2}).to_vector<double>() == std::vector<double>{60, 92, 124});
  CHECK(mean(x, {1}).to_vector<double>()[0] == 4);
  CHECK(sum(x.transpose(0, 2), {0}).to_vector<double>() == sum(x, {2}).transpose(0, 1).contiguous().to_vector<double>());
  CHECK_THROWS_AS(sum(x, {0, 0}), std::invalid_argument);
  CHECK_THROWS_AS(sum(x, {3}), std::out_of_range);
}

TEST_CASE("f32 sums keep their digits over many elements") {
  Tensor x = full({1 << 20}, 0.1f);
  CHECK(sum(x).item() == doctest::Approx(0.1f * (1 << 20)).epsilon(1e-7));
}

TEST_CASE("sum_to undoes broadcasting") {
  Tensor g = ones({2, 3, 4}, {DType::f64});
  CHECK(sum_to(g, {3, 1}).to_vector<double>() == std::vector<double>{8, 8, 8});
  CHECK(sum_to(g, {4}).shape() == Shape{4});
  CHECK(sum_to(g, {}).item() == 24);
  CHECK_THROWS_AS(sum_to(g, {5}), std::invalid_argument);
}

TEST_CASE("gradcheck: sum and mean") {
  Tensor x = random_leaf({2, 3, 4}, 1);
  CHECK_GRADCHECK([](const Inputs& in) { return sum(in[0]); }, {x});
  CHECK_GRADCHECK([](const Inputs& in) { return sum(in[0], {1}); }, {x});
  CHECK_GRADCHECK([](const Inputs& in) { return sum(in[0], {0, 2}, true); }, {x});
  CHECK_GRADCHECK([](const Inputs& in) { return mean(in[0], {-1}); }, {x});
  CHECK_GRADCHECK([](const Inputs& in) { return mean(in[0].permute({2, 0, 1}), {1, 2}); }, {x});
  CHECK_GRADCHECK([](const Inputs& in) { return sum_to(in[0], {3, 1}); }, {x});
}
