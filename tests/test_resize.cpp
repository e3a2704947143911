// Resizing: nearest (by size and by scale factor) and bilinear (both align_corners). Hand-checked values
// including torch's index conventions, f64 gradient checks (non-contiguous inputs too), hand-checked
// scatter-add backward, parity with torch (tests/fixtures/resize.json from tools/make_resize_fixtures.py,
// f64 and f32), a large f32 run through the parallel path, and bad arguments.
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include "engine/autograd.h"
#include "engine/factory.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/reduce.h"
#include "engine/ops/resize.h"
#include "fixture.h"
#include "gradcheck.h"

using namespace icd;
using icd::testing::max_abs;
using icd::testing::f64;
using icd::testing::max_relative_error;
using icd::testing::random_leaf;
using Inputs = std::vector<Tensor>;

namespace {



void check_near(const std::vector<double>& got, const std::vector<double>& want) {
  REQUIRE(got.size() == want.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    CAPTURE(i);
    CHECK(got[i] == doctest::Approx(want[i]).epsilon(1e-15));
  }
}

}  // namespace

TEST_CASE("upsample_nearest2d: hand-checked values and torch's index rule") {
  Tensor x = f64({1, 2, 3, 4}, {1, 1, 2, 2});
  const std::vector<double> doubled{1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4};
  CHECK(upsample_nearest2d(x, 4, 4).to_vector<double>() == doubled);
  CHECK(upsample_nearest2d(x, 2.0).to_vector<double>() == doubled);
  CHECK(upsample_nearest2d(x, 2.0).shape() == Shape{1, 1, 4, 4});
  // Rectangular: 2 -> 3 rows reads rows floor(0), floor(2/3), floor(4/3) = 0, 0, 1; 2 -> 1 column reads 0.
  CHECK(upsample_nearest2d(x, 3, 1).to_vector<double>() == std::vector<double>{1, 1, 3});
  // Shrinking 4 -> 2 keeps every other pixel.
  Tensor big = arange(16, {DType::f64}).reshape({1, 1, 4, 4});
  CHECK(upsample_nearest2d(big, 2, 2).to_vector<double>() == std::vector<double>{0, 2, 8, 10});
  CHECK(upsample_nearest2d(big, 0.5).to_vector<double>() == std::vector<double>{0, 2, 8, 10});
  // 26 -> 22: exactly, output 11 reads 11 * 26 / 22 = 13; with torch's f32 ratio it reads 12.
  Tensor line = arange(26, {DType::f64}).reshape({1, 1, 1, 26});
  std::vector<double> picked = upsample_nearest2d(line, 1, 22).to_vector<double>();
  CHECK(picked[10] == 11);
  CHECK(picked[11] == 12);
  CHECK(picked[12] == 14);
  // A scale factor whose output size equals the input copies it; one giving twice the size halves the
  // index exactly (2.05: 9 -> 18 columns, where floor(d / 2.05) would differ from d / 2 at d = 16;
  // the single row becomes two).
  Tensor row9 = arange(9, {DType::f64}).reshape({1, 1, 1, 9});
  CHECK(upsample_nearest2d(row9, 1.1).to_vector<double>() == row9.to_vector<double>());
  std::vector<double> twice = upsample_nearest2d(row9, 2.05).to_vector<double>();
  REQUIRE(twice.size() == 36);
  CHECK(twice[16] == 8);
  CHECK(twice[15] == 7);
  // Channels and batch entries are resized independently.
  Tensor two = arange(8, {DType::f64}).reshape({2, 1, 2, 2});
  CHECK(upsample_nearest2d(two, 1, 1).to_vector<double>() == std::vector<double>{0, 4});
}

TEST_CASE("interpolate_bilinear: hand-checked values for both corner conventions") {
  Tensor x = f64({0, 1}, {1, 1, 1, 2});
  // align_corners=false: src = (d + 0.5) / 2 - 0.5 = -0.25 (clamped to 0), 0.25, 0.75, 1.25 (past the
  // last centre: the last pixel).
  check_near(interpolate_bilinear(x, 1, 4, false).to_vector<double>(), {0, 0.25, 0.75, 1});
  // align_corners=true: src = d / 3.
  check_near(interpolate_bilinear(x, 1, 4, true).to_vector<double>(), {0, 1.0 / 3, 2.0 / 3, 1});
  // 2x2 -> 3x3 with aligned corners: the corners stay, the centre is the mean of all four.
  Tensor sq = f64({1, 2, 3, 5}, {1, 1, 2, 2});
  std::vector<double> up = interpolate_bilinear(sq, 3, 3, true).to_vector<double>();
  check_near(up, {1, 1.5, 2, 2, 2.75, 3.5, 3, 4, 5});
  // Down to one pixel: align_corners=true takes the top-left pixel; false takes the centre point.
  Tensor block = arange(12, {DType::f64}).reshape({1, 1, 3, 4});
  CHECK(interpolate_bilinear(block, 1, 1, true).item() == 0);
  // centre: src_h = 1.5 * 1 - 0.5 = 1, src_w = 2 - 0.5 = 1.5 -> (x[1][1] + x[1][2]) / 2 = 5.5
  CHECK(interpolate_bilinear(block, 1, 1, false).item() == doctest::Approx(5.5).epsilon(1e-15));
  // Same size: the identity.
  CHECK(interpolate_bilinear(block, 3, 4, false).to_vector<double>() == block.to_vector<double>());
  CHECK(interpolate_bilinear(block, 3, 4, true).to_vector<double>() == block.to_vector<double>());
}

