// Part of test_cuda_parity (its main skips the whole binary without a GPU): box geometry on the GPU
// (engine/cuda/box.cu) against the CPU. IoU, the matcher, the anchor lists and NMS use only comparisons,
// +, -, * and / (the kernels are built without FMA contraction), so they must agree exactly; encoding and
// decoding call log and exp, whose last bits may differ between CUDA and the host's libm. And the
// postprocessing's candidates when some scores are NaN.
#include <doctest/doctest.h>

#if defined(ICD_WITH_CUDA)
#include <cmath>
#include <limits>
#include <utility>
#include <vector>

#include "cuda_parity.h"
#include "engine/factory.h"
#include "engine/ops/elementwise.h"
#include "engine/random.h"
#include "engine/transfer.h"
#include "models/box_coder.h"
#include "models/matcher.h"
#include "models/nms.h"
#include "models/retinanet_postprocess.h"

using namespace icd;
using testing::host_values;
using testing::kGpu;
using testing::scaled_difference;

namespace {

// n boxes inside a 100 x 80 image. On a coarse grid (exact: many equal IoUs, so ties matter, and some
// empty boxes) or with fractional corners, whose IoUs round: a fused multiply-add on one device only
// would show there.
Tensor random_boxes(int64_t n, Generator& gen, DType dtype, bool on_grid) {
  auto coordinate = [&](double cells) {
    return on_grid ? std::floor(gen.uniform() * cells) * 4 : gen.uniform() * cells * 4;
  };
  std::vector<double> v;
  for (int64_t i = 0; i < n; ++i) {
    const double x = coordinate(20), y = coordinate(16), w = coordinate(8), h = coordinate(8);
    v.insert(v.end(), {x, y, x + w, y + h});
  }
  return from_vector(v, {n, 4}, {dtype});
}

Tensor class_ids(int64_t n, int64_t classes, Generator& gen) {
  std::vector<int64_t> v(n);
  for (int64_t& c : v)
    c = static_cast<int64_t>(gen.uniform() * classes) % classes;
  return from_vector(v, {n});
}

}  // namespace

TEST_CASE("pairwise IoU and the matcher on the GPU equal the CPU's, ties and empty boxes included") {
  Generator gen(31);
  for (const auto& [dtype, on_grid] : {std::pair{DType::f32, true}, std::pair{DType::f64, true},
                                       std::pair{DType::f32, false}, std::pair{DType::f64, false}}) {
    CAPTURE(dtype_name(dtype));
    CAPTURE(on_grid);
    const Tensor anchors = random_boxes(3000, gen, dtype, on_grid),
                 boxes = random_boxes(9, gen, dtype, on_grid);
    const Tensor iou = pairwise_iou(boxes, anchors);
    const Tensor gpu_iou = pairwise_iou(to_device(boxes, kGpu), to_device(anchors, kGpu));
    CHECK(gpu_iou.device() == kGpu);
    CHECK(host_values(gpu_iou) == host_values(iou));
    for (bool low_quality : {true, false}) {
      CAPTURE(low_quality);
      MatcherConfig config;
      config.allow_low_quality_matches = low_quality;
      const MatchResult cpu = match_anchors(iou, config), gpu = match_anchors(gpu_iou, config);
      CHECK(gpu.labels.device() == kGpu);
      CHECK(host_values(gpu.labels) == host_values(cpu.labels));
      CHECK(host_values(gpu.matched) == host_values(cpu.matched));

      const Tensor classes = class_ids(9, 5, gen);
      const AnchorSelection a = select_anchors(cpu, classes, dtype);
      const AnchorSelection b = select_anchors(gpu, to_device(classes, kGpu), dtype);
      CHECK(b.kept.device() == kGpu);
      CHECK(host_values(b.kept) == host_values(a.kept));
      CHECK(host_values(b.kept_classes) == host_values(a.kept_classes));
      CHECK(host_values(b.foreground) == host_values(a.foreground));
      CHECK(host_values(b.foreground_boxes) == host_values(a.foreground_boxes));
    }
    const MatchResult none = match_anchors(zeros({0, 5}, {dtype, kGpu}));
    CHECK(host_values(none.labels) == std::vector<double>(5, 0.0));
  }
  Tensor bad = zeros({2, 3}, {DType::f32});
  bad.data<float>()[4] = std::numeric_limits<float>::quiet_NaN();
  CHECK_THROWS_AS(match_anchors(to_device(bad, kGpu)), std::invalid_argument);
  bad.data<float>()[4] = -0.5f;
  CHECK_THROWS_AS(match_anchors(to_device(bad, kGpu)), std::invalid_argument);
}

