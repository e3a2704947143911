// Transforms: output sizes of the shortest-edge resize (values from detectron2's formula, computed in
// Python), bilinear resizing against hand values and against the engine's torch-parity
// interpolate_bilinear, flips, normalisation in both channel orders, boxes through every step
// (hand values), the random draws, batching with padding, and bad configurations.
#include <doctest/doctest.h>

#include <cmath>
#include <set>
#include <vector>

#include "datasets/transforms.h"
#include "engine/cuda_status.h"
#include "engine/factory.h"
#include "engine/ops/resize.h"

using namespace icd;
using doctest::Approx;

namespace {

Image random_image(int width, int height, uint64_t seed) {
  Generator gen(seed);
  Image image(width, height);
  for (uint8_t& v : image.pixels)
    v = static_cast<uint8_t>(gen.integer(256));
  return image;
}

// One row of grey pixels (all three channels equal).
Image grey_row(const std::vector<int>& values) {
  Image image(static_cast<int>(values.size()), 1);
  for (size_t x = 0; x < values.size(); ++x)
    for (int c = 0; c < 3; ++c)
      image.at(static_cast<int>(x), 0)[c] = static_cast<uint8_t>(values[x]);
  return image;
}

std::vector<int> grey_values(const Image& image) {
  std::vector<int> values;
  for (int y = 0; y < image.height; ++y)
    for (int x = 0; x < image.width; ++x)
      values.push_back(image.at(x, y)[0]);
  return values;
}

void check_box(const BoxXYXY& box, double x1, double y1, double x2, double y2) {
  CHECK(box.x1 == Approx(x1).epsilon(1e-12));
  CHECK(box.y1 == Approx(y1).epsilon(1e-12));
  CHECK(box.x2 == Approx(x2).epsilon(1e-12));
  CHECK(box.y2 == Approx(y2).epsilon(1e-12));
}

TransformConfig small_config(std::vector<int> sizes, int max_long_edge, double flip_probability) {
  TransformConfig config;
  config.short_edge_sizes = std::move(sizes);
  config.max_long_edge = max_long_edge;
  config.flip_probability = flip_probability;
  return config;
}

}  // namespace

TEST_CASE("shortest_edge_size follows detectron2's ResizeShortestEdge") {
  struct Case {
    int h, w, short_edge, max_long, expect_h, expect_w;
  };
  // Expected values from detectron2's get_output_shape run in Python.
  const Case cases[] = {
      {480, 640, 800, 1333, 800, 1067},  {1000, 200, 800, 1333, 1333, 267}, {100, 100, 800, 1333, 800, 800},
      {600, 1000, 800, 1333, 800, 1333}, {300, 1000, 800, 1333, 400, 1333}, {3, 5, 2, 100, 2, 3},
      {427, 640, 640, 1333, 640, 959},   {333, 500, 704, 1333, 704, 1057},  {20, 40, 10, 1000, 10, 20}};
  for (const Case& c : cases) {
    CAPTURE(c.h);
    CAPTURE(c.w);
    const ImageSize size = shortest_edge_size({c.h, c.w}, c.short_edge, c.max_long);
    CHECK(size.height == c.expect_h);
    CHECK(size.width == c.expect_w);
  }
  CHECK_THROWS_AS(shortest_edge_size({0, 10}, 800, 1333), std::invalid_argument);
  CHECK_THROWS_AS(shortest_edge_size({10, 10}, 0, 1333), std::invalid_argument);
}

TEST_CASE("bilinear resize: hand values") {
  // Up 2 -> 4: sources max(0, (d + 0.5) / 2 - 0.5) = 0, 0.25, 0.75, 1.25 (clamped to the last pixel).
  CHECK(grey_values(resize_bilinear(grey_row({0, 100}), {1, 4})) == std::vector<int>{0, 25, 75, 100});
  // Down 4 -> 2: sources 0.5 and 2.5, halfway between neighbours; 25.5 rounds up.
  CHECK(grey_values(resize_bilinear(grey_row({0, 10, 20, 31}), {1, 2})) == std::vector<int>{5, 26});
  // Same size: unchanged.
  const Image image = random_image(7, 5, 3);
  CHECK(resize_bilinear(image, {5, 7}).pixels == image.pixels);
  CHECK_THROWS_AS(resize_bilinear(image, {0, 3}), std::invalid_argument);
  CHECK_THROWS_AS(resize_bilinear(Image(), {3, 3}), std::invalid_argument);
}

