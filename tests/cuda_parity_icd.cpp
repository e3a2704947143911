// Part of test_cuda_parity (its main skips the whole binary without a GPU): one ICD distillation iteration
// (distill/objectives.h IcdObjective, as apps/distill_retinanet trains it) on the GPU against the same on
// the CPU. Teachers, students and distillers built from the same seeds; the fake instances and jitter are
// drawn on the host from the same iteration stream, so both devices see the same queries. Compared: every
// loss, every student gradient, and the distiller's weights after its clipped AdamW step. f64 throughout.
#include <doctest/doctest.h>

#if defined(ICD_WITH_CUDA)
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "cuda_parity.h"
#include "distill/conditional_decoder.h"
#include "distill/objectives.h"
#include "engine/checkpoint.h"
#include "engine/factory.h"
#include "engine/ops/elementwise.h"
#include "engine/optim/sgd.h"
#include "engine/random.h"
#include "engine/transfer.h"
#include "models/retinanet.h"
#include "temp_dir.h"

using namespace icd;
using testing::kGpu;
using testing::scaled_difference;

namespace {

constexpr int64_t kClasses = 5;

std::unique_ptr<RetinaNet> small_retinanet(uint64_t seed, Device device) {
  RetinaNetConfig config = torchvision_retinanet_config(18, kClasses);
  config.fpn_channels = 32;
  config.head_convs = 2;
  Generator gen(seed);
  auto model = std::make_unique<RetinaNet>(config, gen);
  model->to(DType::f64);
  model->to(device);
  return model;
}

IcdConfig small_icd() {
  IcdConfig config;
  config.num_classes = kClasses;
  config.hidden_dim = 32;
  config.student_channels = 32;
  config.num_heads = 4;
  config.ffn_dim = 64;
  config.warmup_iterations = 0;  // the distillation gradient reaches the student's features
  return config;
}

}  // namespace

TEST_CASE("an ICD distillation iteration on the GPU matches the CPU: losses, gradients, the AdamW step") {
  Generator data(8);
  TrainingBatch cpu_batch{
      .images = rand({1, 3, 96, 128}, data, {DType::f64}),
      .targets = {{from_vector(std::vector<double>{8, 10, 60, 70, 50, 20, 120, 90}, {2, 4}, {DType::f64}),
                   from_vector(std::vector<int64_t>{1, 3}, {2})}},
      .sizes = {{96, 128}}};
  TrainingBatch gpu_batch = cpu_batch;
  gpu_batch.images = to_device(cpu_batch.images, kGpu);
  const FakeInstancePrior prior = FakeInstancePrior::from_annotations(image_instances(cpu_batch), kClasses);

  auto cpu_teacher = small_retinanet(5, Device::cpu()), gpu_teacher = small_retinanet(5, kGpu);
  auto cpu_student = small_retinanet(6, Device::cpu()), gpu_student = small_retinanet(6, kGpu);
  cpu_student->train();
  gpu_student->train();
  IcdObjective cpu_icd(*cpu_teacher, small_icd(), prior, DistillerOptimizerConfig{.iterations = 10}, 7);
  IcdObjective gpu_icd(*gpu_teacher, small_icd(), prior, DistillerOptimizerConfig{.iterations = 10}, 7);
  CHECK(gpu_icd.distiller().device() == kGpu);

  const int64_t iteration = 2;
  const NamedLosses cpu_losses = cpu_icd.losses(*cpu_student, cpu_batch, iteration);
  const NamedLosses gpu_losses = gpu_icd.losses(*gpu_student, gpu_batch, iteration);
  REQUIRE(cpu_losses.size() == gpu_losses.size());
  Tensor cpu_total, gpu_total;
  for (std::size_t i = 0; i < cpu_losses.size(); ++i) {
    INFO(cpu_losses[i].first);
    CHECK(gpu_losses[i].first == cpu_losses[i].first);
    CHECK(gpu_losses[i].second.device() == kGpu);
    CHECK(scaled_difference(cpu_losses[i].second, gpu_losses[i].second) < 1e-10);
    cpu_total = cpu_total.defined() ? add(cpu_total, cpu_losses[i].second) : cpu_losses[i].second;
    gpu_total = gpu_total.defined() ? add(gpu_total, gpu_losses[i].second) : gpu_losses[i].second;
  }
  cpu_total.backward();
  gpu_total.backward();

  const NamedTensors cpu_params = cpu_student->named_parameters(),
                     gpu_params = gpu_student->named_parameters();
  REQUIRE(cpu_params.size() == gpu_params.size());
  for (std::size_t i = 0; i < cpu_params.size(); ++i) {
    if (!cpu_params[i].second.grad().defined()) continue;  // frozen stem and layer1
    INFO(cpu_params[i].first);
    REQUIRE(gpu_params[i].second.grad().defined());
    CHECK(scaled_difference(cpu_params[i].second.grad(), gpu_params[i].second.grad()) < 1e-9);
  }

  cpu_icd.after_backward(iteration);  // global-norm clip, cosine lr, AdamW, zero_grad
  gpu_icd.after_backward(iteration);
  const NamedTensors cpu_state = cpu_icd.state(), gpu_state = gpu_icd.state();
  REQUIRE(cpu_state.size() == gpu_state.size());
  for (std::size_t i = 0; i < cpu_state.size(); ++i) {
    INFO(cpu_state[i].first);
    CHECK(gpu_state[i].first == cpu_state[i].first);
    CHECK(scaled_difference(cpu_state[i].second, gpu_state[i].second) < 1e-9);
  }
}

