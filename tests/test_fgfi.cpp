// The FGFI baseline (distill/fgfi.h): the imitation mask on hand-made anchors (the psi boundary, the union
// over anchors, boxes and levels, the best IoU taken over all levels, boxes that overlap nothing, images
// without boxes), parity with an independent PyTorch implementation (tools/make_fgfi_fixtures.py ->
// tests/fixtures/fgfi.json) in f64 and f32, f64 gradient checks, accumulation, the empty mask, and the errors
// bad input gets.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "distill/fgfi.h"
#include "engine/factory.h"
#include "engine/ops/shape.h"
#include "fixture.h"
#include "gradcheck.h"
#include "models/anchor_generator.h"

using namespace icd;
using icd::testing::f64;
using icd::testing::max_abs;
using icd::testing::random_leaf;
using Inputs = std::vector<Tensor>;

namespace {

// Relative error with an absolute floor at 1e-6 of the expected tensor's largest magnitude (as in
// test_distill.cpp), so elements that are 0 in torch and 1e-18 here do not count as relative errors of 1.
double parity_error(const Tensor& actual, const Tensor& expected) {
  return testing::max_relative_error(actual, expected, 1e-6 * max_abs(expected) + 1e-300);
}

Inputs with_parameters(Inputs inputs, const Module& m) {
  for (const Tensor& p : m.trainable_parameters())
    inputs.push_back(p);
  return inputs;
}

void load_fixture_weights(Module& m, const testing::FixtureCase& c, DType dtype) {
  NamedTensors state;
  for (const auto& [name, t] : m.state_dict())
    state.emplace_back(name, c.tensor(name, dtype));
  m.load_state_dict(state);
}

Tensor boxes_of(const std::vector<std::vector<double>>& boxes, DType dtype = DType::f64) {
  std::vector<double> flat;
  for (const auto& b : boxes)
    flat.insert(flat.end(), b.begin(), b.end());
  return from_vector(flat, {static_cast<int64_t>(boxes.size()), 4}, {dtype});
}

// Two levels, A = 2. Level 0 is a 1 x 2 grid, level 1 a 1 x 1 grid; the anchors are placed by hand:
//   level 0, cell 0:  a0 (0, 0, 4, 4)      a1 (20, 20, 24, 24)
//   level 0, cell 1:  a0 (0, 0, 4, 2)      a1 (20, 20, 22, 22)
//   level 1, cell 0:  a0 (20, 20, 30, 30)  a1 (40, 40, 48, 48)
Anchors hand_anchors(DType dtype) {
  return {from_vector(std::vector<double>{0,  0,  4,  4,  20, 20, 24, 24, 0, 0, 4, 2, 20, 20, 22, 22,  //
                                          20, 20, 30, 30, 40, 40, 48, 48},
                      {6, 4}, {dtype}),
          {4, 2}};
}

// Image 0: one box equal to level 0 cell 0's a0 (IoU 1); cell 1's a0 has IoU exactly 1/2 with it.
// Image 1: two boxes, equal to cell 0's a1 and to level 1's a1: two cells on two levels, cell 0 through a1.
// Image 2: (20, 20, 28, 28) has IoU 0.64 with level 1's a0 and 0.25 with level 0 cell 0's a1, which a best
//          IoU taken per level would select; and a box that overlaps no anchor at all (its best IoU is 0).
// Image 3: no boxes.
std::vector<Tensor> hand_boxes(DType dtype) {
  return {boxes_of({{0, 0, 4, 4}}, dtype), boxes_of({{20, 20, 24, 24}, {40, 40, 48, 48}}, dtype),
          boxes_of({{20, 20, 28, 28}, {100, 100, 104, 104}}, dtype), zeros({0, 4}, {dtype})};
}

// The fixture's anchors, made by the generator the detector uses.
AnchorGenerator fixture_generator(const testing::FixtureCase& c) {
  AnchorGeneratorConfig config;
  config.sizes = c.params().at("sizes").get<std::vector<std::vector<double>>>();
  config.aspect_ratios = c.params().at("aspect_ratios").get<std::vector<double>>();
  config.strides = c.params().at("strides").get<std::vector<int64_t>>();
  return AnchorGenerator(config);
}

FgfiConfig fixture_config(const testing::FixtureCase& c, double psi) {
  return {.student_channels = c.params().at("student_channels").get<int64_t>(),
          .teacher_channels = c.params().at("teacher_channels").get<int64_t>(),
          .num_levels = 2,
          .anchors_per_cell = c.params().at("anchors_per_cell").get<int64_t>(),
          .psi = psi,
          .adapter_kernel = c.params().at("adapter_kernel").get<int64_t>(),
          .weight = c.params().at("weight").get<double>()};
}

std::vector<Tensor> fixture_boxes(const testing::FixtureCase& c, DType dtype) {
  std::vector<Tensor> boxes;
  for (int64_t i = 0; i < c.params().at("num_images").get<int64_t>(); ++i)
    boxes.push_back(c.tensor("boxes" + std::to_string(i), dtype));
  return boxes;
}

// A small problem for the gradient checks: two images of a 16 x 24 batch, grids 2 x 3 and 1 x 2, A = 3.
struct SmallProblem {
  std::vector<Tensor> teacher;
  Anchors anchors;
  std::vector<Tensor> boxes;
};

SmallProblem small_problem(int64_t teacher_channels) {
  AnchorGenerator generator(
      {.sizes = {{12.0}, {24.0}}, .aspect_ratios = {0.5, 1.0, 2.0}, .strides = {8, 16}});
  Generator gen(7);
  return {{uniform({2, teacher_channels, 2, 3}, -1, 1, gen, {DType::f64}),
           uniform({2, teacher_channels, 1, 2}, -1, 1, gen, {DType::f64})},
          generator.generate({{2, 3}, {1, 2}}, DType::f64),
          {boxes_of({{2, 3, 14, 13}}), boxes_of({{8.5, 1.25, 23, 15.5}, {0.5, 0.75, 6.5, 9.25}})}};
}

}  // namespace

