// RetinaNet's detection pieces: anchors, box coding and IoU, the matcher, NMS, the loss and the
// postprocessing. Hand-computed cases, parity with torchvision 0.14 and with detectron2's formulas
// (tests/fixtures/retinanet_parts.json from tools/make_retinanet_fixtures.py) in f64 (1e-10) and f32
// (1e-5), exact for indices, labels and kept sets; f64 gradient checks of the loss with respect to the
// head outputs under both normalisations; and errors for bad input.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "engine/autograd.h"
#include "engine/factory.h"
#include "engine/kernels/box_math.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/shape.h"
#include "fixture.h"
#include "gradcheck.h"
#include "models/anchor_generator.h"
#include "models/box_coder.h"
#include "models/matcher.h"
#include "models/nms.h"
#include "models/retinanet_loss.h"
#include "models/retinanet_postprocess.h"

using namespace icd;
using icd::testing::f64;
using icd::testing::max_relative_error;
using Inputs = std::vector<Tensor>;

namespace {

constexpr DType kFloatTypes[] = {DType::f64, DType::f32};

double tolerance(DType dtype) {
  return dtype == DType::f64 ? 1e-10 : 1e-5;
}

Tensor i64(std::vector<int64_t> v) {
  const int64_t n = static_cast<int64_t>(v.size());
  return from_vector(v, {n});
}
std::vector<int64_t> ints(const Tensor& t) {
  return t.to_vector<int64_t>();
}
std::vector<double> values(const Tensor& t) {
  return t.to_vector<double>();
}

const testing::Fixture& fixture() {
  static const testing::Fixture f("retinanet_parts.json");
  return f;
}

std::vector<GridSize> grids_of(const testing::FixtureCase& c) {
  std::vector<GridSize> grids;
  for (const auto& g : c.params().at("grids"))
    grids.push_back({g.at(0).get<int64_t>(), g.at(1).get<int64_t>()});
  return grids;
}

}  // namespace

// ------------------------------------------------------------------------------------------- anchors

TEST_CASE("anchors: detectron2 defaults by hand") {
  AnchorGenerator gen;
  REQUIRE(gen.num_levels() == 5);
  REQUIRE(gen.num_anchors_per_location() == 9);
  // level 0, a = size_idx * 3 + ratio_idx: a = 1 is size 32, ratio 1; a = 0 is size 32, ratio 0.5.
  const auto& cells = gen.cell_anchors(0);
  CHECK(cells[1] == std::array<double, 4>{-16, -16, 16, 16});
  const double w = std::sqrt(32.0 * 32.0 / 0.5), h = 0.5 * w;
  CHECK(cells[0][0] == doctest::Approx(-w / 2));
  CHECK(cells[0][1] == doctest::Approx(-h / 2));
  CHECK(cells[4][2] == doctest::Approx(16 * std::pow(2.0, 1.0 / 3.0)));  // size 32 * 2^(1/3), ratio 1

  const Anchors anchors = gen.generate({{2, 3}, {1, 2}, {1, 1}, {1, 1}, {1, 1}}, DType::f64);
  CHECK(anchors.num_per_level == std::vector<int64_t>{54, 18, 9, 9, 9});
  REQUIRE(anchors.boxes.shape() == Shape{99, 4});
  // Cell (y = 1, x = 2) of P3 (stride 8, offset 0) is centred at (16, 8): its a = 1 box is (0, -8, 32, 24).
  const std::vector<double> row = values(anchors.boxes.select(0, (1 * 3 + 2) * 9 + 1));
  CHECK(row == std::vector<double>{0, -8, 32, 24});
  // The first P4 anchor (cell (0, 0), stride 16) is P4's a = 0 cell anchor.
  const std::vector<double> p4 = values(anchors.boxes.select(0, 54));
  for (int j = 0; j < 4; ++j)
    CHECK(p4[j] == doctest::Approx(gen.cell_anchors(1)[0][j]));

  // From feature maps: their grids, their dtype.
  const std::vector<Tensor> features = {zeros({2, 4, 2, 3}), zeros({2, 4, 1, 2}), zeros({2, 4, 1, 1}),
                                        zeros({2, 4, 1, 1}), zeros({2, 4, 1, 1})};
  const Anchors from_features = gen.generate(features);
  CHECK(from_features.boxes.dtype() == DType::f32);
  CHECK(max_relative_error(from_features.boxes, anchors.boxes) < 1e-6);
}

TEST_CASE("anchors: torchvision sizes are integers and its cell anchors are rounded half to even") {
  const AnchorGeneratorConfig config = torchvision_anchor_config();
  CHECK(config.sizes[0] == std::vector<double>{32, 40, 50});
  CHECK(config.sizes[1] == std::vector<double>{64, 80, 101});
  CHECK(config.sizes[4] == std::vector<double>{512, 645, 812});
  const AnchorGenerator gen(config);
  // Ratio-major order: a = ratio_idx * 3 + size_idx. Size 101, ratio 1 (a = 5): +-50.5 rounds to +-50
  // (half to even), not 51.
  CHECK(gen.cell_anchors(1)[5] == std::array<double, 4>{-50, -50, 50, 50});
  CHECK(gen.cell_anchors(0)[4] == std::array<double, 4>{-20, -20, 20, 20});  // ratio 1, size 40
  CHECK(gen.cell_anchors(0)[0] == std::array<double, 4>{-23, -11, 23, 11});  // ratio 0.5, size 32
}

