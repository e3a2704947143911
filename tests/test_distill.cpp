// Instance-conditional distillation (distill/): the fake-instance prior (file format, statistics of a
// training set, sampling distribution and clipping), query construction (the K_b rule, descriptors,
// batching), f64 gradient checks of the encoder MLP, the decoder, the auxiliary losses and the distillation
// loss (with the stop-gradients it promises), parity with an independent PyTorch implementation of
// spec/icd.md (tools/icd_reference.py -> tests/fixtures/icd.json), the FitNet baseline, and the errors bad
// input gets.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>
#include <vector>

#include "distill/auxiliary_task.h"
#include "distill/conditional_decoder.h"
#include "distill/distill_loss.h"
#include "distill/fake_instance_prior.h"
#include "distill/fitnet.h"
#include "distill/icd_module.h"
#include "distill/instance_encoder.h"
#include "distill/mlp.h"
#include "distill/objectives.h"
#include "engine/autograd.h"
#include "engine/factory.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/position.h"
#include "engine/ops/reduce.h"
#include "engine/ops/shape.h"
#include "fixture.h"
#include "gradcheck.h"
#include "temp_dir.h"

using namespace icd;
using icd::testing::max_abs;
using icd::testing::random_leaf;
using Inputs = std::vector<Tensor>;

namespace {

const TensorOptions kF64{DType::f64, Device::cpu()};

// Relative error with an absolute floor at 1e-6 of the expected tensor's largest magnitude, so an element
// that is 0 in torch (e.g. the key bias gradient, which softmax's shift invariance zeroes) and 1e-18 here
// does not count as a relative error of 1 (as in test_layers.cpp).
double parity_error(const Tensor& actual, const Tensor& expected) {
  double scale = 0;
  for (double v : expected.to_vector<double>())
    scale = std::max(scale, std::abs(v));
  return testing::max_relative_error(actual, expected, 1e-6 * scale + 1e-300);
}

Inputs with_parameters(Inputs inputs, const Module& m) {
  for (const Tensor& p : m.trainable_parameters())
    inputs.push_back(p);
  return inputs;
}

// A prior over three classes with simple statistics (class 2 is never drawn).
FakeInstancePrior small_prior() {
  std::vector<ClassBoxPrior> classes(3);
  classes[0] = {{0.5, 0.5, 0.2, 0.1}, {0.1, 0.1, 0.05, 0.02}, 3.0};
  classes[1] = {{0.4, 0.4, 0.4, 0.3}, {0.2, 0.2, 0.1, 0.05}, 1.0};
  classes[2] = {{0.5, 0.5, 0.3, 0.3}, {0.1, 0.1, 0.1, 0.1}, 0.0};
  return FakeInstancePrior(classes);
}

template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "(no exception)";
}

std::string prior_entry(const std::string& mean, const std::string& stddev, const std::string& freq) {
  return "[" + mean + ", " + stddev + ", " + freq + "]";
}

// The queries of fixture images image0_, image1_, ...
std::vector<ImageQueries> fixture_queries(const testing::FixtureCase& c) {
  const auto heights = c.params().at("heights").get<std::vector<int64_t>>();
  const auto widths = c.params().at("widths").get<std::vector<int64_t>>();
  const auto num_real = c.params().at("num_real").get<std::vector<int64_t>>();
  std::vector<ImageQueries> images;
  for (std::size_t i = 0; i < heights.size(); ++i) {
    const std::string prefix = "image" + std::to_string(i) + "_";
    const std::vector<double> boxes = c.tensor(prefix + "boxes").to_vector<double>();
    const std::vector<double> labels = c.tensor(prefix + "labels").to_vector<double>();
    const std::vector<double> jitter = c.tensor(prefix + "jitter").to_vector<double>();
    ImageQueries image;
    image.size = {heights[i], widths[i]};
    image.num_real = num_real[i];
    for (std::size_t k = 0; k < labels.size(); ++k)
      image.queries.push_back({{boxes[4 * k], boxes[4 * k + 1], boxes[4 * k + 2], boxes[4 * k + 3]},
                               static_cast<int64_t>(labels[k]),
                               jitter[2 * k],
                               jitter[2 * k + 1]});
    images.push_back(image);
  }
  return images;
}

std::vector<ImageSize> image_sizes(const std::vector<ImageQueries>& queries) {
  std::vector<ImageSize> sizes;
  for (const ImageQueries& q : queries)
    sizes.push_back(q.size);
  return sizes;
}

// Logits with -inf replaced by 0, after checking that -inf appears exactly at the padded keys.
Tensor finite_logits(const Tensor& logits, const Tensor& key_padding_mask) {
  const int64_t B = logits.size(0), H = logits.size(1), L = logits.size(2), S = logits.size(3);
  std::vector<double> v = logits.to_vector<double>();
  const std::vector<double> mask = key_padding_mask.to_vector<double>();
  int64_t misplaced = 0;
  for (int64_t i = 0; i < B * H * L * S; ++i) {
    const int64_t b = i / (H * L * S), s = i % S;
    const bool padded = mask[static_cast<std::size_t>(b * S + s)] != 0.0;
    const bool minus_inf = std::isinf(v[static_cast<std::size_t>(i)]) && v[static_cast<std::size_t>(i)] < 0;
    misplaced += padded != minus_inf;
    if (minus_inf) v[static_cast<std::size_t>(i)] = 0.0;
  }
  CHECK(misplaced == 0);
  return from_vector(v, logits.shape(), logits.options());
}

// The distiller of the "pipeline" fixture case, in f64, with the fixture's weights.
IcdConfig pipeline_config(const testing::FixtureCase& c) {
  IcdConfig config;
  config.num_classes = c.params().at("num_classes").get<int64_t>();
  config.hidden_dim = c.params().at("hidden_dim").get<int64_t>();
  config.student_channels = config.hidden_dim;
  config.num_heads = c.params().at("num_heads").get<int64_t>();
  config.ffn_dim = c.params().at("ffn_dim").get<int64_t>();
  config.sampling.neg_pos_ratio = c.params().at("neg_pos_ratio").get<int64_t>();
  config.distill.weight = c.params().at("distill_weight").get<double>();
  config.warmup_iterations = 0;
  return config;
}

// Gradient parity. A gradient that is zero analytically (the key-side bias pos_proj.bias: adding the same
// vector to every key shifts each query's logits by a constant, which softmax ignores) is rounding noise on
// both sides, around 1e-17; there both must stay below 1e-12 instead.
bool gradient_matches(const Tensor& actual, const Tensor& expected) {
  if (max_abs(expected) < 1e-12) return max_abs(actual) < 1e-12;
  return parity_error(actual, expected) < 1e-10;
}

void load_fixture_weights(Module& m, const testing::FixtureCase& c) {
  NamedTensors state;
  for (const auto& [name, t] : m.state_dict())
    state.emplace_back(name, c.tensor(name));
  m.load_state_dict(state);
}

}  // namespace

// ------------------------------------------------------------------------------------------------------------
// Fake-instance prior

TEST_CASE("fake prior: the paper's COCO prior loads with its 80 classes") {
  const std::string path = std::string(ICD_SOURCE_DIR) + "/data/coco_obj_prior.json";
  FakeInstancePrior prior = FakeInstancePrior::load(path);
  REQUIRE(prior.num_classes() == 80);
  CHECK(prior[0].mean[0] == 0.4253410386362685);
  CHECK(prior[0].stddev[3] == 0.2614778338641373);
  CHECK(prior[0].instances_per_image == 2.218882886538673);
  CHECK(prior[1].instances_per_image == 0.0601334043470542);
  const std::vector<double> p = prior.class_probabilities();
  CHECK(std::accumulate(p.begin(), p.end(), 0.0) == doctest::Approx(1.0).epsilon(1e-12));
  double total = 0;
  for (int64_t c = 0; c < 80; ++c)
    total += prior[c].instances_per_image;
  CHECK(p[0] == doctest::Approx(2.218882886538673 / total).epsilon(1e-12));  // label c uses class c (no 9.1)
}