TEST_CASE("fgfi mask: hand-made anchors, the strict psi boundary, unions, the best IoU over all levels") {
  for (DType dtype : {DType::f64, DType::f32}) {
    INFO(dtype_name(dtype));
    const Anchors anchors = hand_anchors(dtype);
    const std::vector<Tensor> boxes = hand_boxes(dtype);
    const Tensor mask = fgfi_imitation_mask(anchors, 2, boxes, 0.5);
    CHECK(mask.dtype() == dtype);
    CHECK(mask.shape() == Shape{4, 3});
    // Cells: level 0 cell 0, level 0 cell 1, level 1 cell 0. Cell 1's a0 sits exactly at psi M = 1/2: out.
    CHECK(mask.to_vector<double>() == std::vector<double>{1, 0, 0, 1, 0, 1, 0, 0, 1, 0, 0, 0});
    // Just below the boundary it is in; nothing else changes (0.25 and 0.16 stay below 0.49, 0.25 below
    // 0.49 * 0.64).
    CHECK(fgfi_imitation_mask(anchors, 2, boxes, 0.49).to_vector<double>() ==
          std::vector<double>{1, 1, 0, 1, 0, 1, 0, 0, 1, 0, 0, 0});
    // psi = 0 keeps every anchor that overlaps at all, and still nothing for the box that overlaps none.
    CHECK(fgfi_imitation_mask(anchors, 2, boxes, 0.0).to_vector<double>() ==
          std::vector<double>{1, 1, 0, 1, 1, 1, 1, 1, 1, 0, 0, 0});
  }
  // One image, one box: the mask of each image is its own.
  const Tensor one = fgfi_imitation_mask(hand_anchors(DType::f64), 2, {boxes_of({{40, 40, 48, 48}})}, 0.5);
  CHECK(one.to_vector<double>() == std::vector<double>{0, 0, 1});
  CHECK(fgfi_imitation_mask(hand_anchors(DType::f64), 2, {}, 0.5).shape() == Shape{0, 3});
}

TEST_CASE("fgfi mask: with the anchor generator, a box equal to one anchor marks its cell") {
  AnchorGenerator generator({.sizes = {{16.0}, {32.0}}, .aspect_ratios = {1.0}, .strides = {8, 16}});
  const Anchors anchors = generator.generate({{4, 4}, {2, 2}}, DType::f64);
  // The level-1 anchor of cell (1, 0) is (-16, 0, 16, 32); on level 0 the best overlap is 1/4 < 1/2.
  const Tensor mask = fgfi_imitation_mask(anchors, 1, {boxes_of({{-16, 0, 16, 32}})}, 0.5);
  std::vector<double> expected(16 + 4, 0.0);
  expected[16 + 2] = 1;
  CHECK(mask.to_vector<double>() == expected);
}