TEST_CASE("the feature sequence on the GPU: the position embedding computed there matches the CPU's table") {
  Generator gen(12);
  std::vector<Tensor> cpu_levels, gpu_levels;
  for (const auto& [h, w] :
       std::vector<std::pair<int64_t, int64_t>>{{20, 28}, {10, 14}, {5, 7}, {3, 4}, {2, 2}}) {
    cpu_levels.push_back(randn({3, 32, h, w}, gen, {DType::f64}));
    gpu_levels.push_back(to_device(cpu_levels.back(), kGpu));
  }
  const std::vector<ImageSize> images{{160, 224}, {97, 130}, {12, 200}};
  const FeatureSequence cpu = make_feature_sequence(cpu_levels, {160, 224}, images);
  const FeatureSequence gpu = make_feature_sequence(gpu_levels, {160, 224}, images);
  CHECK(gpu.position.device() == kGpu);
  CHECK(scaled_difference(cpu.features, gpu.features) == 0);
  CHECK(scaled_difference(cpu.padding_mask, gpu.padding_mask) == 0);
  CHECK(scaled_difference(cpu.position, gpu.position) < 1e-12);  // the device's sin, cos and pow
}

TEST_CASE("a checkpoint of GPU tensors round-trips through the host into a model and optimizer on the GPU") {
  auto source = small_retinanet(9, kGpu), target = small_retinanet(10, kGpu);
  source->train();
  Sgd source_sgd(source->trainable_parameters(), SgdOptions{.lr = 0.01, .momentum = 0.9});
  Generator data(11);
  const Tensor image = to_device(rand({1, 3, 64, 64}, data, {DType::f64}), kGpu);
  const std::vector<TargetBoxes> targets{
      {from_vector(std::vector<double>{4, 6, 40, 50}, {1, 4}, {DType::f64}),
       from_vector(std::vector<int64_t>{2}, {1})}};
  RetinaNetLosses losses = source->losses(source->forward(image), targets);
  add(losses.classification, losses.box_regression).backward();
  source_sgd.step();

  testing::TempDir dir("gpu_checkpoint");
  const std::string path = (dir.path() / "checkpoint.safetensors").string();
  NamedTensors all = source->state_dict();
  for (const auto& [name, t] : source_sgd.state())
    all.emplace_back("optimizer." + name, t);
  save_checkpoint(path, all);  // GPU tensors, written through the host
  const Checkpoint loaded = load_checkpoint(path);
  NamedTensors weights, optimizer_state;
  for (const auto& [name, t] : loaded.tensors) {
    CHECK(t.device().is_cpu());
    if (name.starts_with("optimizer."))
      optimizer_state.emplace_back(name.substr(10), t);
    else
      weights.emplace_back(name, t);
  }
  target->load_state_dict(weights);  // host tensors into a GPU model
  Sgd target_sgd(target->trainable_parameters(), SgdOptions{.lr = 0.01, .momentum = 0.9});
  target_sgd.load_state(optimizer_state);
  const NamedTensors a = source->state_dict(), b = target->state_dict();
  for (std::size_t i = 0; i < a.size(); ++i) {
    INFO(a[i].first);
    CHECK(b[i].second.device() == kGpu);
    CHECK(scaled_difference(a[i].second, b[i].second) == 0);
  }
  const NamedTensors sa = source_sgd.state(), sb = target_sgd.state();
  REQUIRE(sa.size() == sb.size());
  for (std::size_t i = 0; i < sa.size(); ++i) {
    INFO(sa[i].first);
    CHECK(sb[i].second.device() == kGpu);
    CHECK(scaled_difference(sa[i].second, sb[i].second) == 0);
  }
}

#endif  // ICD_WITH_CUDA