TEST_CASE("fake prior: malformed files are rejected naming the file, key and field") {
  const std::string ok = prior_entry("[0.5, 0.5, 0.2, 0.2]", "[0.1, 0.1, 0.1, 0.1]", "1.5");
  CHECK_NOTHROW(FakeInstancePrior::parse("{\"0\": " + ok + ", \"1\": " + ok + "}", "p.json"));
  CHECK_THROWS_WITH_AS(FakeInstancePrior::parse("{\"0\": [", "p.json"),
                       doctest::Contains("p.json: not valid JSON"), std::runtime_error);
  CHECK_THROWS_WITH_AS(FakeInstancePrior::parse("[1, 2]", "p.json"), doctest::Contains("p.json: expected"),
                       std::runtime_error);
  CHECK_THROWS_WITH_AS(FakeInstancePrior::parse("{}", "p.json"), doctest::Contains("non-empty"),
                       std::runtime_error);
  CHECK_THROWS_WITH_AS(FakeInstancePrior::parse("{\"0\": " + ok + ", \"x\": " + ok + "}", "p.json"),
                       doctest::Contains("key \"x\" is not a class id"), std::runtime_error);
  CHECK_THROWS_WITH_AS(FakeInstancePrior::parse("{\"0\": " + ok + ", \"01\": " + ok + "}", "p.json"),
                       doctest::Contains("key \"01\""), std::runtime_error);
  CHECK_THROWS_WITH_AS(FakeInstancePrior::parse("{\"0\": " + ok + ", \"2\": " + ok + "}", "p.json"),
                       doctest::Contains("key \"2\" is not a class id in 0..1"), std::runtime_error);
  CHECK_THROWS_WITH_AS(FakeInstancePrior::parse("{\"0\": [[0.5, 0.5, 0.2, 0.2], 1.0]}", "p.json"),
                       doctest::Contains("p.json: key \"0\" must be [[mean"), std::runtime_error);
  CHECK_THROWS_WITH_AS(
      FakeInstancePrior::parse("{\"0\": " + prior_entry("[0.5, 0.5, 0.2]", "[0.1, 0.1, 0.1, 0.1]", "1") + "}",
                               "p.json"),
      doctest::Contains("p.json: key \"0\": field 0 (mean) must be an array of 4 numbers"),
      std::runtime_error);
  CHECK_THROWS_WITH_AS(
      FakeInstancePrior::parse(
          "{\"0\": " + prior_entry("[0.5, 0.5, 0.2, 0.2]", "[0.1, \"a\", 0.1, 0.1]", "1") + "}", "p.json"),
      doctest::Contains("key \"0\": field 1 (std)[1] is not a number"), std::runtime_error);
  CHECK_THROWS_WITH_AS(
      FakeInstancePrior::parse(
          "{\"0\": " + prior_entry("[0.5, 0.5, 0.2, 0.2]", "[0.1, 0.1, 0.1, 0.1]", "null") + "}", "p.json"),
      doctest::Contains("field 2 (instances per image) is not a number"), std::runtime_error);
  CHECK_THROWS_WITH_AS(
      FakeInstancePrior::parse(
          "{\"0\": " + prior_entry("[0.5, 0.5, 0.2, 0.2]", "[0.1, 0.1, -0.1, 0.1]", "1") + "}", "p.json"),
      doctest::Contains("p.json: FakeInstancePrior: class 0 has a negative std"), std::runtime_error);
  CHECK_THROWS_WITH_AS(
      FakeInstancePrior::parse(
          "{\"0\": " + prior_entry("[0.5, 0.5, 0.2, 0.2]", "[0.1, 0.1, 0.1, 0.1]", "0") + "}", "p.json"),
      doctest::Contains("every class has frequency 0"), std::runtime_error);
  CHECK_THROWS_WITH_AS(FakeInstancePrior::load("/nonexistent/prior.json"),
                       doctest::Contains("/nonexistent/prior.json: cannot open"), std::runtime_error);
  CHECK_THROWS_AS(FakeInstancePrior(std::vector<ClassBoxPrior>{}), std::invalid_argument);
}

TEST_CASE("fake prior: statistics of a training set, and a save/load round trip") {
  std::vector<ImageInstances> images(3);
  images[0].size = {100, 200};  // height, width
  images[0].boxes = {{20, 10, 60, 50}, {100, 50, 200, 100}};
  images[0].labels = {0, 0};
  images[1].size = {50, 50};
  images[1].boxes = {{0, 0, 25, 10}};
  images[1].labels = {1};
  images[2].size = {10, 10};  // no boxes: still counts as an image
  FakeInstancePrior prior = FakeInstancePrior::from_annotations(images, 3);
  // class 0: normalised (x, y, w, h) = (0.1, 0.1, 0.2, 0.4) and (0.5, 0.5, 0.5, 0.5)
  const std::array<double, 4> mean0{0.3, 0.3, 0.35, 0.45}, std0{0.2, 0.2, 0.15, 0.05};
  for (int k = 0; k < 4; ++k) {
    CHECK(prior[0].mean[k] == doctest::Approx(mean0[k]).epsilon(1e-12));
    CHECK(prior[0].stddev[k] == doctest::Approx(std0[k]).epsilon(1e-9));
  }
  CHECK(prior[0].instances_per_image == doctest::Approx(2.0 / 3));
  CHECK(prior[1].mean == std::array<double, 4>{0.0, 0.0, 0.5, 0.2});
  CHECK(prior[1].stddev == std::array<double, 4>{0, 0, 0, 0});
  CHECK(prior[1].instances_per_image == doctest::Approx(1.0 / 3));
  CHECK(prior[2].instances_per_image == 0.0);  // never sampled
  CHECK(prior.class_probabilities()[2] == 0.0);

  testing::TempDir dir("distill_prior");
  prior.save(dir.file("prior.json"));
  FakeInstancePrior loaded = FakeInstancePrior::load(dir.file("prior.json"));
  REQUIRE(loaded.num_classes() == 3);
  for (int64_t c = 0; c < 3; ++c) {
    CHECK(loaded[c].mean == prior[c].mean);
    CHECK(loaded[c].stddev == prior[c].stddev);
    CHECK(loaded[c].instances_per_image == prior[c].instances_per_image);
  }
  CHECK(prior.to_json().rfind("{\"0\":", 0) == 0);  // numeric key order

  images[1].labels = {3};
  CHECK_THROWS_WITH_AS(FakeInstancePrior::from_annotations(images, 3), doctest::Contains("image 1: label 3"),
                       std::invalid_argument);
  CHECK_THROWS_AS(FakeInstancePrior::from_annotations({}, 3), std::invalid_argument);
}

TEST_CASE("fake prior: sampling follows class frequencies and the clipped size distribution") {
  FakeInstancePrior prior = small_prior();
  Generator gen(7);
  const int n = 40000;
  int64_t count[3] = {0, 0, 0}, at_low = 0, at_high = 0;
  double sum_w[2] = {0, 0}, sum_w2[2] = {0, 0}, sum_h[2] = {0, 0}, sum_cx = 0;
  bool within = true;
  for (int i = 0; i < n; ++i) {
    FakeSample s = prior.sample_normalized(gen);
    ++count[s.label];
    if (s.label > 1) continue;
    const ClassBoxPrior& p = prior[s.label];
    within = within && s.w >= p.mean[2] - 2 * p.stddev[2] && s.w <= p.mean[2] + 2 * p.stddev[2];
    within = within && s.cx >= 0.03 && s.cx <= 0.97 && s.cy >= 0.03 && s.cy <= 0.97;
    sum_w[s.label] += s.w;
    sum_w2[s.label] += s.w * s.w;
    sum_h[s.label] += s.h;
    sum_cx += s.cx;
    at_low += s.cx == 0.03;
    at_high += s.cy == 0.97;
  }
  CHECK(within);
  CHECK(count[2] == 0);
  CHECK(static_cast<double>(count[0]) / n == doctest::Approx(0.75).epsilon(0.02));
  CHECK(sum_cx / (count[0] + count[1]) == doctest::Approx(0.5).epsilon(0.01));
  // U[0, 1) clipped to [0.03, 0.97]: 3% of the draws land on each bound.
  CHECK(static_cast<double>(at_low) / n == doctest::Approx(0.03).epsilon(0.1));
  CHECK(static_cast<double>(at_high) / n == doctest::Approx(0.03).epsilon(0.1));
  // A normal clipped at +-2 std keeps its mean; its std shrinks to sqrt(E[min(max(Z, -2), 2)^2]) = 0.9594
  // std: E = (2 Phi(2) - 1) - 4 phi(2) + 4 P(|Z| > 2).
  const double phi2 = std::exp(-2.0) / std::sqrt(2 * M_PI), inside = std::erf(2 / std::sqrt(2.0));
  const double clipped_std = std::sqrt(inside - 4 * phi2 + 4 * (1 - inside));
  for (int c = 0; c < 2; ++c) {
    const double m = sum_w[c] / count[c];
    CHECK(m == doctest::Approx(prior[c].mean[2]).epsilon(0.01));
    CHECK(sum_h[c] / count[c] == doctest::Approx(prior[c].mean[3]).epsilon(0.01));
    const double sd = std::sqrt(sum_w2[c] / count[c] - m * m);
    CHECK(sd == doctest::Approx(clipped_std * prior[c].stddev[2]).epsilon(0.03));
  }
}

