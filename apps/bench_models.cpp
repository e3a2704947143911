#include "apps/bench_models.h"

#include <memory>

#include "distill/objectives.h"
#include "engine/autograd.h"
#include "engine/factory.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/loss.h"
#include "engine/optim/clip_grad.h"
#include "engine/optim/sgd.h"
#include "engine/profiler.h"
#include "engine/transfer.h"
#include "models/resnet.h"
#include "models/retinanet.h"
#include "models/training_objective.h"

namespace icd::bench {
namespace {

constexpr SgdOptions kSgd{.lr = 0.01, .momentum = 0.9, .weight_decay = 1e-4};

std::function<void()> resnet_step(int depth, bool train, Device device) {
  Generator gen(0);
  auto model = std::make_shared<ResNet>(
      ResNetConfig{.depth = depth, .norm = NormKind::batch_norm, .num_classes = 1000}, gen);
  model->to(device);
  auto images = std::make_shared<Tensor>(to_device(randn({2, 3, 224, 224}, gen), device));
  if (!train) {
    model->eval();
    return [model, images] {
      NoGradGuard no_grad;
      model->forward(*images);
    };
  }
  model->train();
  auto labels = std::make_shared<Tensor>(to_device(from_vector(std::vector<int64_t>{1, 7}, {2}), device));
  auto optimizer = std::make_shared<Sgd>(model->parameters(), kSgd);
  return [model, images, labels, optimizer] {
    optimizer->zero_grad();
    cross_entropy(model->forward(*images).logits, *labels).backward();
    profiler::Section section("optimizer step");
    optimizer->step();
  };
}

// The ground truth of every detection step: three boxes (given for 320 x 320, scaled to size x size).
std::vector<TargetBoxes> three_boxes(int64_t size) {
  const double s = static_cast<double>(size) / 320.0;
  std::vector<double> boxes{10, 20, 110, 140, 150, 60, 300, 200, 40, 200, 90, 290};
  for (double& v : boxes)
    v *= s;
  return {{from_vector(boxes, {3, 4}), from_vector(std::vector<int64_t>{1, 5, 7}, {3})}};
}

std::function<void()> retinanet_step(int depth, int64_t size, bool train, Device device) {
  Generator gen(0);
  auto model = std::make_shared<RetinaNet>(torchvision_retinanet_config(depth, 91), gen);
  model->to(device);
  auto images = std::make_shared<Tensor>(to_device(rand({1, 3, size, size}, gen), device));
  if (!train) {
    model->eval();
    return [model, images, size] {
      NoGradGuard no_grad;
      model->detect(model->forward(*images), {{size, size, size, size}});
    };
  }
  model->train();
  auto targets = std::make_shared<std::vector<TargetBoxes>>(three_boxes(size));
  auto optimizer = std::make_shared<Sgd>(model->trainable_parameters(), kSgd);
  return [model, images, targets, optimizer] {
    optimizer->zero_grad();
    RetinaNetLosses losses = model->losses(model->forward(*images), *targets);
    add(losses.classification, losses.box_regression).backward();
    profiler::Section section("optimizer step");
    optimizer->step();
  };
}

// One training iteration of apps/distill_retinanet's ICD students, through the same code: the trainer's
// loop body (apps/common/trainer.cpp) around an IcdObjective (distill/objectives.h), which runs the student
// forward and detection losses, the frozen teacher's backbone + FPN under no-grad and the
// InstanceConditionalDistiller, and steps its own AdamW after the backward.
std::function<void()> icd_step(int64_t size, Device device) {
  constexpr int64_t kClasses = 91;  // the detectors' label space, as distill_retinanet's dataset classes
  Generator gen(0);
  auto teacher = std::make_shared<RetinaNet>(torchvision_retinanet_config(50, kClasses), gen);
  auto student = std::make_shared<RetinaNet>(torchvision_retinanet_config(18, kClasses), gen);
  teacher->to(device);  // the objective makes its distiller there too
  student->to(device);
  auto batch = std::make_shared<TrainingBatch>(
      TrainingBatch{.images = to_device(rand({1, 3, size, size}, gen), device),
                    .targets = three_boxes(size),
                    .sizes = {{size, size}}});
  // The spec's settings (IcdConfig's defaults: 8 heads, FFN 1024, 5 fakes per real box, lambda 8); the
  // fake-instance prior from the ground truth, as distill_retinanet computes it from its training set.
  IcdConfig config;
  config.num_classes = kClasses;
  auto objective = std::make_shared<IcdObjective>(
      *teacher, config, FakeInstancePrior::from_annotations(image_instances(*batch), kClasses),
      DistillerOptimizerConfig{}, 0);
  student->train();
  auto optimizer = std::make_shared<Sgd>(student->trainable_parameters(), kSgd);
  // Past the warm-up (BYPASS_DISTILL), so the distillation gradient flows into the student's FPN and
  // backbone as in most of a run. The same iteration every run: the same fake instances every run.
  const int64_t iteration = config.warmup_iterations;
  return [teacher, student, batch, objective, optimizer, iteration] {
    optimizer->zero_grad();
    Tensor total;
    for (const auto& [name, loss] : objective->losses(*student, *batch, iteration))
      total = total.defined() ? add(total, loss) : loss;
    total.backward();
    {
      profiler::Section section("ICD optimizer step (clip, AdamW)");
      objective->after_backward(iteration);
    }
    profiler::Section section("optimizer step");
    clip_grad_value(optimizer->parameters(), 1.0);  // the distillation config's per-element clip
    optimizer->step();
  };
}

}  // namespace

std::vector<Workload> model_workloads(Device device) {
  std::vector<Workload> out;
  for (int depth : {18, 50})
    for (bool train : {true, false})
      out.push_back({"resnet" + std::to_string(depth) + (train ? " train" : " infer") + " b2 224", 0,
                     [depth, train, device] { return resnet_step(depth, train, device); }});
  for (int depth : {18, 50})
    for (int64_t size : {320, 512})
      for (bool train : {true, false})
        out.push_back({"retinanet-r" + std::to_string(depth) + (train ? " train" : " infer") + " b1 " +
                           std::to_string(size),
                       0,
                       [depth, size, train, device] { return retinanet_step(depth, size, train, device); }});
  for (int64_t size : {320, 512})
    out.push_back({"icd-r18<-r50 train b1 " + std::to_string(size), 0,
                   [size, device] { return icd_step(size, device); }});
  return out;
}

}  // namespace icd::bench