TEST_CASE("backward scatters and adds the gradient onto the pixels read") {
  Tensor x = random_leaf({1, 1, 2, 3}, 1);
  upsample_nearest2d(x, 4, 6).backward(ones({1, 1, 4, 6}, {DType::f64}));
  CHECK(x.grad().to_vector<double>() == std::vector<double>(6, 4.0));  // each pixel feeds a 2x2 block
  x.zero_grad();
  // 3 -> 2 columns reads columns 0 and 1: column 2 gets nothing.
  upsample_nearest2d(x, 2, 2).backward(ones({1, 1, 2, 2}, {DType::f64}));
  CHECK(x.grad().to_vector<double>() == std::vector<double>{1, 1, 0, 1, 1, 0});
  x.zero_grad();
  // Bilinear weights sum to one per output, so the gradient of ones sums to the number of outputs.
  for (bool align : {false, true}) {
    CAPTURE(align);
    interpolate_bilinear(x, 5, 7, align).backward(ones({1, 1, 5, 7}, {DType::f64}));
    CHECK(sum(x.grad()).item() == doctest::Approx(35.0).epsilon(1e-14));
    x.zero_grad();
  }
  // 1x2 -> 1x4 without aligned corners: weights (1, 0), (0.75, 0.25), (0.25, 0.75), (0, 1).
  Tensor pair = random_leaf({1, 1, 1, 2}, 2);
  interpolate_bilinear(pair, 1, 4, false).backward(f64({1, 10, 100, 1000}, {1, 1, 1, 4}));
  check_near(pair.grad().to_vector<double>(), {1 + 7.5 + 25, 2.5 + 75 + 1000});
}

TEST_CASE("gradcheck: nearest and bilinear, every option, non-contiguous inputs") {
  Tensor x = random_leaf({2, 2, 3, 4}, 11);
  CHECK_GRADCHECK([](const Inputs& in) { return upsample_nearest2d(in[0], 6, 8); }, {x});
  CHECK_GRADCHECK([](const Inputs& in) { return upsample_nearest2d(in[0], 2, 3); }, {x});
  CHECK_GRADCHECK([](const Inputs& in) { return upsample_nearest2d(in[0], 5, 7); }, {x});
  CHECK_GRADCHECK([](const Inputs& in) { return upsample_nearest2d(in[0], 2.0); }, {x});
  CHECK_GRADCHECK([](const Inputs& in) { return upsample_nearest2d(in[0], 1.5); }, {x});
  CHECK_GRADCHECK([](const Inputs& in) { return upsample_nearest2d(in[0], 0.5); }, {x});
  for (bool align : {false, true}) {
    CAPTURE(align);
    CHECK_GRADCHECK([align](const Inputs& in) { return interpolate_bilinear(in[0], 5, 7, align); }, {x});
    CHECK_GRADCHECK([align](const Inputs& in) { return interpolate_bilinear(in[0], 2, 3, align); }, {x});
    CHECK_GRADCHECK([align](const Inputs& in) { return interpolate_bilinear(in[0], 1, 1, align); }, {x});
    CHECK_GRADCHECK([align](const Inputs& in) { return interpolate_bilinear(in[0], 6, 2, align); }, {x});
  }
  // Non-contiguous: H and W swapped, and a channel slice.
  Tensor base = random_leaf({1, 3, 4, 3}, 12);
  CHECK_GRADCHECK([](const Inputs& in) { return upsample_nearest2d(in[0].transpose(2, 3), 6, 5); }, {base});
  CHECK_GRADCHECK([](const Inputs& in) { return interpolate_bilinear(in[0].narrow(1, 1, 2), 7, 4, false); },
                  {base});
  CHECK_GRADCHECK(
      [](const Inputs& in) {
        return interpolate_bilinear(in[0].permute({1, 0, 3, 2}), 5, 5, true);
      },
      {base});
}