TEST_CASE("fake prior: sizes are clipped to [0.002, 0.7] and boxes stay inside the image") {
  std::vector<ClassBoxPrior> classes(1);
  classes[0] = {{0.5, 0.5, 0.65, 0.003}, {0.1, 0.1, 0.3, 0.01}, 1.0};
  FakeInstancePrior prior(classes);
  Generator gen(3);
  double min_h = 1, max_w = 0;
  for (int i = 0; i < 4000; ++i) {
    FakeSample s = prior.sample_normalized(gen);
    min_h = std::min(min_h, s.h);
    max_w = std::max(max_w, s.w);
  }
  CHECK(min_h == 0.002);
  CHECK(max_w == 0.7);
  const ImageSize image{120, 300};
  bool inside = true, ordered = true;
  for (const FakeInstance& f : prior.sample(2000, image, gen)) {
    inside = inside && f.box[0] >= 0 && f.box[1] >= 0 && f.box[2] <= 300 && f.box[3] <= 120;
    ordered =
        ordered && f.box[2] - f.box[0] <= 0.7 * 300 + 1e-9 && f.box[0] < f.box[2] && f.box[1] < f.box[3];
  }
  CHECK(inside);
  CHECK(ordered);
  CHECK_THROWS_AS(prior.sample(ImageSize{0, 10}, gen), std::invalid_argument);
  CHECK_THROWS_AS(prior.sample(-1, image, gen), std::invalid_argument);
}

// ------------------------------------------------------------------------------------------------------------
// Queries

TEST_CASE("queries: the K_b rule, and sampling real-then-fake queries with jitter") {
  CHECK(query_count(0) == 1);
  CHECK(query_count(1) == 6);
  CHECK(query_count(2) == 12);
  CHECK(query_count(50) == 300);
  CHECK(query_count(60) == 300);
  CHECK(query_count(299) == 300);
  CHECK(query_count(300) == 300);
  CHECK(query_count(301) == 301);  // never fewer queries than real boxes
  CHECK(query_count(500) == 500);
  CHECK(query_count(20, 5, 100) == 100);  // Faster R-CNN's MAX_LABELS
  CHECK(query_count(3, 1) == 6);
  CHECK_THROWS_AS(query_count(-1), std::invalid_argument);

  ImageInstances gt;
  gt.size = {80, 120};
  gt.boxes = {{10, 20, 50, 60}, {0, 0, 120, 80}};
  gt.labels = {1, 0};
  FakeInstancePrior prior = small_prior();
  Generator gen(11), same(11);
  ImageQueries q = sample_image_queries(gt, prior, {}, gen);
  REQUIRE(q.queries.size() == 12);
  CHECK(q.num_real == 2);
  CHECK(q.queries[0].box == gt.boxes[0]);
  CHECK(q.queries[1].label == 0);
  bool jitter_ok = true, fakes_inside = true;
  for (const InstanceQuery& iq : q.queries) {
    jitter_ok =
        jitter_ok && iq.jitter_x >= -0.3 && iq.jitter_x < 0.3 && iq.jitter_y >= -0.3 && iq.jitter_y < 0.3;
    fakes_inside = fakes_inside && iq.box[2] <= 120 && iq.box[3] <= 80 && iq.label != 2;
  }
  CHECK(jitter_ok);
  CHECK(fakes_inside);
  ImageQueries again = sample_image_queries(gt, prior, {}, same);
  CHECK(again.queries.back().box == q.queries.back().box);  // one seed, one stream
  CHECK(again.queries.back().jitter_y == q.queries.back().jitter_y);

  gt.labels = {1, 5};
  CHECK_THROWS_WITH_AS(sample_image_queries(gt, prior, {}, gen), doctest::Contains("label 5 of box 1"),
                       std::invalid_argument);
}

TEST_CASE("queries: descriptors, masks and targets match the reference; padding slots; scale bins") {
  testing::Fixture fixture("icd.json");
  testing::FixtureCase c = fixture["descriptors"];
  const int64_t K = c.params().at("num_classes").get<int64_t>();
  const std::vector<ImageQueries> images = fixture_queries(c);
  QueryBatch batch = build_query_batch(images, K, DType::f64);
  CHECK(batch.descriptors.shape() == Shape{2, 2, descriptor_dim(K)});
  CHECK(parity_error(batch.descriptors, c.tensor("descriptors")) < 1e-10);
  CHECK(parity_error(batch.padding_mask, c.tensor("padding_mask")) == 0);
  CHECK(parity_error(batch.real_mask, c.tensor("real_mask")) == 0);
  CHECK(parity_error(batch.targets, c.tensor("targets")) < 1e-10);
  CHECK(batch.num_real == std::vector<int64_t>{1, 0});
  CHECK(batch.num_queries == std::vector<int64_t>{2, 1});
  QueryBatch batch32 = build_query_batch(images, K, DType::f32);
  CHECK(batch32.descriptors.dtype() == DType::f32);
  CHECK(testing::max_relative_error(batch32.descriptors, c.tensor("descriptors")) < 1e-5);

  // Layout, by hand: image 0's real box is 700 x 100 px (w bin 4, h bin 1) of class 2; image 1's slot 1 is
  // padding.
  const std::vector<double> d = batch.descriptors.to_vector<double>();
  const int64_t D = descriptor_dim(K), scale = K + 2 * kPointFeatures;
  CHECK(d[2] == 1.0);
  CHECK(d[0] + d[1] == 0.0);
  CHECK(d[scale + 4] == 1.0);
  CHECK(d[scale + kScaleBins + 1] == 1.0);
  CHECK(std::accumulate(d.begin() + scale, d.begin() + D, 0.0) == 2.0);
  const double* pad = d.data() + 3 * D;
  CHECK(pad[0] == 1.0);
  CHECK(pad[1] + pad[2] == 0.0);
  CHECK(pad[K] == 0.0);                                      // sin(0)
  CHECK(pad[K + kPointFeatures / 2] == 1.0);                 // cos(0)
  CHECK(pad[K + kPointFeatures + 63] == 0.0);                // sin of the y point
  CHECK(pad[K + 2 * kPointFeatures - 1] == 1.0);             // cos of the y point
  CHECK(std::accumulate(pad + scale, pad + D, 0.0) == 0.0);  // no scale bin at padding

  const std::vector<double> sizes = c.tensor("scale_sizes").to_vector<double>();
  const std::vector<double> bins = c.tensor("scale_bins").to_vector<double>();
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    INFO("size " << sizes[i]);
    CHECK(scale_bin(sizes[i]) == static_cast<int64_t>(bins[i]));
  }
}

TEST_CASE("queries: bad batches are rejected") {
  ImageQueries good;
  good.size = {10, 10};
  good.queries = {{{1, 1, 5, 5}, 0, 0.1, 0.1}};
  good.num_real = 1;
  CHECK_THROWS_AS(build_query_batch({}, 3), std::invalid_argument);
  CHECK_THROWS_AS(build_query_batch({good}, 0), std::invalid_argument);
  ImageQueries empty = good;
  empty.queries.clear();
  empty.num_real = 0;
  CHECK_THROWS_WITH_AS(build_query_batch({good, empty}, 3), doctest::Contains("image 1 has no queries"),
                       std::invalid_argument);
  ImageQueries too_many_real = good;
  too_many_real.num_real = 2;
  CHECK_THROWS_WITH_AS(build_query_batch({too_many_real}, 3), doctest::Contains("num_real 2"),
                       std::invalid_argument);
  ImageQueries bad_label = good;
  bad_label.queries[0].label = 3;
  CHECK_THROWS_WITH_AS(build_query_batch({bad_label}, 3), doctest::Contains("label 3"),
                       std::invalid_argument);
  ImageQueries bad_size = good;
  bad_size.size = {0, 10};
  CHECK_THROWS_WITH_AS(build_query_batch({bad_size}, 3), doctest::Contains("image size 0x10"),
                       std::invalid_argument);
  ImageQueries bad_box = good;
  bad_box.queries[0].box = {5, 1, 1, 5};
  CHECK_THROWS_WITH_AS(build_query_batch({bad_box}, 3), doctest::Contains("box 0"), std::invalid_argument);
  Generator gen(0);
  CHECK_THROWS_AS(InstanceEncoder(0, 8, gen), std::invalid_argument);
}

// ------------------------------------------------------------------------------------------------------------
// Gradient checks (f64, small)

TEST_CASE("gradcheck: the MLP and the instance encoder") {
  Generator gen(21);
  Mlp mlp(5, 4, 3, 3, gen);
  mlp.to(DType::f64);
  CHECK(mlp.state_dict().size() == 6);
  CHECK(mlp.state_dict()[4].first == "layers.2.weight");
  Tensor x = random_leaf({2, 3, 5}, 22);
  CHECK_GRADCHECK([&](const Inputs& in) { return mlp.forward(in[0]); }, with_parameters({x}, mlp));
  CHECK_GRADCHECK([&](const Inputs& in) { return mlp.forward(in[0].transpose(0, 1)); },
                  Inputs{random_leaf({3, 2, 5}, 23)});

  // The encoder on real descriptors. Its first weight (4 x 268) is left out of the numeric check to keep the
  // check small; Linear's weight gradient is checked in test_layers.cpp, and the fixture's pipeline covers
  // the rest.
  InstanceEncoder encoder(2, 4, gen);
  encoder.to(DType::f64);
  ImageQueries image;
  image.size = {40, 60};
  image.num_real = 1;
  image.queries = {{{5, 5, 30, 25}, 1, 0.1, -0.2}, {{10, 0, 60, 40}, 0, -0.25, 0.05}};
  QueryBatch batch = build_query_batch({image}, 2, DType::f64);
  Inputs params;
  for (const auto& [name, p] : encoder.named_parameters())
    if (name != "layers.0.weight") params.push_back(p);
  CHECK(params.size() == 5);
  CHECK_GRADCHECK([&](const Inputs&) { return encoder.forward(batch.descriptors); }, params);
  CHECK(encoder.forward(batch.descriptors).shape() == Shape{1, 2, 4});
  CHECK_THROWS_AS(encoder.forward(zeros({1, 2, 267}, kF64)), std::invalid_argument);
}

