// Part of test_cuda_parity (its main skips the whole binary without a GPU): a whole RetinaNet training
// step and its inference on the GPU against the same model on the CPU. Two models built from the same seed
// see the same image and boxes; the GPU one is moved with Module::to(Device). On the GPU everything but
// the final NMS walk runs there: backbone, FPN, head, the anchor assignment (IoU, matcher, anchor lists,
// box encoding), focal and L1 losses, backward, and the ranking and decoding of detections. f64
// throughout, so the comparison is of algorithms, not of f32 rounding orders.
#include <doctest/doctest.h>

#if defined(ICD_WITH_CUDA)
#include <algorithm>
#include <cmath>
#include <vector>

#include "cuda_parity.h"
#include "engine/autograd.h"
#include "engine/factory.h"
#include "engine/ops/elementwise.h"
#include "engine/random.h"
#include "engine/transfer.h"
#include "models/retinanet.h"

using namespace icd;
using testing::kGpu;
using testing::scaled_difference;

namespace {

RetinaNetConfig small_config() {
  RetinaNetConfig config = torchvision_retinanet_config(18, 5);
  config.fpn_channels = 32;
  config.head_convs = 2;
  return config;
}

}  // namespace

TEST_CASE("a RetinaNet training step and its detections on the GPU match the CPU (f64)") {
  const RetinaNetConfig config = small_config();
  Generator cpu_gen(3), gpu_gen(3);
  RetinaNet cpu_model(config, cpu_gen), gpu_model(config, gpu_gen);
  cpu_model.to(DType::f64);
  gpu_model.to(DType::f64);
  gpu_model.to(kGpu);
  cpu_model.train();
  gpu_model.train();

  Generator data(4);
  const Tensor image = rand({1, 3, 96, 128}, data, {DType::f64});
  const std::vector<TargetBoxes> targets{
      {from_vector(std::vector<double>{8, 10, 60, 70, 50, 20, 120, 90}, {2, 4}, {DType::f64}),
       from_vector(std::vector<int64_t>{1, 3}, {2})}};

  RetinaNetOutputs cpu_out = cpu_model.forward(image);
  RetinaNetOutputs gpu_out = gpu_model.forward(to_device(image, kGpu));
  CHECK(gpu_out.cls_logits.device() == kGpu);
  CHECK(scaled_difference(cpu_out.cls_logits, gpu_out.cls_logits) < 1e-10);
  CHECK(scaled_difference(cpu_out.bbox_deltas, gpu_out.bbox_deltas) < 1e-10);

  RetinaNetLosses cpu_losses = cpu_model.losses(cpu_out, targets);
  RetinaNetLosses gpu_losses = gpu_model.losses(gpu_out, targets);
  CHECK(gpu_losses.num_foreground == cpu_losses.num_foreground);
  CHECK(scaled_difference(cpu_losses.classification, gpu_losses.classification) < 1e-10);
  CHECK(scaled_difference(cpu_losses.box_regression, gpu_losses.box_regression) < 1e-10);
  add(cpu_losses.classification, cpu_losses.box_regression).backward();
  add(gpu_losses.classification, gpu_losses.box_regression).backward();

  const NamedTensors cpu_params = cpu_model.named_parameters(), gpu_params = gpu_model.named_parameters();
  REQUIRE(cpu_params.size() == gpu_params.size());
  for (std::size_t i = 0; i < cpu_params.size(); ++i) {
    const Tensor& cpu_p = cpu_params[i].second;
    if (!cpu_p.grad().defined()) continue;  // frozen stem and layer1
    INFO(cpu_params[i].first);
    REQUIRE(gpu_params[i].second.grad().defined());
    CHECK(scaled_difference(cpu_p.grad(), gpu_params[i].second.grad()) < 1e-9);
  }

  // Inference: the same detections (decoding and NMS run on the host for both).
  cpu_model.eval();
  gpu_model.eval();
  NoGradGuard no_grad;
  const std::vector<ImageSizes> sizes{{96, 128, 96, 128}};
  const std::vector<Detections> cpu_detections = cpu_model.detect(cpu_model.forward(image), sizes);
  const std::vector<Detections> gpu_detections =
      gpu_model.detect(gpu_model.forward(to_device(image, kGpu)), sizes);
  REQUIRE(gpu_detections.size() == 1);
  CHECK(gpu_detections[0].labels.to_vector<int64_t>() == cpu_detections[0].labels.to_vector<int64_t>());
  CHECK(scaled_difference(cpu_detections[0].boxes, gpu_detections[0].boxes) < 1e-9);
  CHECK(scaled_difference(cpu_detections[0].scores, gpu_detections[0].scores) < 1e-9);
}

#endif  // ICD_WITH_CUDA