TEST_CASE("anchors match torchvision's AnchorGenerator and detectron2's formulas (fixture)") {
  for (const std::string name : {"anchors_torchvision", "anchors_detectron2", "anchors_detectron2_offset"}) {
    const testing::FixtureCase c = fixture()[name];
    AnchorGeneratorConfig config =
        name == "anchors_torchvision" ? torchvision_anchor_config() : AnchorGeneratorConfig{};
    if (c.params().contains("offset")) config.offset = c.params().at("offset").get<double>();
    const AnchorGenerator gen(config);
    for (DType dtype : kFloatTypes) {
      INFO(name << " " << dtype_name(dtype));
      const Anchors anchors = gen.generate(grids_of(c), dtype);
      CHECK(anchors.boxes.dtype() == dtype);
      CHECK(max_relative_error(anchors.boxes, c.tensor("anchors")) < tolerance(dtype));
    }
    if (c.has_tensor("cell_anchors")) {
      std::vector<double> cells;
      for (int64_t level = 0; level < gen.num_levels(); ++level)
        for (const auto& box : gen.cell_anchors(level))
          cells.insert(cells.end(), box.begin(), box.end());
      CHECK(cells == values(c.tensor("cell_anchors")));
    }
  }
}

TEST_CASE("anchors: bad configs and grids are rejected") {
  AnchorGeneratorConfig config;
  config.strides = {8, 16};
  CHECK_THROWS_AS(AnchorGenerator{config}, std::invalid_argument);  // 5 size levels, 2 strides
  config = {};
  config.sizes[2] = {128};
  CHECK_THROWS_AS(AnchorGenerator{config}, std::invalid_argument);  // A differs between levels
  config = {};
  config.aspect_ratios = {0.5, -1.0};
  CHECK_THROWS_AS(AnchorGenerator{config}, std::invalid_argument);
  config = {};
  config.offset = 1.0;
  CHECK_THROWS_AS(AnchorGenerator{config}, std::invalid_argument);
  config = {};
  config.strides[0] = 0;
  CHECK_THROWS_AS(AnchorGenerator{config}, std::invalid_argument);

  const AnchorGenerator gen;
  CHECK_THROWS_AS(gen.generate(std::vector<GridSize>{{2, 2}}), std::invalid_argument);  // 1 grid, 5 levels
  CHECK_THROWS_AS(gen.generate({{2, 2}, {1, 1}, {1, 1}, {0, 1}, {1, 1}}), std::invalid_argument);
  CHECK_THROWS_AS(gen.generate({{2, 2}, {1, 1}, {1, 1}, {1, 1}, {1, 1}}, DType::i64), std::invalid_argument);
  CHECK_THROWS_AS(gen.generate(std::vector<Tensor>{zeros({4, 2, 2})}), std::invalid_argument);
  CHECK_THROWS_AS(gen.cell_anchors(5), std::out_of_range);
}

// ------------------------------------------------------------------------------------ box coder, IoU

TEST_CASE("box coder: hand-computed encode, decode, clamp and round trip") {
  const BoxCoder coder;
  const Tensor anchor = f64({0, 0, 10, 20}, {1, 4});
  // Box centred 5 px right and 5 px down, twice as wide, same height.
  const Tensor box = f64({-5, 5, 15, 25}, {1, 4});
  const std::vector<double> d = values(coder.encode(anchor, box));
  CHECK(d[0] == doctest::Approx(0.0));
  CHECK(d[1] == doctest::Approx(0.25));
  CHECK(d[2] == doctest::Approx(std::log(2.0)));
  CHECK(d[3] == doctest::Approx(0.0));
  CHECK(max_relative_error(coder.decode(coder.encode(anchor, box), anchor), box) < 1e-14);

  // dw = 100 is clamped to ln(1000/16): the box is 62.5 times the anchor's width, no overflow.
  const std::vector<double> wide = values(coder.decode(f64({0, 0, 100, 0}, {1, 4}), anchor));
  CHECK(wide[2] - wide[0] == doctest::Approx(625.0));
  CHECK(wide[3] - wide[1] == doctest::Approx(20.0));
}

TEST_CASE("box coder matches torchvision's BoxCoder, with and without weights (fixture)") {
  for (const std::string name : {"box_coder", "box_coder_weighted"}) {
    const testing::FixtureCase c = fixture()[name];
    BoxCoderConfig config;
    const auto w = c.params().at("weights").get<std::vector<double>>();
    config.weights = {w[0], w[1], w[2], w[3]};
    const BoxCoder coder(config);
    for (DType dtype : kFloatTypes) {
      INFO(name << " " << dtype_name(dtype));
      const Tensor anchors = c.tensor("anchors", dtype);
      CHECK(max_relative_error(coder.encode(anchors, c.tensor("boxes", dtype)), c.tensor("encoded")) <
            tolerance(dtype));
      CHECK(max_relative_error(coder.decode(c.tensor("deltas", dtype), anchors), c.tensor("decoded")) <
            tolerance(dtype));
    }
  }
}