TEST_CASE("fgfi: matches the PyTorch reference for two psi values (mask, loss, gradients), f64 and f32") {
  testing::Fixture fixture("fgfi.json");
  const testing::FixtureCase c = fixture["fgfi"];
  const AnchorGenerator generator = fixture_generator(c);
  const std::vector<GridSize> grids{{4, 6}, {2, 3}};
  const Anchors anchors = generator.generate(grids, DType::f64);
  CHECK(parity_error(anchors.boxes, cat({c.tensor("anchors0"), c.tensor("anchors1")}, 0)) < 1e-12);
  const std::vector<Tensor> boxes = fixture_boxes(c, DType::f64);
  const std::vector<Tensor> teacher{c.tensor("teacher0"), c.tensor("teacher1")};

  for (double psi : c.params().at("psi").get<std::vector<double>>()) {
    std::string prefix = "psi" + std::to_string(psi);
    prefix.erase(prefix.find_last_not_of('0') + 1);  // "psi0.500000" -> "psi0.5"
    prefix += ".";
    INFO(prefix);
    const Tensor mask = fgfi_imitation_mask(anchors, generator.num_anchors_per_location(), boxes, psi);
    CHECK(mask.to_vector<double>() == c.tensor(prefix + "mask").to_vector<double>());

    Generator gen(3);
    FgfiDistiller fgfi(fixture_config(c, psi), gen);
    fgfi.to(DType::f64);
    load_fixture_weights(fgfi, c, DType::f64);
    std::vector<Tensor> student{c.tensor("student0").set_requires_grad(true),
                                c.tensor("student1").set_requires_grad(true)};
    const Tensor loss = fgfi.forward(student, teacher, anchors, boxes);
    CHECK(parity_error(loss, c.tensor(prefix + "loss")) < 1e-10);
    loss.backward();
    CHECK(parity_error(student[0].grad(), c.tensor(prefix + "grad_student0")) < 1e-10);
    CHECK(parity_error(student[1].grad(), c.tensor(prefix + "grad_student1")) < 1e-10);
    for (const auto& [name, p] : fgfi.named_parameters()) {
      INFO(name);
      CHECK(parity_error(p.grad(), c.tensor(prefix + "grad_" + name)) < 1e-10);
    }

    FgfiDistiller single(fixture_config(c, psi), gen);
    load_fixture_weights(single, c, DType::f32);
    const Tensor loss32 = single.forward({c.tensor("student0", DType::f32), c.tensor("student1", DType::f32)},
                                         {c.tensor("teacher0", DType::f32), c.tensor("teacher1", DType::f32)},
                                         generator.generate(grids, DType::f32), fixture_boxes(c, DType::f32));
    CHECK(loss32.dtype() == DType::f32);
    CHECK(parity_error(loss32.to(DType::f64), c.tensor(prefix + "loss")) < 1e-5);
  }
}

TEST_CASE("fgfi: parameters are one adapter per level, 3 x 3 by default") {
  Generator gen(1);
  FgfiDistiller fgfi({.student_channels = 3, .teacher_channels = 4, .num_levels = 2}, gen);
  const NamedTensors params = fgfi.named_parameters();
  REQUIRE(params.size() == 4);
  CHECK(params[0].first == "adapters.0.weight");
  CHECK(params[1].first == "adapters.0.bias");
  CHECK(params[2].first == "adapters.1.weight");
  CHECK(params[3].first == "adapters.1.bias");
  CHECK(params[0].second.shape() == Shape{4, 3, 3, 3});
  CHECK(params[3].second.shape() == Shape{4});
  FgfiDistiller pointwise(
      {.student_channels = 3, .teacher_channels = 4, .num_levels = 2, .adapter_kernel = 1}, gen);
  CHECK(pointwise.named_parameters()[0].second.shape() == Shape{4, 3, 1, 1});
  const FgfiConfig defaults;
  CHECK(defaults.psi == 0.5);
  CHECK(defaults.weight == 0.01);
  CHECK(defaults.adapter_kernel == 3);
}