TEST_CASE("gradcheck: the conditional decoder w.r.t. queries, features and every parameter, with padding") {
  Generator gen(31);
  ConditionalDecoder decoder({.hidden_dim = 8, .num_heads = 2, .ffn_dim = 6}, gen);
  decoder.to(DType::f64);
  const int64_t B = 2;
  // A 16 x 24 padded batch, three levels; image 0 is 16 x 10 (padded columns at the first two levels), image
  // 1 is 8 x 24 (a padded row at the first level).
  Tensor q = random_leaf({3, B, 8}, 32);
  Tensor l0 = random_leaf({B, 8, 2, 3}, 33), l1 = random_leaf({B, 8, 1, 2}, 34),
         l2 = random_leaf({B, 8, 1, 1}, 35);
  const ImageSize padded{16, 24};
  const std::vector<ImageSize> sizes{{16, 10}, {8, 24}};
  FeatureSequence probe = make_feature_sequence({l0, l1, l2}, padded, sizes);
  const int64_t S = 9;
  CHECK(probe.padding_mask.to_vector<double>() ==
        std::vector<double>{0, 0, 1, 0, 0, 1, 0, 1, 0, 0, 0, 0, 1, 1, 1, 0, 0, 0});
  auto outputs = [&](const Inputs& x) {
    FeatureSequence keys = make_feature_sequence({x[1], x[2], x[3]}, padded, sizes);
    DecoderOutput o = decoder.forward(x[0], keys);
    Tensor logits = masked_fill(o.logits, keys.padding_mask.reshape({B, 1, 1, S}), 0.0);
    return cat({o.decoded.flatten(), logits.flatten(), o.value.flatten()}, 0);
  };
  CHECK_GRADCHECK(outputs, with_parameters({q, l0, l1, l2}, decoder));
  // Non-contiguous inputs: a transposed query tensor and a permuted level.
  Tensor q_t = random_leaf({B, 3, 8}, 36);
  Tensor l0_p = random_leaf({B, 8, 3, 2}, 37);
  CHECK_GRADCHECK(
      [&](const Inputs& x) {
        return outputs({x[0].transpose(0, 1), x[1].transpose(2, 3), l1, l2});
      },
      Inputs{q_t, l0_p});

  DecoderOutput o = decoder.forward(q, probe);
  CHECK(o.decoded.shape() == Shape{3, B, 8});
  CHECK(o.logits.shape() == Shape{B, 2, 3, S});
  CHECK(o.value.shape() == Shape{S, B, 2, 4});
  const std::vector<double> logits = o.logits.to_vector<double>();
  CHECK(std::isinf(logits[2]));  // image 0, head 0, query 0, position 2 is padding
  CHECK(std::isfinite(logits[1]));
  CHECK(decoder.state_dict().front().first == "pos_proj.weight");
}

TEST_CASE("gradcheck: the auxiliary losses and the predictor; values by hand") {
  // Slot layout (B = 2, L = 3): image 0 = real, fake, fake; image 1 = real, padding, padding.
  Tensor padding = from_vector(std::vector<double>{0, 0, 0, 0, 1, 1}, {2, 3}, kF64);
  Tensor real = from_vector(std::vector<double>{1, 0, 0, 1, 0, 0}, {2, 3}, kF64);
  Tensor targets =
      from_vector(std::vector<double>{0.1,  0.2, 0.3,  0.05, 0.2, 0.2, 0.1, 0.1, 0.3, 0.3, 0.3, 0.3,
                                      0.05, 0.1, 0.15, 0.2,  0,   0,   0,   0,   0,   0,   0,   0},
                  {2, 3, 4}, kF64);
  Tensor predictions = random_leaf({2, 3, 5}, 41, -2.0, 2.0);
  CHECK_GRADCHECK(
      [&](const Inputs& x) {
        AuxiliaryLosses l = auxiliary_losses(x[0], padding, real, targets);
        return stack({l.identification, l.localization});
      },
      Inputs{predictions});

  // By hand at zero predictions: BCE(0, y) = ln 2 on every valid slot; p = 1/2, so the localisation loss is
  // the mean over the two real slots of sum_j |0.5 - t_j| / s_j with s = (w, h, w, h).
  AuxiliaryLosses zero = auxiliary_losses(zeros({2, 3, 5}, kF64), padding, real, targets);
  CHECK(zero.identification.item() == doctest::Approx(std::log(2.0)).epsilon(1e-14));
  const double real0 = 0.4 / 0.4 + 0.3 / 0.25 + 0.2 / 0.4 + 0.45 / 0.25;
  const double real1 = 0.45 / 0.2 + 0.4 / 0.3 + 0.35 / 0.2 + 0.3 / 0.3;
  CHECK(zero.localization.item() == doctest::Approx((real0 + real1) / 2).epsilon(1e-14));
  // No real box at all: the localisation loss is 0 (normaliser clamped at 1e-6), not NaN.
  AuxiliaryLosses none = auxiliary_losses(zeros({2, 3, 5}, kF64), padding, zeros({2, 3}, kF64), targets);
  CHECK(none.localization.item() == 0.0);

  Generator gen(42);
  AuxiliaryPredictor predictor(6, gen);
  predictor.to(DType::f64);
  Tensor g = random_leaf({3, 2, 6}, 43);
  CHECK(predictor.predict(g).shape() == Shape{2, 3, 5});
  CHECK_GRADCHECK(
      [&](const Inputs& x) {
        AuxiliaryLosses l = auxiliary_losses(predictor.predict(x[0]), padding, real, targets);
        return add(l.identification, l.localization);
      },
      with_parameters({g}, predictor));

  CHECK_THROWS_AS(auxiliary_losses(zeros({2, 3, 4}, kF64), padding, real, targets), std::invalid_argument);
  CHECK_THROWS_AS(auxiliary_losses(zeros({2, 3, 5}, kF64), real.transpose(0, 1), real, targets),
                  std::invalid_argument);
  CHECK_THROWS_AS(predictor.predict(zeros({3, 6}, kF64)), std::invalid_argument);
}

TEST_CASE("distillation loss: the attention mask, hand-computed values and the per-image normalisation") {
  const int64_t S = 4, B = 2, H = 2, d = 3, L = 2;
  Tensor student = random_leaf({S, B, H, d}, 51);
  Tensor teacher = random_leaf({S, B, H, d}, 52);
  Tensor logits = random_leaf({B, H, L, S}, 53).detach();
  // Image 0: two real queries; image 1: none. (Filled in code: GCC 12.2 with AVX-512 miscompiles the literal
  // std::vector<double>{1, 1, 0, 0} into four ones.)
  std::vector<double> real_values(B * L, 0.0);
  real_values[0] = real_values[1] = 1.0;
  Tensor real = from_vector(real_values, {B, L}, kF64);
  Tensor m = instance_attention_mask(logits, real);
  CHECK(m.shape() == Shape{B, H, S});
  CHECK(!m.requires_grad());
  const std::vector<double> mv = m.to_vector<double>();
  for (int64_t bh = 0; bh < B * H; ++bh) {  // each softmax sums to 1: sum_s m = n_b
    const double total = mv[bh * S] + mv[bh * S + 1] + mv[bh * S + 2] + mv[bh * S + 3];
    CHECK(total == doctest::Approx(bh < H ? 2.0 : 0.0).epsilon(1e-14));
  }

  // Uniform attention (equal logits) makes the loss lambda * mean over (b, h) of mean_s mean_c (LN diff)^2,
  // with image 1 contributing 0 but counting in the mean.
  Tensor flat = zeros({B, H, L, S}, kF64);
  const double loss = value_distillation_loss(student, teacher, flat, real, {.weight = 8.0}).item();
  double expected = 0;
  auto normalised = [&](const std::vector<double>& v, int64_t base) {
    double mean = (v[base] + v[base + 1] + v[base + 2]) / 3, var = 0;
    for (int64_t c = 0; c < 3; ++c)
      var += (v[base + c] - mean) * (v[base + c] - mean) / 3;
    std::vector<double> out(3);
    for (int64_t c = 0; c < 3; ++c)
      out[c] = (v[base + c] - mean) / std::sqrt(var + 1e-5);
    return out;
  };
  const std::vector<double> sv = student.to_vector<double>(), tv = teacher.to_vector<double>();
  for (int64_t h = 0; h < H; ++h)
    for (int64_t s = 0; s < S; ++s) {
      const int64_t base = ((s * B + 0) * H + h) * d;
      std::vector<double> a = normalised(sv, base), b = normalised(tv, base);
      for (int64_t c = 0; c < d; ++c)
        expected += (a[c] - b[c]) * (a[c] - b[c]) / (S * d);
    }
  expected = 8.0 * expected / (B * H);
  CHECK(loss == doctest::Approx(expected).epsilon(1e-12));
  // Same image 0 alone (B = 1): twice the value, since image 1 counted in B with a zero contribution.
  const double alone = value_distillation_loss(student.narrow(1, 0, 1), teacher.narrow(1, 0, 1),
                                               flat.narrow(0, 0, 1), real.narrow(0, 0, 1), {.weight = 8.0})
                           .item();
  CHECK(alone == doctest::Approx(2 * loss).epsilon(1e-12));
  // No real box anywhere: 0, not NaN.
  CHECK(value_distillation_loss(student, teacher, flat, zeros({B, L}, kF64)).item() == 0.0);
}