TEST_CASE("bilinear resize on uint8 is the engine's float bilinear, rounded") {
  const Image image = random_image(23, 17, 11);
  std::vector<double> values(3 * 17 * 23);
  for (int c = 0; c < 3; ++c)
    for (int y = 0; y < 17; ++y)
      for (int x = 0; x < 23; ++x)
        values[(c * 17 + y) * 23 + x] = image.at(x, y)[c];
  const Tensor as_float = from_vector(values, {1, 3, 17, 23}, {DType::f64});
  const ImageSize sizes[] = {{40, 50}, {8, 11}, {17, 46}, {34, 9}, {5, 5}};
  for (const ImageSize size : sizes) {
    CAPTURE(size.height);
    CAPTURE(size.width);
    const Image resized = resize_bilinear(image, size);
    const std::vector<double> expected =
        interpolate_bilinear(as_float, size.height, size.width, false).to_vector<double>();
    double worst = 0;
    for (int c = 0; c < 3; ++c)
      for (int y = 0; y < size.height; ++y)
        for (int x = 0; x < size.width; ++x)
          worst = std::max(worst,
                           std::abs(resized.at(x, y)[c] -
                                    expected[(static_cast<size_t>(c) * size.height + y) * size.width + x]));
    CHECK(worst <= 0.5 + 1e-3);
  }
}

TEST_CASE("horizontal flip of the image and of boxes") {
  CHECK(grey_values(flip_horizontal(grey_row({1, 2, 3, 4}))) == std::vector<int>{4, 3, 2, 1});
  const Image image = random_image(9, 4, 5);
  CHECK(flip_horizontal(flip_horizontal(image)).pixels == image.pixels);
  CHECK(flip_horizontal(image).at(0, 2)[1] == image.at(8, 2)[1]);

  std::vector<BoxXYXY> boxes = {{1, 2, 4, 6}, {0, 0, 10, 3}};
  flip_boxes(boxes, 10);
  check_box(boxes[0], 6, 2, 9, 6);
  check_box(boxes[1], 0, 0, 10, 3);
}

TEST_CASE("scaling, clipping and dropping boxes") {
  std::vector<BoxXYXY> boxes = {{1, 2, 4, 6}};
  scale_boxes(boxes, 2.0, 0.5);
  check_box(boxes[0], 2, 1, 8, 3);

  DetectionTargets targets;
  targets.boxes = {{-5, 2, 8, 30},       // partly outside: clipped to [0, 2, 8, 20]
                   {12, 3, 20, 9},       // fully right of the image: empty after clipping
                   {3, 3, 3, 9},         // zero width
                   {1, 1, 2, 2},         // kept as is
                   {4, 5, 4.00002, 6}};  // width 2e-5 > 1e-5: kept
  targets.classes = {0, 1, 2, 3, 4};
  CHECK(clip_and_drop_empty(targets, {20, 10}) == 2);
  REQUIRE(targets.boxes.size() == 3);
  CHECK(targets.classes == std::vector<int64_t>{0, 3, 4});
  check_box(targets.boxes[0], 0, 2, 8, 20);
  check_box(targets.boxes[1], 1, 1, 2, 2);

  DetectionTargets mismatched;
  mismatched.boxes = {{0, 0, 1, 1}};
  CHECK_THROWS_AS(clip_and_drop_empty(mismatched, {5, 5}), std::invalid_argument);
}