TEST_CASE("fgfi: f64 gradient check w.r.t. the student maps and the adapters, 3 x 3 and 1 x 1") {
  for (int64_t kernel : {3, 1}) {
    INFO("adapter_kernel " << kernel);
    const SmallProblem p = small_problem(2);
    const Tensor mask = fgfi_imitation_mask(p.anchors, 3, p.boxes, 0.5);
    double selected = 0;
    for (double v : mask.to_vector<double>())
      selected += v;
    REQUIRE(selected > 0);  // some cells in the mask, some out: the check sees both
    REQUIRE(selected < static_cast<double>(mask.numel()));
    Generator gen(11);
    FgfiDistiller fgfi({.student_channels = 3,
                        .teacher_channels = 2,
                        .num_levels = 2,
                        .anchors_per_cell = 3,
                        .adapter_kernel = kernel,
                        .weight = 0.7},
                       gen);
    fgfi.to(DType::f64);
    CHECK_GRADCHECK(
        [&](const Inputs& x) {
          return fgfi.forward({x[0], x[1]}, p.teacher, p.anchors, p.boxes);
        },
        with_parameters({random_leaf({2, 3, 2, 3}, 12), random_leaf({2, 3, 1, 2}, 13)}, fgfi));
  }
}

TEST_CASE("fgfi: backward accumulates into .grad, and nothing reaches the teacher") {
  const SmallProblem p = small_problem(2);
  Generator gen(5);
  FgfiDistiller fgfi({.student_channels = 3, .teacher_channels = 2, .num_levels = 2, .anchors_per_cell = 3},
                     gen);
  fgfi.to(DType::f64);
  std::vector<Tensor> student{random_leaf({2, 3, 2, 3}, 21), random_leaf({2, 3, 1, 2}, 22)};
  std::vector<Tensor> teacher{p.teacher[0].clone().set_requires_grad(true),
                              p.teacher[1].clone().set_requires_grad(true)};
  fgfi.forward(student, teacher, p.anchors, p.boxes).backward();
  const std::vector<double> once = student[0].grad().to_vector<double>();
  const std::vector<double> weight_once = fgfi.named_parameters()[0].second.grad().to_vector<double>();
  CHECK(max_abs(student[0].grad()) > 0);
  fgfi.forward(student, teacher, p.anchors, p.boxes).backward();
  const std::vector<double> twice = student[0].grad().to_vector<double>();
  const std::vector<double> weight_twice = fgfi.named_parameters()[0].second.grad().to_vector<double>();
  for (std::size_t i = 0; i < once.size(); ++i)
    CHECK(twice[i] == doctest::Approx(2 * once[i]).epsilon(1e-12));
  for (std::size_t i = 0; i < weight_once.size(); ++i)
    CHECK(weight_twice[i] == doctest::Approx(2 * weight_once[i]).epsilon(1e-12));
  CHECK_FALSE(teacher[0].grad().defined());
  CHECK_FALSE(teacher[1].grad().defined());
}

TEST_CASE("fgfi: an empty mask (N_p = 0) gives a zero loss that backward still runs through") {
  const SmallProblem p = small_problem(2);
  Generator gen(6);
  FgfiDistiller fgfi({.student_channels = 3, .teacher_channels = 2, .num_levels = 2, .anchors_per_cell = 3},
                     gen);
  fgfi.to(DType::f64);
  std::vector<Tensor> student{random_leaf({2, 3, 2, 3}, 31), random_leaf({2, 3, 1, 2}, 32)};
  // No boxes in one image, a box that overlaps no anchor in the other.
  const std::vector<Tensor> boxes{zeros({0, 4}, {DType::f64}), boxes_of({{500, 500, 520, 530}})};
  const Tensor loss = fgfi.forward(student, p.teacher, p.anchors, boxes);
  CHECK(loss.item() == 0.0);
  CHECK(loss.requires_grad());
  loss.backward();
  REQUIRE(student[0].grad().defined());
  REQUIRE(student[1].grad().defined());
  CHECK(max_abs(student[0].grad()) == 0.0);
  CHECK(max_abs(student[1].grad()) == 0.0);
  for (const auto& [name, param] : fgfi.named_parameters()) {
    INFO(name);
    REQUIRE(param.grad().defined());
    CHECK(max_abs(param.grad()) == 0.0);
  }
}