TEST_CASE(
    "gradcheck: the distillation loss w.r.t. student features and adapter; nothing reaches the teacher") {
  Generator gen(61);
  const int64_t B = 2, C = 8, H = 2, L = 3;
  Linear adapter(C, C, gen);
  adapter.to(DType::f64);
  Tensor s0 = random_leaf({B, C, 2, 2}, 62), s1 = random_leaf({B, C, 1, 1}, 63);
  const int64_t S = 5;
  Tensor teacher_value = random_leaf({S, B, H, C / H}, 64);
  Tensor teacher_logits = random_leaf({B, H, L, S}, 65, -2.0, 2.0);
  Tensor key_padding = from_vector(std::vector<double>{0, 1, 0, 1, 0, 0, 0, 0, 0, 0}, {B, S}, kF64);
  Tensor logits = masked_fill(teacher_logits, key_padding.reshape({B, 1, 1, S}), -INFINITY);
  Tensor real = from_vector(std::vector<double>{1, 0, 0, 1, 1, 0}, {B, L}, kF64);
  const DistillLossConfig config{.weight = 8.0};
  auto loss_of = [&](const Inputs& x, bool detach) {
    return distillation_loss(flatten_levels({x[0], x[1]}), adapter, teacher_value, logits, real, config,
                             detach);
  };
  CHECK_GRADCHECK([&](const Inputs& x) { return loss_of(x, false); }, with_parameters({s0, s1}, adapter));
  CHECK_GRADCHECK(
      [&](const Inputs& x) { return value_distillation_loss(x[0], teacher_value, logits, real, config); },
      Inputs{random_leaf({S, B, H, C / H}, 66)});

  // Stop-gradients: teacher value and logits that require grad get none; the warm-up flag keeps the student
  // features out of the graph while the adapter still learns.
  for (bool warmup : {false, true}) {
    s0.zero_grad();
    s1.zero_grad();
    adapter.weight().zero_grad();
    teacher_value.zero_grad();
    teacher_logits.zero_grad();
    Tensor value_leaf = teacher_value, logits_graph = logits;  // logits depend on the teacher_logits leaf
    Tensor loss =
        distillation_loss(flatten_levels({s0, s1}), adapter, value_leaf, logits_graph, real, config, warmup);
    REQUIRE(loss.requires_grad());
    loss.backward();
    CHECK(!teacher_value.grad().defined());
    CHECK(!teacher_logits.grad().defined());
    CHECK(adapter.weight().grad().defined());
    CHECK(s0.grad().defined() == !warmup);
  }

  Linear narrow_adapter(C, C / 2, gen);
  CHECK_THROWS_WITH_AS(
      distillation_loss(flatten_levels({s0, s1}), narrow_adapter, teacher_value, logits, real, config, false),
      doctest::Contains("adapter outputs 4 channels"), std::invalid_argument);
  CHECK_THROWS_AS(
      distillation_loss(random_leaf({S + 1, B, C}, 1), adapter, teacher_value, logits, real, config, false),
      std::invalid_argument);
  CHECK_THROWS_AS(value_distillation_loss(teacher_value, teacher_value, logits.narrow(3, 0, 4), real),
                  std::invalid_argument);
  CHECK_THROWS_AS(instance_attention_mask(logits, real.transpose(0, 1)), std::invalid_argument);
}

// ------------------------------------------------------------------------------------------------------------
// Parity with tools/icd_reference.py

TEST_CASE(
    "parity: masks, position embedding, encoder, decoder, auxiliary and distillation losses, gradients") {
  testing::Fixture fixture("icd.json");
  testing::FixtureCase c = fixture["pipeline"];
  const IcdConfig config = pipeline_config(c);
  Generator gen(0);
  InstanceConditionalDistiller icd(config, small_prior(), gen);
  icd.to(DType::f64);
  load_fixture_weights(icd, c);
  const std::vector<ImageQueries> queries = fixture_queries(c);
  const ImageSize padded{c.params().at("padded_height").get<int64_t>(),
                         c.params().at("padded_width").get<int64_t>()};
  std::vector<Tensor> teacher, student;
  for (int l = 3; l <= 7; ++l) {
    teacher.push_back(c.tensor("teacher_p" + std::to_string(l)));
    student.push_back(c.tensor("student_p" + std::to_string(l)).set_requires_grad(true));
  }

  // Step by step, with q0 as a leaf so its gradient can be compared.
  QueryBatch batch = build_query_batch(queries, config.num_classes, DType::f64);
  CHECK(parity_error(batch.padding_mask, c.tensor("padding_mask")) == 0);
  CHECK(parity_error(batch.real_mask, c.tensor("real_mask")) == 0);
  CHECK(parity_error(batch.targets, c.tensor("targets")) < 1e-10);
  Tensor q0 = icd.encoder().forward(batch.descriptors);
  CHECK(parity_error(q0, c.tensor("q0")) < 1e-10);
  Tensor q0_leaf = q0.detach().set_requires_grad(true);
  FeatureSequence keys = make_feature_sequence(teacher, padded, image_sizes(queries));
  CHECK(parity_error(keys.padding_mask, c.tensor("key_padding_mask")) == 0);
  CHECK(parity_error(keys.position, c.tensor("position")) < 1e-10);
  DecoderOutput decoded = icd.decoder().forward(q0_leaf.permute({1, 0, 2}), keys);
  CHECK(parity_error(decoded.decoded, c.tensor("g")) < 1e-10);
  CHECK(parity_error(finite_logits(decoded.logits, keys.padding_mask), c.tensor("logits")) < 1e-10);
  CHECK(parity_error(decoded.value, c.tensor("value")) < 1e-10);
  Tensor predictions = icd.predictor().predict(decoded.decoded);
  CHECK(parity_error(predictions, c.tensor("predictions")) < 1e-10);
  AuxiliaryLosses aux = auxiliary_losses(predictions, batch.padding_mask, batch.real_mask, batch.targets);
  Tensor distill = distillation_loss(flatten_levels(student), icd.student_adapter(), decoded.value,
                                     decoded.logits, batch.real_mask, config.distill, false);
  CHECK(parity_error(aux.identification, c.tensor("aux_conf")) < 1e-10);
  CHECK(parity_error(aux.localization, c.tensor("aux_reg")) < 1e-10);
  CHECK(parity_error(distill, c.tensor("distill")) < 1e-10);
  add(add(aux.identification, aux.localization), distill).backward();
  CHECK(parity_error(q0_leaf.grad(), c.tensor("grad_q0")) < 1e-10);
  for (int l = 3; l <= 7; ++l)
    CHECK(parity_error(student[static_cast<std::size_t>(l - 3)].grad(),
                       c.tensor("grad_student_p" + std::to_string(l))) < 1e-10);
  for (const auto& [name, p] : icd.named_parameters()) {
    if (name.rfind("encoder.", 0) == 0) continue;  // q0 was a leaf here
    INFO(name);
    REQUIRE(p.grad().defined());
    CHECK(gradient_matches(p.grad(), c.tensor("grad_" + name)));
  }

  // The module in one call gives the same losses and, with q0 inside the graph, the encoder's gradients too.
  for (const Tensor& p : icd.parameters())
    p.zero_grad();
  for (Tensor& s : student)
    s.zero_grad();
  std::vector<Tensor> teacher_leaves;
  for (const Tensor& t : teacher)
    teacher_leaves.push_back(
        t.detach().set_requires_grad(true));  // must receive nothing: the teacher is frozen
  IcdOutput out = icd.forward({teacher_leaves, student, padded}, queries, /*iteration=*/3);
  CHECK(parity_error(out.aux_identification, c.tensor("aux_conf")) < 1e-10);
  CHECK(parity_error(out.aux_localization, c.tensor("aux_reg")) < 1e-10);
  CHECK(parity_error(out.distill, c.tensor("distill")) < 1e-10);
  out.total().backward();
  for (const auto& [name, p] : icd.named_parameters()) {
    if (!c.has_tensor("grad_" + name)) continue;  // encoder.layers.0.weight: left out of the fixture (size)
    INFO(name);
    CHECK(gradient_matches(p.grad(), c.tensor("grad_" + name)));
  }
  CHECK(icd.encoder().named_parameters()[0].second.grad().defined());
  CHECK(parity_error(student[0].grad(), c.tensor("grad_student_p3")) < 1e-10);
  for (const Tensor& t : teacher_leaves)
    CHECK(!t.grad().defined());
}