TEST_CASE("normalisation in BGR (detectron2) and RGB (torchvision) order") {
  Image image(2, 1);
  const uint8_t rgb0[3] = {10, 20, 30}, rgb1[3] = {255, 0, 128};
  std::copy(rgb0, rgb0 + 3, image.at(0, 0));
  std::copy(rgb1, rgb1 + 3, image.at(1, 0));

  const Tensor bgr = to_normalized_tensor(image, NormalizeConfig::caffe_bgr());
  CHECK(bgr.shape() == Shape{3, 1, 2});
  CHECK(bgr.dtype() == DType::f32);
  const std::vector<float> b = bgr.to_vector<float>();  // [B0, B1, G0, G1, R0, R1]
  CHECK(b[0] == Approx(30 - 103.530).epsilon(1e-6));
  CHECK(b[1] == Approx(128 - 103.530).epsilon(1e-6));
  CHECK(b[2] == Approx(20 - 116.280).epsilon(1e-6));
  CHECK(b[3] == Approx(0 - 116.280).epsilon(1e-6));
  CHECK(b[4] == Approx(10 - 123.675).epsilon(1e-6));
  CHECK(b[5] == Approx(255 - 123.675).epsilon(1e-6));

  const std::vector<float> r =
      to_normalized_tensor(image, NormalizeConfig::torchvision_rgb()).to_vector<float>();
  CHECK(r[0] == Approx((10 - 123.675) / 58.395).epsilon(1e-6));
  CHECK(r[1] == Approx((255 - 123.675) / 58.395).epsilon(1e-6));
  CHECK(r[2] == Approx((20 - 116.28) / 57.12).epsilon(1e-6));
  CHECK(r[5] == Approx((128 - 103.53) / 57.375).epsilon(1e-6));
}

TEST_CASE("apply_transforms: boxes and pixels through resize and flip, by hand") {
  const Image image = random_image(40, 20, 7);  // 40 wide, 20 high
  DetectionTargets targets;
  targets.boxes = {{4, 2, 12, 10}, {39.99999, 0, 40, 20}};  // the second becomes empty (width 5e-6)
  targets.classes = {3, 1};

  Generator rng(1);
  const TransformedSample flipped = apply_transforms(image, targets, small_config({10}, 1000, 1.0), rng);
  const SampleInfo& info = flipped.info;
  CHECK(info.original_size.height == 20);
  CHECK(info.original_size.width == 40);
  CHECK(info.size.height == 10);
  CHECK(info.size.width == 20);
  CHECK(info.scale_x == 0.5);
  CHECK(info.scale_y == 0.5);
  CHECK(info.flipped);
  CHECK(info.boxes_dropped == 1);
  REQUIRE(info.targets.boxes.size() == 1);
  CHECK(info.targets.classes == std::vector<int64_t>{3});
  // [4, 2, 12, 10] * 0.5 = [2, 1, 6, 5]; flipped in width 20: [14, 1, 18, 5].
  check_box(info.targets.boxes[0], 14, 1, 18, 5);
  const Tensor expected = to_normalized_tensor(flip_horizontal(resize_bilinear(image, {10, 20})), {});
  CHECK(flipped.image.shape() == Shape{3, 10, 20});
  CHECK(flipped.image.to_vector<float>() == expected.to_vector<float>());

  // Unequal per-axis scales: 30 x 7 (w x h) to short edge 4 gives 4 x 17, scale_x 17/30, scale_y 4/7.
  DetectionTargets one;
  one.boxes = {{3, 1, 15, 7}};
  one.classes = {0};
  const TransformedSample uneven =
      apply_transforms(random_image(30, 7, 2), one, small_config({4}, 1000, 0), rng);
  CHECK(uneven.info.size.height == 4);
  CHECK(uneven.info.size.width == 17);
  CHECK(!uneven.info.flipped);
  check_box(uneven.info.targets.boxes[0], 3 * 17.0 / 30, 4.0 / 7, 15 * 17.0 / 30, 4.0);

  DetectionTargets mismatched;
  mismatched.classes = {1};
  CHECK_THROWS_AS(apply_transforms(image, mismatched, small_config({10}, 100, 0), rng),
                  std::invalid_argument);
}

TEST_CASE("random draws: every size and both flips occur, and a seed repeats its draws") {
  const Image image = random_image(16, 12, 9);
  const TransformConfig config = small_config({6, 8, 10}, 1000, 0.5);
  std::set<int> heights;
  int flips = 0;
  for (uint64_t seed = 0; seed < 60; ++seed) {
    Generator a(seed), b(seed);
    const TransformedSample first = apply_transforms(image, {}, config, a);
    const TransformedSample second = apply_transforms(image, {}, config, b);
    CHECK(first.info.size.height == second.info.size.height);
    CHECK(first.info.flipped == second.info.flipped);
    CHECK(first.image.to_vector<float>() == second.image.to_vector<float>());
    heights.insert(first.info.size.height);
    flips += first.info.flipped;
  }
  CHECK(heights == std::set<int>{6, 8, 10});
  CHECK(flips > 10);
  CHECK(flips < 50);
}