TEST_CASE("pairwise IoU: by hand, empty boxes, and torchvision's box_iou (fixture)") {
  const Tensor a = f64({0, 0, 10, 10, 5, 5, 5, 9}, {2, 4});  // the second box is empty (zero width)
  const Tensor b = f64({5, 0, 15, 10, 5, 5, 5, 9, 20, 20, 30, 30}, {3, 4});
  const std::vector<double> iou = values(pairwise_iou(a, b));
  CHECK(iou[0] == doctest::Approx(50.0 / 150.0));
  CHECK(iou[1] == 0.0);  // no overlap with an empty box
  CHECK(iou[2] == 0.0);
  CHECK(iou[4] == 0.0);  // empty with empty: 0, not 0/0
  CHECK(pairwise_iou(a, zeros({0, 4}, {DType::f64})).shape() == Shape{2, 0});

  const testing::FixtureCase c = fixture()["pairwise_iou"];
  for (DType dtype : kFloatTypes)
    CHECK(max_relative_error(pairwise_iou(c.tensor("a", dtype), c.tensor("b", dtype)), c.tensor("iou")) <
          tolerance(dtype));
}

TEST_CASE("box coder and IoU reject bad shapes and tensors that require grad") {
  const BoxCoder coder;
  const Tensor boxes = zeros({3, 4}, {DType::f64});
  CHECK_THROWS_AS(coder.encode(zeros({3, 5}, {DType::f64}), boxes), std::invalid_argument);
  CHECK_THROWS_AS(coder.encode(zeros({2, 4}, {DType::f64}), boxes), std::invalid_argument);
  CHECK_THROWS_AS(coder.decode(zeros({3, 4}, {DType::f32}), boxes), std::invalid_argument);  // dtypes differ
  CHECK_THROWS_AS(coder.decode(zeros({12}, {DType::f64}), boxes), std::invalid_argument);
  CHECK_THROWS_AS(pairwise_iou(zeros({3}, {DType::f64}), boxes), std::invalid_argument);
  CHECK_THROWS_AS(BoxCoder(BoxCoderConfig{{1, 1, 0, 1}}), std::invalid_argument);

  Tensor deltas = zeros({3, 4}, {DType::f64});
  deltas.set_requires_grad(true);
  CHECK_THROWS_AS(coder.decode(deltas, boxes), std::invalid_argument);
  NoGradGuard no_grad;
  CHECK_FALSE(coder.decode(deltas, boxes).requires_grad());
}

// -------------------------------------------------------------------------------------------- matcher

TEST_CASE("matcher: thresholds, ties and low-quality matches by hand") {
  // 3 boxes x 5 anchors. Anchor 0: 0.39 background; 1: 0.4 ignored; 2: 0.5 foreground (box 0, the
  // first of the tied maxima); 3: box 2's best (0.2), forced foreground but matched to box 1 (0.3);
  // 4: best 0.3 (box 1, whose own best is anchor 2), background.
  const Tensor iou = f64({0.39, 0.4, 0.5, 0.0, 0.0,  //
                          0.0, 0.1, 0.5, 0.3, 0.3,   //
                          0.0, 0.0, 0.0, 0.2, 0.1},
                         {3, 5});
  const MatchResult m = match_anchors(iou);
  CHECK(ints(m.labels) == std::vector<int64_t>{0, -1, 1, 1, 0});
  CHECK(ints(m.matched) == std::vector<int64_t>{0, 0, 0, 1, 1});
  CHECK(ints(torchvision_matches(m)) == std::vector<int64_t>{-1, -2, 0, 1, -1});

  MatcherConfig strict;
  strict.allow_low_quality_matches = false;
  CHECK(ints(match_anchors(iou, strict).labels) == std::vector<int64_t>{0, -1, 1, 0, 0});

  const MatchResult none = match_anchors(zeros({0, 4}, {DType::f64}));  // no boxes: all background
  CHECK(ints(none.labels) == std::vector<int64_t>{0, 0, 0, 0});
  CHECK(ints(none.matched) == std::vector<int64_t>{0, 0, 0, 0});
  CHECK(match_anchors(zeros({2, 0}, {DType::f64})).labels.numel() == 0);  // no anchors
  CHECK(ints(torchvision_matches(none)) == std::vector<int64_t>{-1, -1, -1, -1});
}

TEST_CASE("matcher matches torchvision's Matcher: ties, low quality, the zero-row quirk (fixture)") {
  for (const std::string name :
       {"matcher_random", "matcher_ties", "matcher_ties_no_low_quality", "matcher_zero_row"}) {
    const testing::FixtureCase c = fixture()[name];
    MatcherConfig config;
    config.allow_low_quality_matches = c.params().at("allow_low_quality_matches").get<bool>();
    for (DType dtype : kFloatTypes) {
      INFO(name << " " << dtype_name(dtype));
      const MatchResult m = match_anchors(c.tensor("iou", dtype), config);
      CHECK(ints(torchvision_matches(m)) == ints(c.tensor("matches", DType::i64)));
    }
    if (c.has_tensor("gt_boxes")) {  // the IoU matrix itself, from the boxes
      const Tensor iou = pairwise_iou(c.tensor("gt_boxes"), c.tensor("anchors"));
      CHECK(max_relative_error(iou, c.tensor("iou")) < 1e-10);
    }
  }
}