TEST_CASE("distiller: parameter names, warm-up, random queries, and bad input") {
  IcdConfig config;
  config.num_classes = 3;
  config.hidden_dim = 8;
  config.student_channels = 4;
  config.num_heads = 2;
  config.ffn_dim = 6;
  config.warmup_iterations = 10;
  Generator gen(71);
  InstanceConditionalDistiller icd(config, small_prior(), gen);
  std::vector<std::string> names;
  for (const auto& [name, p] : icd.named_parameters())
    names.push_back(name);
  const std::vector<std::string> expected{"encoder.layers.0.weight",
                                          "encoder.layers.0.bias",
                                          "encoder.layers.1.weight",
                                          "encoder.layers.1.bias",
                                          "encoder.layers.2.weight",
                                          "encoder.layers.2.bias",
                                          "decoder.pos_proj.weight",
                                          "decoder.pos_proj.bias",
                                          "decoder.multihead_attn.in_proj_weight",
                                          "decoder.multihead_attn.in_proj_bias",
                                          "decoder.multihead_attn.out_proj.weight",
                                          "decoder.multihead_attn.out_proj.bias",
                                          "decoder.norm1.weight",
                                          "decoder.norm1.bias",
                                          "decoder.linear1.weight",
                                          "decoder.linear1.bias",
                                          "decoder.linear2.weight",
                                          "decoder.linear2.bias",
                                          "decoder.norm2.weight",
                                          "decoder.norm2.bias",
                                          "predictor.layers.0.weight",
                                          "predictor.layers.0.bias",
                                          "predictor.layers.1.weight",
                                          "predictor.layers.1.bias",
                                          "predictor.layers.2.weight",
                                          "predictor.layers.2.bias",
                                          "student_adapter.weight",
                                          "student_adapter.bias"};
  CHECK(names == expected);
  CHECK(icd.student_adapter().weight().shape() == Shape{8, 4});

  // f32, random queries: one real box in image 0 (6 queries), none in image 1 (1 query).
  std::vector<ImageInstances> gt(2);
  gt[0].size = {32, 40};
  gt[0].boxes = {{4, 4, 20, 28}};
  gt[0].labels = {1};
  gt[1].size = {24, 48};
  Generator data(72);
  const std::vector<Tensor> teacher{randn({2, 8, 4, 6}, data), randn({2, 8, 2, 3}, data)};
  std::vector<Tensor> student{randn({2, 4, 4, 6}, data).set_requires_grad(true),
                              randn({2, 4, 2, 3}, data).set_requires_grad(true)};
  for (int64_t iteration : {9, 10}) {  // detached before warmup_iterations, attached from it on
    student[0].zero_grad();
    Generator sampler(73);
    IcdOutput out = icd.forward({teacher, student, {32, 48}}, gt, iteration, sampler);
    CHECK(out.queries.num_queries == std::vector<int64_t>{6, 1});
    CHECK(out.teacher.logits.shape() == Shape{2, 2, 6, 24 + 6});
    CHECK(std::isfinite(out.total().item()));
    out.total().backward();
    CHECK(student[0].grad().defined() == (iteration >= 10));
    CHECK(icd.student_adapter().weight().grad().defined());
  }

  Generator sampler(74);
  CHECK_THROWS_WITH_AS(icd.forward({teacher, {student[0]}, {32, 48}}, gt, 0, sampler),
                       doctest::Contains("same number of teacher and student levels"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(icd.forward({teacher, {student[1], student[0]}, {32, 48}}, gt, 0, sampler),
                       doctest::Contains("level 0"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(icd.forward({teacher, student, {32, 48}}, {gt[0]}, 0, sampler),
                       doctest::Contains("1 images of queries for a batch of 2"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(icd.forward({teacher, student, {16, 48}}, gt, 0, sampler),
                       doctest::Contains("does not fit the padded size"), std::invalid_argument);
  IcdConfig wrong_classes = config;
  wrong_classes.num_classes = 4;
  CHECK_THROWS_WITH_AS(InstanceConditionalDistiller(wrong_classes, small_prior(), gen),
                       doctest::Contains("prior has 3 classes"), std::invalid_argument);
}

TEST_CASE("feature sequence: flattening order, padding mask and sine embedding by hand; bad input") {
  // Level values encode (b, c, y, x) so the flattened order can be read back.
  std::vector<double> values(2 * 4 * 2 * 3);
  for (std::size_t i = 0; i < values.size(); ++i)
    values[i] = static_cast<double>(i);
  Tensor level = from_vector(values, {2, 4, 2, 3}, kF64);
  Tensor x = flatten_levels({level, level.narrow(2, 0, 1)});
  CHECK(x.shape() == Shape{9, 2, 4});
  const std::vector<double> xv = x.to_vector<double>();
  // X[s = y * 3 + x, b, c] = level[b, c, y, x]: s = 4 (y 1, x 1), b 1, c 2 -> 24 + 12 + 3 + 1.
  CHECK(xv[(4 * 2 + 1) * 4 + 2] == 40.0);
  CHECK(xv[(6 * 2 + 0) * 4 + 1] == 6.0);  // second level, s = 0, b 0, c 1

  // One 1 x 2 level, no padding, 4 channels: P = [sin ye, cos ye, sin xe, cos xe] with f_0 = 1.
  Tensor mask = feature_padding_mask({{1, 2}}, {8, 16}, {{8, 16}}, kF64);
  CHECK(mask.to_vector<double>() == std::vector<double>{0, 0});
  Tensor pe = sine_position_embedding(mask, {{1, 2}}, 4);
  const std::vector<double> p = pe.to_vector<double>();
  const double ye = 1 / (1 + 1e-6) * 2 * M_PI, x0 = 1 / (2 + 1e-6) * 2 * M_PI, x1 = 2 / (2 + 1e-6) * 2 * M_PI;
  const std::vector<double> expected{std::sin(ye), std::cos(ye), std::sin(x0), std::cos(x0),
                                     std::sin(ye), std::cos(ye), std::sin(x1), std::cos(x1)};
  for (std::size_t i = 0; i < 8; ++i)
    CHECK(p[i] == doctest::Approx(expected[i]).epsilon(1e-14));
  // Image 8 x 8 in an 8 x 16 batch: the second column of a 1 x 2 level is padding. Its column has no valid
  // cell (y count 0: sin 0, cos 1); along the row the count stays at 1, as in DETR's cumulative sum.
  Tensor half = feature_padding_mask({{1, 2}}, {8, 16}, {{8, 8}}, kF64);
  CHECK(half.to_vector<double>() == std::vector<double>{0, 1});
  const std::vector<double> ph = sine_position_embedding(half, {{1, 2}}, 4).to_vector<double>();
  CHECK(ph[4] == 0.0);  // sin(0)
  CHECK(ph[5] == 1.0);
  CHECK(ph[2] == doctest::Approx(std::sin(1 / (1 + 1e-6) * 2 * M_PI)).epsilon(1e-14));

  CHECK_THROWS_AS(flatten_levels({}), std::invalid_argument);
  CHECK_THROWS_AS(flatten_levels({zeros({2, 4, 3}, kF64)}), std::invalid_argument);
  CHECK_THROWS_WITH_AS(flatten_levels({level, zeros({2, 5, 1, 1}, kF64)}), doctest::Contains("level 1"),
                       std::invalid_argument);
  CHECK_THROWS_AS(feature_padding_mask({{1, 2}}, {8, 16}, {{9, 16}}, kF64), std::invalid_argument);
  CHECK_THROWS_AS(feature_padding_mask({{0, 2}}, {8, 16}, {{8, 16}}, kF64), std::invalid_argument);
  CHECK_THROWS_AS(sine_position_embedding(mask, {{1, 2}}, 6), std::invalid_argument);
  CHECK_THROWS_AS(sine_position_embedding(mask, {{1, 3}}, 4), std::invalid_argument);
  CHECK_THROWS_AS(make_feature_sequence({level}, {16, 24}, {{16, 24}}), std::invalid_argument);  // B = 2
  Generator gen(81);
  CHECK_THROWS_AS(ConditionalDecoder({.hidden_dim = 8, .num_heads = 3}, gen), std::invalid_argument);
  ConditionalDecoder decoder({.hidden_dim = 4, .num_heads = 2, .ffn_dim = 4}, gen);
  decoder.to(DType::f64);
  FeatureSequence keys = make_feature_sequence({level}, {16, 24}, {{16, 24}, {16, 24}});
  CHECK(decoder.forward(zeros({3, 2, 4}, kF64), keys).decoded.shape() == Shape{3, 2, 4});
  CHECK_THROWS_AS(decoder.forward(zeros({3, 2, 5}, kF64), keys), std::invalid_argument);
  CHECK_THROWS_AS(decoder.forward(zeros({3, 1, 4}, kF64), keys), std::invalid_argument);
}

// ------------------------------------------------------------------------------------------------------------
// FitNet baseline

TEST_CASE("fitnet: matches the reference, gradient check, shared adapter, bad input") {
  testing::Fixture fixture("icd.json");
  testing::FixtureCase c = fixture["fitnet"];
  Generator gen(91);
  FitNetConfig config{.student_channels = 3, .teacher_channels = 4, .num_levels = 2};
  FitNetDistiller fitnet(config, gen);
  fitnet.to(DType::f64);
  load_fixture_weights(fitnet, c);
  std::vector<Tensor> student{c.tensor("student0").set_requires_grad(true),
                              c.tensor("student1").set_requires_grad(true)};
  std::vector<Tensor> teacher{c.tensor("teacher0"), c.tensor("teacher1")};
  Tensor loss = fitnet.forward(student, teacher);
  CHECK(parity_error(loss, c.tensor("loss")) < 1e-10);
  loss.backward();
  CHECK(parity_error(student[0].grad(), c.tensor("grad_student0")) < 1e-10);
  CHECK(parity_error(student[1].grad(), c.tensor("grad_student1")) < 1e-10);
  for (const auto& [name, p] : fitnet.named_parameters())
    CHECK(parity_error(p.grad(), c.tensor("grad_" + name)) < 1e-10);

  CHECK_GRADCHECK(
      [&](const Inputs& x) {
        return fitnet.forward({x[0], x[1]}, teacher);
      },
      with_parameters({random_leaf({2, 3, 2, 3}, 92), random_leaf({2, 3, 1, 2}, 93)}, fitnet));

  FitNetDistiller shared(
      {.student_channels = 3, .teacher_channels = 4, .num_levels = 2, .shared_adapter = true}, gen);
  CHECK(shared.named_parameters().size() == 2);
  CHECK(shared.named_parameters()[0].first == "adapter.weight");
  CHECK(fitnet.named_parameters()[2].first == "adapters.1.weight");
  CHECK_THROWS_AS(fitnet.forward({student[0]}, teacher), std::invalid_argument);
  CHECK_THROWS_WITH_AS(fitnet.forward(student, {teacher[0], teacher[0]}), doctest::Contains("level 1"),
                       std::invalid_argument);
  CHECK_THROWS_AS(FitNetDistiller({.num_levels = 0}, gen), std::invalid_argument);
}

TEST_CASE("IcdObjective: the distiller takes the teacher's dtype and device, and one f64 iteration runs") {
  RetinaNetConfig retinanet = torchvision_retinanet_config(18, 3);
  retinanet.fpn_channels = 16;
  retinanet.head_convs = 1;
  Generator teacher_gen(1), student_gen(2);
  RetinaNet teacher(retinanet, teacher_gen), student(retinanet, student_gen);
  teacher.to(DType::f64);
  student.to(DType::f64);
  IcdConfig config;
  config.num_classes = 3;
  config.hidden_dim = 16;
  config.student_channels = 16;
  config.num_heads = 2;
  config.ffn_dim = 32;
  config.warmup_iterations = 0;
  IcdObjective objective(teacher, config, small_prior(), DistillerOptimizerConfig{.iterations = 4}, 3);
  CHECK(objective.distiller().device() == teacher.device());
  for (const Tensor& p : objective.distiller().parameters())
    CHECK(p.dtype() == DType::f64);

  Generator data(4);
  const TrainingBatch batch{.images = rand({1, 3, 64, 64}, data, {DType::f64}),
                            .targets = {{from_vector(std::vector<double>{4, 6, 40, 50}, {1, 4}, {DType::f64}),
                                         from_vector(std::vector<int64_t>{2}, {1})}},
                            .sizes = {{64, 64}}};
  const NamedLosses losses = objective.losses(student, batch, 1);
  REQUIRE(losses.size() == 5);
  Tensor total;
  for (const auto& [name, loss] : losses) {
    INFO(name);
    CHECK(loss.dtype() == DType::f64);
    CHECK(std::isfinite(loss.item()));
    total = total.defined() ? add(total, loss) : loss;
  }
  total.backward();
  const std::vector<double> before = objective.distiller().student_adapter().weight().to_vector<double>();
  objective.after_backward(1);
  CHECK(objective.distiller().student_adapter().weight().to_vector<double>() != before);  // AdamW stepped

  // The last batch's attention specificity: one real box, so no pairs; one number per level.
  const auto diagnostics = objective.diagnostics();
  REQUIRE(diagnostics.size() == 1 + 5);
  CHECK(diagnostics[0].first == "spec");
  CHECK(diagnostics[0].second > 0);
  CHECK(diagnostics[1].first == "spec_p3");
  CHECK(diagnostics[5].first == "spec_p7");
}

TEST_CASE("FgfiObjective: one f64 iteration with the student's anchors; its adapter steps") {
  RetinaNetConfig retinanet = torchvision_retinanet_config(18, 3);
  retinanet.fpn_channels = 8;
  retinanet.head_convs = 1;
  Generator teacher_gen(1), student_gen(2);
  RetinaNet teacher(retinanet, teacher_gen), student(retinanet, student_gen);
  teacher.to(DType::f64);
  student.to(DType::f64);
  FgfiObjective objective(teacher, FgfiConfig{.student_channels = 8, .teacher_channels = 8},
                          DistillerOptimizerConfig{.iterations = 4}, 3);
  Generator data(4);
  const TrainingBatch batch{.images = rand({1, 3, 64, 64}, data, {DType::f64}),
                            .targets = {{from_vector(std::vector<double>{4, 6, 40, 50}, {1, 4}, {DType::f64}),
                                         from_vector(std::vector<int64_t>{2}, {1})}},
                            .sizes = {{64, 64}}};
  const NamedLosses losses = objective.losses(student, batch, 0);
  REQUIRE(losses.size() == 3);
  CHECK(losses[2].first == "fgfi");
  CHECK(losses[2].second.item() > 0);  // the box selects cells; random maps differ there
  add(add(losses[0].second, losses[1].second), losses[2].second).backward();
  REQUIRE(objective.parameters().size() == 10);  // 5 levels x (weight, bias)
  const std::vector<double> before = objective.parameters()[0].to_vector<double>();
  objective.after_backward(0);
  CHECK(objective.parameters()[0].to_vector<double>() != before);
  CHECK(objective.state().size() > 10);  // adapters and AdamW state
}

TEST_CASE(
    "the rectangle embedding (engine/ops/position.h, the GPU's) equals the mask embedding bit for bit") {
  // Five levels of a 160 x 224 padded batch, three images of different sizes (rectangles of every shape,
  // full, partial and single cells), 16 channels; f64 and f32.
  const std::vector<ImageSize> levels{{20, 28}, {10, 14}, {5, 7}, {3, 4}, {2, 2}};
  const ImageSize padded{160, 224};
  const std::vector<ImageSize> images{{160, 224}, {97, 130}, {12, 200}};
  for (DType dtype : {DType::f64, DType::f32}) {
    CAPTURE(dtype_name(dtype));
    const Tensor mask = feature_padding_mask(levels, padded, images, {dtype});
    const Tensor from_mask = sine_position_embedding(mask, levels, 16);
    // The extents the mask has: per image and level, the valid rows and cols.
    std::vector<std::vector<ImageSize>> extents;
    const std::vector<double> m = mask.to_vector<double>();
    const int64_t S = mask.size(1);
    for (int64_t b = 0; b < 3; ++b) {
      std::vector<ImageSize> per_level;
      int64_t start = 0;
      for (const ImageSize& level : levels) {
        int64_t rows = 0, cols = 0;
        for (int64_t y = 0; y < level.height; ++y)
          for (int64_t x = 0; x < level.width; ++x)
            if (m[static_cast<std::size_t>(b * S + start + y * level.width + x)] == 0.0) {
              rows = std::max(rows, y + 1);
              cols = std::max(cols, x + 1);
            }
        per_level.push_back({rows, cols});
        start += level.height * level.width;
      }
      extents.push_back(per_level);
    }
    CHECK(extents[2][0] == ImageSize{2, 25});  // 12 x 200 pixels at stride 8: ceil(12 / 8), ceil(200 / 8)
    const Tensor rect = sine_position_embedding_rect(levels, extents, 16, {dtype});
    CHECK(rect.shape() == from_mask.shape());
    if (dtype == DType::f64)
      CHECK(rect.to_vector<double>() == from_mask.to_vector<double>());
    else
      CHECK(rect.to_vector<float>() == from_mask.to_vector<float>());
  }
  CHECK_THROWS_WITH_AS(sine_position_embedding_rect(levels, {{{1, 1}}}, 16), doctest::Contains("image 0"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(sine_position_embedding_rect({{2, 2}}, {{{3, 1}}}, 16),
                       doctest::Contains("does not fit"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(sine_position_embedding_rect({{2, 2}}, {{{1, 1}}}, 6),
                       doctest::Contains("multiple of 4"), std::invalid_argument);
}

// ------------------------------------------------------------------------------------------------------------
// Attention specificity

namespace {

// Logits [1, H, L, S] from per-(head, query) rows of S values (-inf where given as such).
Tensor logits_of(const std::vector<std::vector<std::vector<double>>>& rows) {
  std::vector<double> values;
  for (const auto& head : rows)
    for (const auto& query : head)
      values.insert(values.end(), query.begin(), query.end());
  const auto H = static_cast<int64_t>(rows.size()), L = static_cast<int64_t>(rows[0].size()),
             S = static_cast<int64_t>(rows[0][0].size());
  return from_vector(values, {1, H, L, S}, {DType::f64});
}

std::vector<double> one_hot_logits(int64_t S, int64_t hot) {
  std::vector<double> row(static_cast<std::size_t>(S), -INFINITY);
  row[static_cast<std::size_t>(hot)] = 0.0;
  return row;
}

}  // namespace

TEST_CASE("attention specificity: own box, other boxes and levels by hand") {
  // One 4 x 4 level of stride 8 over a 32 x 32 image: cell (r, c) covers [8c, 8c + 8) x [8r, 8r + 8).
  const std::vector<ImageSize> level{{4, 4}};
  ImageQueries image{.size = {32, 32}};
  image.queries = {{.box = {0, 0, 16, 16}}, {.box = {16, 16, 32, 32}}, {.box = {4, 0, 16, 8}}};
  image.num_real = 2;  // the third is fake: not measured, not a "other box"
  const std::vector<double> uniform(16, 0.0);
  // Query 0 looks only at cell (0, 0), inside its box (share 1/4): specificity 4. Query 1 spreads evenly:
  // 1/4 of its mass in its own quarter, specificity 1. Cross: query 0 has nothing in box 1 (0), query 1 has
  // 1/4 in box 0 (1): mean 0.5.
  AttentionSpecificity s =
      attention_specificity(logits_of({{one_hot_logits(16, 0), uniform, uniform}}), level, {32, 32}, {image});
  CHECK(s.num_queries == 2);
  CHECK(s.num_pairs == 2);
  CHECK(s.per_query == std::vector<double>{4.0, 1.0});
  CHECK(s.overall == doctest::Approx(2.5).epsilon(1e-14));
  CHECK(s.cross == doctest::Approx(0.5).epsilon(1e-14));
  // The rank: query 0 scores 4 on its own box and 0 on box 1 (first); query 1 scores 1 on both (a tie is
  // not first). Chance with two boxes: 1/2.
  CHECK(s.num_ranked == 2);
  CHECK(s.own_first == 0.5);
  CHECK(s.own_first_chance == 0.5);
  REQUIRE(s.per_level.size() == 1);
  CHECK(s.per_level[0] == doctest::Approx(2.5).epsilon(1e-14));

  // A box that covers part of a cell gets that part of its mass: box [4, 16) x [0, 8) holds half of cell
  // (0, 0), the only cell with mass: 0.5 / (96 / 1024).
  image.queries[0].box = {4, 0, 16, 8};
  s = attention_specificity(logits_of({{one_hot_logits(16, 0), uniform}}), level, {32, 32}, {image});
  CHECK(s.per_query[0] == doctest::Approx(0.5 / (96.0 / 1024.0)).epsilon(1e-14));

  // Heads are averaged: one head on cell (0, 0), one spread evenly over 16 cells.
  image.queries[0].box = {0, 0, 8, 8};
  s = attention_specificity(logits_of({{one_hot_logits(16, 0), uniform}, {uniform, uniform}}), level,
                            {32, 32}, {image});
  CHECK(s.per_query[0] == doctest::Approx((0.5 + 0.5 / 16) / (64.0 / 1024.0)).epsilon(1e-14));

  // Two levels: the per-level numbers renormalise each level's mass; padded positions (-inf) hold none.
  const std::vector<ImageSize> levels{{4, 4}, {2, 2}};
  std::vector<double> row(20, -INFINITY);
  row[0] = 0.0;                                 // level 0, cell (0, 0): inside box [0, 8) x [0, 8)
  row[16] = 0.0, row[17] = 0.0, row[18] = 0.0;  // level 1: cells (0, 0), (0, 1), (1, 0); (1, 1) padded
  ImageQueries one{.queries = {{.box = {0, 0, 8, 8}}}, .num_real = 1, .size = {32, 32}};
  s = attention_specificity(logits_of({{row}}), levels, {32, 32}, {one});
  // Mass 1/4 on each of 4 positions; level 1's cell (0, 0) covers [0, 16)^2, a quarter of it in the box.
  const double share = 64.0 / 1024.0;
  CHECK(s.per_query[0] == doctest::Approx((0.25 + 0.25 * 0.25) / share).epsilon(1e-14));
  CHECK(s.per_level[0] == doctest::Approx(1.0 / share).epsilon(1e-14));
  CHECK(s.per_level[1] == doctest::Approx((0.25 * 0.25 / 0.75) / share).epsilon(1e-14));
  CHECK(s.num_pairs == 0);
  CHECK(s.cross == 0.0);
  CHECK(s.num_ranked == 0);  // one box: nothing to rank against
  CHECK(s.own_first == 0.0);

  // combine() weighs by queries and pairs: {16, 1} from the first image, {0} from the second (its mass sits
  // on cell (1, 1), outside its box).
  const AttentionSpecificity both =
      combine({attention_specificity(logits_of({{one_hot_logits(16, 0), uniform}}), level, {32, 32}, {image}),
               attention_specificity(logits_of({{one_hot_logits(16, 5)}}), level, {32, 32}, {one})});
  CHECK(both.num_queries == 3);
  CHECK(both.per_query.size() == 3);
  CHECK(both.overall == doctest::Approx((16.0 + 1.0 + 0.0) / 3).epsilon(1e-14));
  CHECK(both.per_level[0] == doctest::Approx((16.0 + 1.0 + 0.0) / 3).epsilon(1e-14));
  CHECK(both.num_pairs == 2);  // the second image has one box: no pairs, no weight in cross
  CHECK(both.cross == doctest::Approx(0.5).epsilon(1e-14));
  CHECK(both.num_ranked == 2);  // and no weight in the rank
  CHECK(both.own_first == 0.5);
  CHECK(both.own_first_chance == 0.5);

  // Three boxes, each query looking only at the cell of the next query's box: nobody's own box is first,
  // while objectness-like scores (every box > 0) stay high. Chance: 1/3.
  ImageQueries three{.size = {32, 32}};
  three.queries = {{.box = {0, 0, 8, 8}}, {.box = {8, 0, 16, 8}}, {.box = {16, 0, 24, 8}}};
  three.num_real = 3;
  s = attention_specificity(
      logits_of({{one_hot_logits(16, 1), one_hot_logits(16, 2), one_hot_logits(16, 0)}}), level, {32, 32},
      {three});
  CHECK(s.num_ranked == 3);
  CHECK(s.own_first == 0.0);
  CHECK(s.own_first_chance == doctest::Approx(1.0 / 3).epsilon(1e-14));
  s = attention_specificity(
      logits_of({{one_hot_logits(16, 0), one_hot_logits(16, 1), one_hot_logits(16, 2)}}), level, {32, 32},
      {three});
  CHECK(s.own_first == 1.0);

  CHECK_THROWS_WITH_AS(attention_specificity(logits_of({{row}}), level, {32, 32}, {one}),
                       doctest::Contains("positions"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(attention_specificity(logits_of({{row}}), levels, {32, 32}, {one, one}),
                       doctest::Contains("B = 2"), std::invalid_argument);
  ImageQueries too_many = one;
  too_many.num_real = 2;
  CHECK_THROWS_AS(attention_specificity(logits_of({{row}}), levels, {32, 32}, {too_many}),
                  std::invalid_argument);
}

TEST_CASE("a pretrained decoder loads into a distiller's encoder, decoder and predictor, not its adapter") {
  IcdConfig config{.num_classes = 3, .hidden_dim = 8, .student_channels = 4, .num_heads = 2, .ffn_dim = 16};
  Generator a_gen(1), b_gen(2);
  InstanceConditionalDistiller pretrained(config, small_prior(), a_gen),
      student_side(config, small_prior(), b_gen);
  const std::vector<double> adapter = student_side.student_adapter().weight().to_vector<double>();
  load_pretrained_decoder(student_side, pretrained.state_dict());
  const NamedTensors expected = pretrained.state_dict(), got = student_side.state_dict();
  REQUIRE(expected.size() == got.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    INFO(got[i].first);
    if (got[i].first.starts_with("student_adapter."))
      CHECK(got[i].second.to_vector<double>() != expected[i].second.to_vector<double>());
    else
      CHECK(got[i].second.to_vector<double>() == expected[i].second.to_vector<double>());
  }
  CHECK(student_side.student_adapter().weight().to_vector<double>() == adapter);

  IcdConfig wider = config;
  wider.ffn_dim = 32;
  Generator c_gen(3);
  InstanceConditionalDistiller other(wider, small_prior(), c_gen);
  CHECK_THROWS_WITH_AS(load_pretrained_decoder(student_side, other.state_dict()),
                       doctest::Contains("decoder."), std::runtime_error);
}