TEST_CASE("collate pads bottom and right with zeros to a multiple of the divisibility") {
  Generator rng(4);
  DetectionTargets targets;
  targets.boxes = {{1, 1, 3, 3}};
  targets.classes = {2};
  std::vector<TransformedSample> samples;
  samples.push_back(apply_transforms(random_image(20, 10, 1), targets, small_config({10}, 100, 0), rng));
  samples.push_back(apply_transforms(random_image(5, 33, 2), {}, small_config({5}, 100, 0), rng));
  const std::vector<float> first = samples[0].image.to_vector<float>();
  const std::vector<float> second = samples[1].image.to_vector<float>();

  const DetectionBatch batch = collate(samples, 32);
  CHECK(batch.images.shape() == Shape{2, 3, 64, 32});
  REQUIRE(batch.size() == 2);
  CHECK(batch.samples[0].size.height == 10);
  CHECK(batch.samples[0].size.width == 20);
  CHECK(batch.samples[1].size.height == 33);
  CHECK(batch.samples[0].targets.classes == std::vector<int64_t>{2});
  const std::vector<float> all = batch.images.to_vector<float>();
  auto at = [&](int n, int c, int y, int x) { return all[((n * 3 + c) * 64 + y) * 32 + x]; };
  bool content_ok = true, padding_ok = true;
  for (int c = 0; c < 3; ++c) {
    for (int y = 0; y < 64; ++y) {
      for (int x = 0; x < 32; ++x) {
        if (y < 10 && x < 20)
          content_ok &= at(0, c, y, x) == first[(c * 10 + y) * 20 + x];
        else
          padding_ok &= at(0, c, y, x) == 0.0f;
        if (y < 33 && x < 5)
          content_ok &= at(1, c, y, x) == second[(c * 33 + y) * 5 + x];
        else
          padding_ok &= at(1, c, y, x) == 0.0f;
      }
    }
  }
  CHECK(content_ok);
  CHECK(padding_ok);

  CHECK(collate(samples, 1).images.shape() == Shape{2, 3, 33, 20});
  // In page-locked memory when asked (and a GPU can use it): the same batch either way.
  const DetectionBatch pinned = collate(samples, 32, true);
  CHECK(pinned.images.is_pinned() == cuda_status().available);
  CHECK_FALSE(batch.images.is_pinned());
  CHECK(pinned.images.to_vector<float>() == batch.images.to_vector<float>());
  CHECK_THROWS_AS(collate({}, 32), std::invalid_argument);
  CHECK_THROWS_AS(collate(samples, 0), std::invalid_argument);
  samples[1].info.size.width = 6;
  CHECK_THROWS_AS(collate(samples, 32), std::invalid_argument);
}

TEST_CASE("bad transform configurations name the field") {
  using doctest::Contains;
  TransformConfig config = TransformConfig::train();
  CHECK_NOTHROW(config.validate());
  CHECK(config.short_edge_sizes.size() == 6);
  CHECK(TransformConfig::test().short_edge_sizes == std::vector<int>{800});

  config.short_edge_sizes = {};
  CHECK_THROWS_WITH_AS(config.validate(), Contains("short_edge_sizes is empty"), std::invalid_argument);
  config = TransformConfig::train();
  config.flip_probability = 1.5;
  CHECK_THROWS_WITH_AS(config.validate(), Contains("flip_probability"), std::invalid_argument);
  config = TransformConfig::train();
  config.normalize.std[1] = 0;
  CHECK_THROWS_WITH_AS(config.validate(), Contains("normalize.std[1]"), std::invalid_argument);
  config = TransformConfig::train();
  config.size_divisibility = 0;
  CHECK_THROWS_WITH_AS(config.validate(), Contains("size_divisibility"), std::invalid_argument);
  config = TransformConfig::train();
  config.max_long_edge = 0;
  Generator rng(0);
  CHECK_THROWS_WITH_AS(apply_transforms(random_image(4, 4, 0), {}, config, rng), Contains("max_long_edge"),
                       std::invalid_argument);
}