TEST_CASE("select_anchors: the kept and foreground lists, classes and boxes of a match") {
  MatchResult m{i64({0, 1, 1, 0, 2, 1}), i64({1, -1, 1, 0, 1, 1})};  // anchors 1: ignored, 3: background
  const Tensor box_classes = i64({7, 3, 5});
  for (DType dtype : kFloatTypes) {
    const AnchorSelection s = select_anchors(m, box_classes, dtype);
    CHECK(ints(s.kept) == std::vector<int64_t>{0, 2, 3, 4, 5});
    CHECK(s.kept_classes.dtype() == dtype);
    CHECK(values(s.kept_classes) == std::vector<double>{7, 3, -1, 5, 3});
    CHECK(ints(s.foreground) == std::vector<int64_t>{0, 2, 4, 5});
    CHECK(ints(s.foreground_boxes) == std::vector<int64_t>{0, 1, 2, 1});
  }
  const AnchorSelection none = select_anchors(MatchResult{i64({0, 0}), i64({0, -1})}, i64({}), DType::f32);
  CHECK(ints(none.kept) == std::vector<int64_t>{0});
  CHECK(values(none.kept_classes) == std::vector<double>{-1});
  CHECK(none.foreground.numel() == 0);
  CHECK(none.foreground_boxes.numel() == 0);

  CHECK_THROWS_AS(select_anchors(m, box_classes, DType::i64), std::invalid_argument);
  CHECK_THROWS_AS(select_anchors(m, zeros({3}, {DType::f64}), DType::f64), std::invalid_argument);
  CHECK_THROWS_AS(select_anchors(MatchResult{i64({0}), i64({0, 1})}, box_classes, DType::f64),
                  std::invalid_argument);
  CHECK_THROWS_AS(select_anchors(MatchResult{i64({3}), i64({1})}, box_classes, DType::f64),
                  std::out_of_range);
}

TEST_CASE("matcher rejects bad input") {
  CHECK_THROWS_AS(match_anchors(zeros({4}, {DType::f64})), std::invalid_argument);
  CHECK_THROWS_AS(match_anchors(f64({0.5, -0.1}, {1, 2})), std::invalid_argument);
  CHECK_THROWS_AS(match_anchors(f64({0.5, std::nan("")}, {1, 2})), std::invalid_argument);
  CHECK_THROWS_AS(match_anchors(zeros({2, 3}, {DType::i64})), std::invalid_argument);
  MatcherConfig inverted;
  inverted.background_below = 0.6;
  CHECK_THROWS_AS(match_anchors(f64({0.5}, {1, 1}), inverted), std::invalid_argument);
  CHECK_THROWS_AS(torchvision_matches(MatchResult{}), std::invalid_argument);
}

// ------------------------------------------------------------------------------------------------ NMS

TEST_CASE("NMS: by hand, strict threshold, ties and class awareness") {
  const Tensor boxes = f64({0, 0, 10, 10,   // 0
                            0, 0, 10, 5,    // 1: IoU exactly 0.5 with 0: kept
                            0, 0, 10, 10,   // 2: copy of 0 with the same score: 0 (lower index) wins
                            1, 0, 11, 10},  // 3: IoU 9/11 with 0, but another class
                           {4, 4});
  const Tensor scores = f64({0.9, 0.95, 0.9, 0.5}, {4});
  CHECK(ints(nms(boxes, scores, 0.5)) == std::vector<int64_t>{1, 0});
  CHECK(ints(batched_nms(boxes, scores, i64({0, 0, 0, 1}), 0.5)) == std::vector<int64_t>{1, 0, 3});
  CHECK(ints(nms(boxes, scores, 0.49)) == std::vector<int64_t>{1, 3});  // IoU(1, 3) = 45/105
  CHECK(nms(zeros({0, 4}, {DType::f64}), zeros({0}, {DType::f64}), 0.5).numel() == 0);
}

TEST_CASE("NMS matches torchvision's nms and batched_nms, with tied scores (fixture)") {
  for (const std::string name : {"nms_ties", "nms_random", "nms_random_0.3"}) {
    const testing::FixtureCase c = fixture()[name];
    const double threshold = c.params().at("iou_threshold").get<double>();
    for (DType dtype : kFloatTypes) {
      INFO(name << " " << dtype_name(dtype));
      const Tensor boxes = c.tensor("boxes", dtype), scores = c.tensor("scores", dtype);
      CHECK(ints(batched_nms(boxes, scores, c.tensor("classes", DType::i64), threshold)) ==
            ints(c.tensor("keep", DType::i64)));
      CHECK(ints(nms(boxes, scores, threshold)) == ints(c.tensor("keep_single_class", DType::i64)));
    }
  }
}