TEST_CASE("fgfi: bad input is refused with errors that name the level, image or tensor") {
  const SmallProblem p = small_problem(2);
  Generator gen(8);
  FgfiDistiller fgfi({.student_channels = 3, .teacher_channels = 2, .num_levels = 2, .anchors_per_cell = 3},
                     gen);
  fgfi.to(DType::f64);
  const std::vector<Tensor> student{random_leaf({2, 3, 2, 3}, 41), random_leaf({2, 3, 1, 2}, 42)};
  using doctest::Contains;

  CHECK_THROWS_WITH_AS(fgfi.forward({student[0]}, p.teacher, p.anchors, p.boxes),
                       Contains("expected 2 levels"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(fgfi.forward(student, {p.teacher[0], p.teacher[0]}, p.anchors, p.boxes),
                       Contains("level 1: the teacher map"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(fgfi.forward(student, {p.teacher[0].to(DType::f32), p.teacher[1]}, p.anchors, p.boxes),
                       Contains("level 0: the teacher map must be f64"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(
      fgfi.forward({student[0], random_leaf({2, 4, 1, 2}, 43)}, p.teacher, p.anchors, p.boxes),
      Contains("level 1: the student map"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(
      fgfi.forward({student[0], random_leaf({1, 3, 1, 2}, 44)}, p.teacher, p.anchors, p.boxes),
      Contains("level 1: the student map"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(fgfi.forward({student[0], student[1].to(DType::f32)}, p.teacher, p.anchors, p.boxes),
                       Contains("level 1: the student map must be [B, 3, H, W] of dtype f64"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(fgfi.forward(student, p.teacher, p.anchors, {p.boxes[0]}),
                       Contains("boxes for 1 images, feature maps for 2"), std::invalid_argument);

  // Anchors for other grids, for the wrong number of levels, or in another dtype.
  AnchorGenerator generator(
      {.sizes = {{12.0}, {24.0}}, .aspect_ratios = {0.5, 1.0, 2.0}, .strides = {8, 16}});
  CHECK_THROWS_WITH_AS(
      fgfi.forward(student, p.teacher, generator.generate({{2, 3}, {2, 2}}, DType::f64), p.boxes),
      Contains("level 1: got 12 anchors"), std::invalid_argument);
  Anchors one_level{p.anchors.boxes, {p.anchors.num_per_level[0]}};
  CHECK_THROWS_WITH_AS(fgfi.forward(student, p.teacher, one_level, p.boxes), Contains("anchors for 2 levels"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(
      fgfi.forward(student, p.teacher, generator.generate({{2, 3}, {1, 2}}, DType::f32), p.boxes),
      Contains("anchors.boxes"), std::invalid_argument);
  Anchors short_boxes{p.anchors.boxes.narrow(0, 0, 20), p.anchors.num_per_level};
  CHECK_THROWS_WITH_AS(fgfi.forward(student, p.teacher, short_boxes, p.boxes), Contains("20 rows"),
                       std::invalid_argument);

  // Boxes of the wrong shape or dtype name their image.
  CHECK_THROWS_WITH_AS(fgfi.forward(student, p.teacher, p.anchors, {p.boxes[0], zeros({2, 3}, {DType::f64})}),
                       Contains("image 1"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(fgfi.forward(student, p.teacher, p.anchors, {p.boxes[0].to(DType::f32), p.boxes[1]}),
                       Contains("image 0"), std::invalid_argument);

  // The mask alone.
  CHECK_THROWS_WITH_AS(fgfi_imitation_mask(hand_anchors(DType::f64), 3, {}, 0.5), Contains("level 0"),
                       std::invalid_argument);
  CHECK_THROWS_AS(fgfi_imitation_mask(hand_anchors(DType::f64), 0, {}, 0.5), std::invalid_argument);
  CHECK_THROWS_WITH_AS(fgfi_imitation_mask(hand_anchors(DType::f64), 2, {}, 1.0), Contains("psi"),
                       std::invalid_argument);
  CHECK_THROWS_AS(fgfi_imitation_mask(hand_anchors(DType::f64), 2, {}, -0.1), std::invalid_argument);
  CHECK_THROWS_AS(fgfi_imitation_mask(hand_anchors(DType::f64), 2, {}, std::nan("")), std::invalid_argument);

  // Configurations that cannot work.
  CHECK_THROWS_AS(FgfiDistiller({.num_levels = 0}, gen), std::invalid_argument);
  CHECK_THROWS_AS(FgfiDistiller({.anchors_per_cell = 0}, gen), std::invalid_argument);
  CHECK_THROWS_WITH_AS(FgfiDistiller({.adapter_kernel = 2}, gen), Contains("adapter_kernel"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(FgfiDistiller({.psi = 1.0}, gen), Contains("psi"), std::invalid_argument);
  CHECK_THROWS_AS(FgfiDistiller({.weight = std::nan("")}, gen), std::invalid_argument);
}