TEST_CASE("parity with torch (tests/fixtures/resize.json), f64 and f32") {
  testing::Fixture fixture("resize.json");
  CHECK(fixture.case_names().size() == 18);
  for (const std::string& name : fixture.case_names()) {
    INFO("case " << name);
    testing::FixtureCase c = fixture[name];
    const auto& p = c.params();
    for (DType dtype : {DType::f64, DType::f32}) {
      INFO("dtype " << dtype_name(dtype));
      Tensor x = c.tensor("x", dtype);
      x.set_requires_grad(true);
      Tensor y;
      if (p.at("mode") == "nearest") {
        if (p.contains("scale_factor")) {
          y = upsample_nearest2d(x, p.at("scale_factor").get<double>());
        } else {
          y = upsample_nearest2d(x, p.at("size")[0].get<int64_t>(), p.at("size")[1].get<int64_t>());
        }
      } else {
        REQUIRE(p.at("mode") == "bilinear");
        y = interpolate_bilinear(x, p.at("size")[0].get<int64_t>(), p.at("size")[1].get<int64_t>(),
                                 p.at("align_corners").get<bool>());
      }
      y.backward(c.tensor("grad_y", dtype));
      const Tensor expected_y = c.tensor("y"), expected_dx = c.tensor("grad_x");
      CHECK(y.dtype() == dtype);
      if (dtype == DType::f64) {
        CHECK(max_relative_error(y, expected_y) < 1e-10);
        CHECK(max_relative_error(x.grad(), expected_dx) < 1e-10);
      } else {
        // f32 results against the tensor's largest magnitude: sums of terms can cancel to ~0.
        CHECK(max_relative_error(y, expected_y, max_abs(expected_y)) < 1e-5);
        CHECK(max_relative_error(x.grad(), expected_dx, max_abs(expected_dx)) < 1e-5);
      }
    }
  }
}

TEST_CASE("large f32 inputs take the parallel path and agree with f64") {
  Generator gen(21);
  Tensor x = randn({2, 8, 40, 40}, gen);
  Tensor g_near = randn({2, 8, 80, 80}, gen), g_bil = randn({2, 8, 57, 93}, gen);
  for (int which = 0; which < 3; ++which) {
    CAPTURE(which);
    std::vector<Tensor> out, grads;
    for (DType dtype : {DType::f32, DType::f64}) {
      Tensor xi = x.to(dtype).detach();
      xi.set_requires_grad(true);
      Tensor y = which == 0   ? upsample_nearest2d(xi, 2.0)
                 : which == 1 ? interpolate_bilinear(xi, 57, 93, false)
                              : interpolate_bilinear(xi, 57, 93, true);
      y.backward((which == 0 ? g_near : g_bil).to(dtype));
      out.push_back(y);
      grads.push_back(xi.grad());
    }
    // Bilinear source coordinates are computed in f32 for f32 tensors, as torch does: their rounding,
    // about 6e-8 times a coordinate of up to 40, bounds the agreement with f64.
    CHECK(max_relative_error(out[0], out[1], max_abs(out[1])) < 1e-5);
    CHECK(max_relative_error(grads[0], grads[1], max_abs(grads[1])) < 1e-5);
  }
}

TEST_CASE("bad arguments are rejected with the op's name") {
  Tensor x = zeros({1, 2, 3, 4}, {DType::f64});
  CHECK_THROWS_AS(upsample_nearest2d(zeros({2, 3, 4}, {DType::f64}), 6, 8), std::invalid_argument);
  CHECK_THROWS_AS(upsample_nearest2d(x, 0, 8), std::invalid_argument);
  CHECK_THROWS_AS(upsample_nearest2d(x, 6, -1), std::invalid_argument);
  CHECK_THROWS_AS(upsample_nearest2d(x, 0.0), std::invalid_argument);
  CHECK_THROWS_AS(upsample_nearest2d(x, -2.0), std::invalid_argument);
  CHECK_THROWS_AS(upsample_nearest2d(x, 0.2), std::invalid_argument);  // 3 * 0.2 rounds down to 0 rows
  CHECK_THROWS_AS(upsample_nearest2d(x, NAN), std::invalid_argument);
  CHECK_THROWS_AS(upsample_nearest2d(zeros({1, 2, 0, 4}, {DType::f64}), 2, 2), std::invalid_argument);
  CHECK_THROWS_AS(interpolate_bilinear(zeros({3, 4}, {DType::f64}), 2, 2, false), std::invalid_argument);
  CHECK_THROWS_AS(interpolate_bilinear(x, 2, 0, true), std::invalid_argument);
  CHECK_THROWS_AS(interpolate_bilinear(zeros({1, 1, 2, 2}, {DType::i64}), 4, 4, false),
                  std::invalid_argument);
  try {
    interpolate_bilinear(x, 0, 3, false);
    FAIL("no error");
  } catch (const std::invalid_argument& e) {
    CHECK(std::string(e.what()).find("interpolate_bilinear") == 0);
  }
}