namespace {

// NMS the way the GPU does it, with its kernel bodies run on the CPU: sort by score (stable), build the
// suppression mask word by word (kernels::nms_mask_word), walk it (kernels::nms_keep_from_mask).
std::vector<int64_t> nms_by_mask(const Tensor& boxes, const Tensor& scores,
                                 const std::vector<int64_t>& classes, double iou_threshold) {
  const std::vector<double> b = values(boxes), s = values(scores);
  const int64_t n = static_cast<int64_t>(s.size());
  std::vector<int64_t> order(n);
  for (int64_t i = 0; i < n; ++i)
    order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](int64_t i, int64_t j) { return s[i] > s[j]; });
  std::vector<double> sorted_boxes, areas;
  std::vector<int64_t> sorted_classes;
  for (int64_t i : order) {
    sorted_boxes.insert(sorted_boxes.end(), b.begin() + 4 * i, b.begin() + 4 * i + 4);
    areas.push_back(kernels::box_area(b.data() + 4 * i));
    sorted_classes.push_back(classes[i]);
  }
  const int64_t words = kernels::nms_mask_words(n);
  std::vector<uint64_t> mask(n * words), removed(words);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t w = 0; w < words; ++w)
      mask[i * words + w] = kernels::nms_mask_word(sorted_boxes.data(), areas.data(), sorted_classes.data(),
                                                   n, i, w, iou_threshold);
  std::vector<int64_t> positions(n);
  positions.resize(kernels::nms_keep_from_mask(mask.data(), n, removed.data(), positions.data()));
  std::vector<int64_t> keep;
  for (int64_t p : positions)
    keep.push_back(order[p]);
  return keep;
}

}  // namespace

TEST_CASE("NMS through a suppression mask (the GPU's kernel bodies) keeps what greedy NMS keeps") {
  for (const std::string name : {"nms_ties", "nms_random", "nms_random_0.3"}) {
    const testing::FixtureCase c = fixture()[name];
    const double threshold = c.params().at("iou_threshold").get<double>();
    const Tensor boxes = c.tensor("boxes", DType::f64), scores = c.tensor("scores", DType::f64);
    const std::vector<int64_t> classes = ints(c.tensor("classes", DType::i64));
    INFO(name);
    CHECK(nms_by_mask(boxes, scores, classes, threshold) == ints(c.tensor("keep", DType::i64)));
    CHECK(nms_by_mask(boxes, scores, std::vector<int64_t>(classes.size(), 0), threshold) ==
          ints(c.tensor("keep_single_class", DType::i64)));
  }
  // 200 boxes (four mask words, the last one partial) in three classes, crowded enough that boxes are
  // suppressed across word boundaries; scores repeat, so ties decide too.
  std::vector<double> b, s;
  std::vector<int64_t> classes;
  for (int64_t i = 0; i < 200; ++i) {
    const double x = (i * 37) % 12, y = (i * 11) % 10, w = 10 + (i * 7) % 13, h = 10 + (i * 5) % 11;
    b.insert(b.end(), {x, y, x + w, y + h});
    s.push_back(static_cast<double>((i * 29) % 23));
    classes.push_back(i % 3);
  }
  const Tensor boxes = f64(b, {200, 4}), scores = f64(s, {200});
  for (double threshold : {0.3, 0.5, 0.7}) {
    INFO("threshold " << threshold);
    const std::vector<int64_t> kept = ints(batched_nms(boxes, scores, i64(classes), threshold));
    CHECK(kept.size() < 150);
    CHECK(*std::max_element(kept.begin(), kept.end()) >= 128);  // kept boxes beyond the first two words
    CHECK(nms_by_mask(boxes, scores, classes, threshold) == kept);
    CHECK(nms_by_mask(boxes, scores, std::vector<int64_t>(200, 0), threshold) ==
          ints(nms(boxes, scores, threshold)));
  }
}

TEST_CASE("NMS rejects bad input") {
  const Tensor boxes = zeros({3, 4}, {DType::f64}), scores = zeros({3}, {DType::f64});
  CHECK_THROWS_AS(nms(zeros({3, 5}, {DType::f64}), scores, 0.5), std::invalid_argument);
  CHECK_THROWS_AS(nms(boxes, zeros({2}, {DType::f64}), 0.5), std::invalid_argument);
  CHECK_THROWS_AS(nms(boxes, zeros({3}, {DType::f32}), 0.5), std::invalid_argument);
  CHECK_THROWS_AS(nms(boxes, f64({0.1, std::nan(""), 0.2}, {3}), 0.5), std::invalid_argument);
  CHECK_THROWS_AS(batched_nms(boxes, scores, zeros({3}, {DType::f64}), 0.5), std::invalid_argument);
  CHECK_THROWS_AS(batched_nms(boxes, scores, i64({0, 1}), 0.5), std::invalid_argument);
}

// ----------------------------------------------------------------------------------------------- loss

namespace {

struct LossInputs {
  Tensor anchors, cls_logits, bbox_deltas;
  std::vector<TargetBoxes> targets;
};

LossInputs fixture_loss_inputs(DType dtype) {
  const testing::FixtureCase c = fixture()["loss_inputs"];
  LossInputs in{
      c.tensor("anchors", dtype), c.tensor("cls_logits", dtype), c.tensor("bbox_deltas", dtype), {}};
  for (int64_t i = 0; i < c.params().at("num_images").get<int64_t>(); ++i)
    in.targets.push_back(
        {c.tensor("boxes_" + std::to_string(i), dtype), c.tensor("labels_" + std::to_string(i), DType::i64)});
  in.cls_logits.set_requires_grad(true);
  in.bbox_deltas.set_requires_grad(true);
  return in;
}

RetinaNetLossConfig config_with(LossNormalization normalization) {
  RetinaNetLossConfig config;
  config.normalization = normalization;
  return config;
}

}  // namespace