TEST_CASE("box encoding and decoding on the GPU match the CPU to the last bits of log and exp") {
  Generator gen(32);
  for (DType dtype : {DType::f32, DType::f64}) {
    CAPTURE(dtype_name(dtype));
    const double tolerance = dtype == DType::f64 ? 1e-14 : 1e-6;
    Tensor anchors = random_boxes(500, gen, dtype, false), boxes = random_boxes(500, gen, dtype, false);
    anchors = add(anchors, from_vector(std::vector<double>{0, 0, 3, 3}, {1, 4}, {dtype}));  // no empty ones
    boxes = add(boxes, from_vector(std::vector<double>{0, 0, 2, 1}, {1, 4}, {dtype}));
    BoxCoderConfig config;
    config.weights = {10, 10, 5, 5};
    const BoxCoder coder(config);
    const Tensor deltas = coder.encode(anchors, boxes);
    const Tensor gpu_deltas = coder.encode(to_device(anchors, kGpu), to_device(boxes, kGpu));
    CHECK(gpu_deltas.device() == kGpu);
    CHECK(scaled_difference(deltas, gpu_deltas) < tolerance);
    // Wild deltas too, so the clamp before exp() is exercised.
    const Tensor wild = mul(randn({500, 4}, gen, {dtype}), 8.0);
    const Tensor decoded = coder.decode(wild, anchors);
    const Tensor gpu_decoded = coder.decode(to_device(wild, kGpu), to_device(anchors, kGpu));
    CHECK(scaled_difference(decoded, gpu_decoded) < tolerance);
  }
}

TEST_CASE("NMS on the GPU keeps the CPU's boxes in the CPU's order") {
  Generator gen(33);
  for (const auto& [dtype, on_grid] : {std::pair{DType::f32, true}, std::pair{DType::f64, true},
                                       std::pair{DType::f32, false}, std::pair{DType::f64, false}}) {
    CAPTURE(dtype_name(dtype));
    CAPTURE(on_grid);
    for (int64_t n : {1, 63, 64, 65, 1500}) {
      CAPTURE(n);
      const Tensor boxes = random_boxes(n, gen, dtype, on_grid);
      std::vector<double> s(n);
      for (double& v : s)
        v = std::floor(gen.uniform() * 50) / 50;  // tied scores
      const Tensor scores = from_vector(s, {n}, {dtype}), classes = class_ids(n, 4, gen);
      const Tensor gpu_boxes = to_device(boxes, kGpu), gpu_scores = to_device(scores, kGpu);
      for (double threshold : {0.3, 0.5}) {
        const Tensor kept = nms(gpu_boxes, gpu_scores, threshold);
        CHECK(kept.device() == kGpu);
        CHECK(host_values(kept) == host_values(nms(boxes, scores, threshold)));
        CHECK(host_values(batched_nms(gpu_boxes, gpu_scores, to_device(classes, kGpu), threshold)) ==
              host_values(batched_nms(boxes, scores, classes, threshold)));
      }
    }
  }
  std::vector<double> s = {0.5, std::nan(""), 0.2};
  CHECK_THROWS_AS(nms(zeros({3, 4}, {DType::f64, kGpu}), to_device(from_vector(s, {3}), kGpu), 0.5),
                  std::invalid_argument);
  CHECK(nms(zeros({0, 4}, {DType::f32, kGpu}), zeros({0}, {DType::f32, kGpu}), 0.5).numel() == 0);
}
TEST_CASE("postprocessing on the GPU keeps the CPU's detections when some scores are NaN") {
  // One level of 200 anchors x 3 classes, f64. Logits are well apart (steps of 0.25), so the ranking does
  // not hinge on the last bit of sigmoid; 30 NaNs sit among them. With topk_candidates 20 the NaNs would
  // crowd out real candidates if the GPU's ranking did not make room for them (the CPU drops NaN scores
  // before ranking).
  Generator gen(34);
  const int64_t anchors = 200, classes = 3;
  std::vector<double> logits(anchors * classes);
  for (std::size_t i = 0; i < logits.size(); ++i)
    logits[i] = -6.0 + 0.25 * static_cast<double>((i * 7919) % 48);
  for (int i = 0; i < 30; ++i)
    logits[static_cast<std::size_t>(i * 19 + 3)] = std::nan("");
  const Tensor cls = from_vector(logits, {1, anchors, classes}, {DType::f64});
  const Tensor deltas = mul(randn({1, anchors, 4}, gen, {DType::f64}), 0.1);
  const Anchors a{random_boxes(anchors, gen, DType::f64, false), {anchors}};
  const Tensor boxes = add(a.boxes, from_vector(std::vector<double>{0, 0, 4, 4}, {1, 4}, {DType::f64}));
  const Anchors cpu_anchors{boxes, {anchors}}, gpu_anchors{to_device(boxes, kGpu), {anchors}};
  RetinaNetPostprocessConfig config;
  config.topk_candidates = 20;
  const std::vector<ImageSizes> sizes = {{80, 100, 80, 100}};
  const Detections cpu = postprocess_detections(cls, deltas, cpu_anchors, sizes, config)[0];
  const Detections gpu =
      postprocess_detections(to_device(cls, kGpu), to_device(deltas, kGpu), gpu_anchors, sizes, config)[0];
  REQUIRE(cpu.labels.numel() > 0);
  CHECK(host_values(gpu.labels) == host_values(cpu.labels));
  CHECK(scaled_difference(cpu.scores, gpu.scores) < 1e-14);
  CHECK(scaled_difference(cpu.boxes, gpu.boxes) < 1e-14);
}
#endif  // ICD_WITH_CUDA