TEST_CASE("loss matches torchvision's compute_loss and detectron2's EMA-normalised loss (fixture)") {
  for (const std::string name : {"loss_torchvision", "loss_detectron2"}) {
    const testing::FixtureCase c = fixture()[name];
    const double cls_weight = c.params().at("cls_weight").get<double>();
    const double box_weight = c.params().at("box_weight").get<double>();
    const bool torchvision = name == "loss_torchvision";
    for (DType dtype : kFloatTypes) {
      INFO(name << " " << dtype_name(dtype));
      const LossInputs in = fixture_loss_inputs(dtype);
      RetinaNetLoss loss(
          config_with(torchvision ? LossNormalization::per_image : LossNormalization::foreground_ema));
      const RetinaNetLosses out = loss(in.cls_logits, in.bbox_deltas, in.anchors, in.targets);
      CHECK(out.classification.dim() == 0);
      CHECK(max_relative_error(out.classification, c.tensor("classification")) < tolerance(dtype));
      CHECK(max_relative_error(out.box_regression, c.tensor("box_regression")) < tolerance(dtype));
      add(mul(out.classification, cls_weight), mul(out.box_regression, box_weight)).backward();
      CHECK(max_relative_error(in.cls_logits.grad(), c.tensor("grad_cls_logits")) < tolerance(dtype));
      CHECK(max_relative_error(in.bbox_deltas.grad(), c.tensor("grad_bbox_deltas")) < tolerance(dtype));
      if (!torchvision) {
        CHECK(out.num_foreground == c.params().at("num_foreground").get<int64_t>());
        CHECK(out.normalizer == doctest::Approx(c.params().at("normalizer").get<double>()).epsilon(1e-15));
        CHECK(loss.normalizer() == out.normalizer);
      }
    }
  }
  // The per-image matching inside the loss is torchvision's (-1 background, -2 ignored).
  const testing::FixtureCase c = fixture()["loss_torchvision"];
  const LossInputs in = fixture_loss_inputs(DType::f64);
  const Tensor expected = c.tensor("matches", DType::i64);
  for (std::size_t i = 0; i < in.targets.size(); ++i) {
    const MatchResult m = match_anchors(pairwise_iou(in.targets[i].boxes, in.anchors));
    CHECK(ints(torchvision_matches(m)) == ints(expected.select(0, static_cast<int64_t>(i))));
  }
}

TEST_CASE("loss: the EMA normaliser advances once per call and can be restored") {
  const LossInputs in = fixture_loss_inputs(DType::f64);
  RetinaNetLoss loss;
  CHECK(loss.normalizer() == 100.0);
  const RetinaNetLosses first = loss(in.cls_logits, in.bbox_deltas, in.anchors, in.targets);
  const double f = static_cast<double>(first.num_foreground);
  CHECK(first.normalizer == doctest::Approx(0.9 * 100.0 + 0.1 * f).epsilon(1e-15));
  const RetinaNetLosses second = loss(in.cls_logits, in.bbox_deltas, in.anchors, in.targets);
  CHECK(second.normalizer == doctest::Approx(0.9 * (0.9 * 100.0 + 0.1 * f) + 0.1 * f).epsilon(1e-15));
  // Same sums, a different divisor.
  CHECK(second.classification.item() * second.normalizer ==
        doctest::Approx(first.classification.item() * first.normalizer).epsilon(1e-13));

  loss.set_normalizer(100.0);  // as after a resume from a checkpoint taken at the start
  CHECK(loss(in.cls_logits, in.bbox_deltas, in.anchors, in.targets).classification.item() ==
        doctest::Approx(first.classification.item()).epsilon(1e-15));
  CHECK_THROWS_AS(loss.set_normalizer(0.0), std::invalid_argument);

  // No boxes anywhere: every anchor is background, max(#fg, 1) = 1 enters the EMA, box loss 0.
  std::vector<TargetBoxes> empty_targets(3,
                                         TargetBoxes{zeros({0, 4}, {DType::f64}), zeros({0}, {DType::i64})});
  RetinaNetLoss fresh;
  const RetinaNetLosses none = fresh(in.cls_logits, in.bbox_deltas, in.anchors, empty_targets);
  CHECK(none.num_foreground == 0);
  CHECK(none.normalizer == doctest::Approx(90.1));
  CHECK(none.box_regression.item() == 0.0);
  CHECK(none.classification.item() > 0.0);
}

TEST_CASE("loss: gradients reach kept anchors only (ignored: none; background: no box gradient)") {
  const LossInputs in = fixture_loss_inputs(DType::f64);
  RetinaNetLoss loss;
  const RetinaNetLosses out = loss(in.cls_logits, in.bbox_deltas, in.anchors, in.targets);
  add(out.classification, out.box_regression).backward();
  const int64_t k = in.cls_logits.size(2);
  const std::vector<double> cls_grad = values(in.cls_logits.grad()), box_grad = values(in.bbox_deltas.grad());
  int64_t ignored = 0, background = 0;
  for (std::size_t i = 0; i < in.targets.size(); ++i) {
    const std::vector<int64_t> labels =
        ints(match_anchors(pairwise_iou(in.targets[i].boxes, in.anchors)).labels);
    for (std::size_t r = 0; r < labels.size(); ++r) {
      const std::size_t row = i * labels.size() + r;
      double cls_abs = 0, box_abs = 0;
      for (int64_t j = 0; j < k; ++j)
        cls_abs += std::abs(cls_grad[row * k + j]);
      for (int j = 0; j < 4; ++j)
        box_abs += std::abs(box_grad[row * 4 + j]);
      if (labels[r] == kIgnoredAnchor) {
        ++ignored;
        CHECK(cls_abs == 0.0);
      } else {
        CHECK(cls_abs > 0.0);
      }
      if (labels[r] != kForegroundAnchor) {
        background += labels[r] == kBackgroundAnchor;
        CHECK(box_abs == 0.0);
      } else {
        CHECK(box_abs > 0.0);
      }
    }
  }
  CHECK(ignored > 0);
  CHECK(background > 0);
}

TEST_CASE("gradcheck: focal + box loss w.r.t. the head outputs, both normalisations, non-contiguous") {
  // 2 x 2 cells of stride 8, one size (16) and three ratios: 12 anchors; 3 classes.
  AnchorGeneratorConfig anchor_config;
  anchor_config.sizes = {{16.0}};
  anchor_config.strides = {8};
  const Tensor anchors = AnchorGenerator(anchor_config).generate({{2, 2}}, DType::f64).boxes;
  const std::vector<TargetBoxes> targets = {
      {f64({0, 0, 16, 14, 2, -4, 14, 6}, {2, 4}), i64({2, 0})},
      {zeros({0, 4}, {DType::f64}), zeros({0}, {DType::i64})},
  };
  const MatchResult m = match_anchors(pairwise_iou(targets[0].boxes, anchors));
  const std::vector<int64_t> labels = ints(m.labels);
  REQUIRE(std::count(labels.begin(), labels.end(), kForegroundAnchor) > 0);
  REQUIRE(std::count(labels.begin(), labels.end(), kIgnoredAnchor) > 0);

  // Logits as a transposed view of [N, K, R]; deltas as a slice of a wider tensor.
  const Tensor cls_leaf = testing::random_leaf({2, 3, 12}, 11, -2.0, 2.0);
  const Tensor wide_deltas = testing::random_leaf({2, 12, 6}, 12, -0.5, 0.5);
  for (LossNormalization normalization : {LossNormalization::foreground_ema, LossNormalization::per_image}) {
    RetinaNetLoss loss(config_with(normalization));
    auto f = [&](const Inputs& x) {
      loss.set_normalizer(100.0);  // every evaluation from the same EMA state
      const RetinaNetLosses out = loss(x[0].transpose(1, 2), x[1].narrow(2, 1, 4), anchors, targets);
      return stack({out.classification, out.box_regression});
    };
    CHECK_GRADCHECK(f, {cls_leaf, wide_deltas});
  }
}

TEST_CASE("loss rejects bad input with clear errors") {
  const LossInputs in = fixture_loss_inputs(DType::f64);
  RetinaNetLoss loss;
  const Tensor& cls = in.cls_logits;
  const Tensor& deltas = in.bbox_deltas;
  CHECK_THROWS_AS(loss(cls.select(0, 0), deltas, in.anchors, in.targets), std::invalid_argument);
  CHECK_THROWS_AS(loss(cls, deltas.narrow(2, 0, 3), in.anchors, in.targets), std::invalid_argument);
  CHECK_THROWS_AS(loss(cls, deltas, in.anchors.narrow(0, 0, 10), in.targets), std::invalid_argument);
  CHECK_THROWS_AS(loss(cls, deltas, in.anchors.to(DType::f32), in.targets), std::invalid_argument);
  CHECK_THROWS_AS(loss(cls, deltas, in.anchors, {in.targets[0]}), std::invalid_argument);
  std::vector<TargetBoxes> bad = in.targets;
  bad[0].labels = i64({0, 3, 1});  // K = 3: class 3 does not exist
  CHECK_THROWS_AS(loss(cls, deltas, in.anchors, bad), std::out_of_range);
  bad = in.targets;
  bad[1].labels = f64({1}, {1});
  CHECK_THROWS_AS(loss(cls, deltas, in.anchors, bad), std::invalid_argument);
  bad = in.targets;
  bad[1].boxes = in.targets[1].boxes.to(DType::f32);
  CHECK_THROWS_AS(loss(cls, deltas, in.anchors, bad), std::invalid_argument);
  bad = in.targets;
  bad[0].labels = i64({0, 1});  // 3 boxes, 2 labels
  CHECK_THROWS_AS(loss(cls, deltas, in.anchors, bad), std::invalid_argument);
  RetinaNetLossConfig config;
  config.normalizer_momentum = 1.0;
  CHECK_THROWS_AS(RetinaNetLoss{config}, std::invalid_argument);
  CHECK(loss.normalizer() == 100.0);  // failed calls leave the EMA alone
}

// ---------------------------------------------------------------------------------------- postprocess

TEST_CASE("postprocess: one confident anchor by hand, and nothing above the threshold") {
  AnchorGeneratorConfig anchor_config;
  anchor_config.sizes = {{16.0}};
  anchor_config.aspect_ratios = {1.0};
  anchor_config.strides = {8};
  const Anchors anchors =
      AnchorGenerator(anchor_config).generate({{2, 2}}, DType::f64);  // 4 anchors, 2 classes
  Tensor logits = full({1, 4, 2}, -10.0, {DType::f64});
  const Tensor deltas = zeros({1, 4, 4}, {DType::f64});
  const std::vector<ImageSizes> sizes = {{16, 16, 32, 8}};  // x scaled by 0.5, y by 2
  CHECK(postprocess_detections(logits, deltas, anchors, sizes)[0].boxes.shape() == Shape{0, 4});

  logits = f64({-10, -10, -10, -10, -10, -10, -10, 2.0}, {1, 4, 2});  // anchor 3 (cell (1, 1)), class 1
  const Detections d = postprocess_detections(logits, deltas, anchors, sizes)[0];
  REQUIRE(d.scores.numel() == 1);
  CHECK(d.scores.item() == doctest::Approx(1.0 / (1.0 + std::exp(-2.0))));
  CHECK(ints(d.labels) == std::vector<int64_t>{1});
  // Anchor (0, 0, 16, 16) -> x * 0.5, y * 2 -> (0, 0, 8, 32): exactly the original image.
  CHECK(values(d.boxes) == std::vector<double>{0, 0, 8, 32});
}

TEST_CASE("postprocess matches torchvision's and detectron2's postprocessing (fixture)") {
  const testing::FixtureCase inputs = fixture()["postprocess_inputs"];
  const auto& p = inputs.params();
  std::vector<ImageSizes> sizes;
  for (const auto& s : p.at("sizes"))
    sizes.push_back(
        {s.at(0).get<int64_t>(), s.at(1).get<int64_t>(), s.at(2).get<int64_t>(), s.at(3).get<int64_t>()});
  for (const std::string name : {"postprocess_torchvision", "postprocess_detectron2"}) {
    const testing::FixtureCase c = fixture()[name];
    RetinaNetPostprocessConfig config =
        name == "postprocess_torchvision" ? torchvision_postprocess_config() : RetinaNetPostprocessConfig{};
    config.score_threshold = p.at("score_threshold").get<double>();
    config.topk_candidates = p.at("topk").get<int64_t>();
    config.nms_threshold = p.at("nms_threshold").get<double>();
    config.max_detections = p.at("max_detections").get<int64_t>();
    for (DType dtype : kFloatTypes) {
      INFO(name << " " << dtype_name(dtype));
      const Anchors anchors{inputs.tensor("anchors", dtype),
                            p.at("num_per_level").get<std::vector<int64_t>>()};
      const std::vector<Detections> dets = postprocess_detections(
          inputs.tensor("cls_logits", dtype), inputs.tensor("bbox_deltas", dtype), anchors, sizes, config);
      REQUIRE(dets.size() == sizes.size());
      for (std::size_t i = 0; i < dets.size(); ++i) {
        std::string suffix = "_";
        suffix += std::to_string(i);
        CHECK(ints(dets[i].labels) == ints(c.tensor("labels" + suffix, DType::i64)));
        REQUIRE(dets[i].boxes.shape() == c.tensor("boxes" + suffix).shape());
        CHECK(dets[i].boxes.dtype() == dtype);
        CHECK(max_relative_error(dets[i].boxes, c.tensor("boxes" + suffix)) < tolerance(dtype));
        CHECK(max_relative_error(dets[i].scores, c.tensor("scores" + suffix)) < tolerance(dtype));
      }
    }
  }
}

TEST_CASE("postprocess rejects bad input") {
  AnchorGeneratorConfig anchor_config;
  anchor_config.sizes = {{16.0}};
  anchor_config.strides = {8};
  const Anchors anchors = AnchorGenerator(anchor_config).generate({{2, 2}}, DType::f64);  // 12 anchors
  const Tensor logits = zeros({2, 12, 3}, {DType::f64}), deltas = zeros({2, 12, 4}, {DType::f64});
  const std::vector<ImageSizes> sizes(2, ImageSizes{16, 16, 16, 16});
  CHECK(postprocess_detections(logits, deltas, anchors, sizes).size() == 2);
  CHECK_THROWS_AS(postprocess_detections(logits.select(0, 0), deltas, anchors, sizes), std::invalid_argument);
  CHECK_THROWS_AS(postprocess_detections(logits, deltas.narrow(1, 0, 11), anchors, sizes),
                  std::invalid_argument);
  CHECK_THROWS_AS(postprocess_detections(logits, deltas, anchors, {sizes[0]}), std::invalid_argument);
  CHECK_THROWS_AS(postprocess_detections(logits, deltas, anchors, {sizes[0], ImageSizes{16, 0, 16, 16}}),
                  std::invalid_argument);
  Anchors miscounted = anchors;
  miscounted.num_per_level = {10};
  CHECK_THROWS_AS(postprocess_detections(logits, deltas, miscounted, sizes), std::invalid_argument);
  CHECK_THROWS_AS(postprocess_detections(logits.to(DType::f32), deltas, anchors, sizes),
                  std::invalid_argument);
  RetinaNetPostprocessConfig config;
  config.topk_candidates = 0;
  CHECK_THROWS_AS(postprocess_detections(logits, deltas, anchors, sizes, config), std::invalid_argument);
}
