#include "apps/bench_models.h"

#include <memory>

#include "engine/autograd.h"
#include "engine/factory.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/loss.h"
#include "engine/optim/sgd.h"
#include "engine/profiler.h"
#include "models/resnet.h"
#include "models/retinanet.h"

namespace icd::bench {
namespace {

constexpr SgdOptions kSgd{.lr = 0.01, .momentum = 0.9, .weight_decay = 1e-4};

std::function<void()> resnet_step(int depth, bool train) {
  Generator gen(0);
  auto model = std::make_shared<ResNet>(
      ResNetConfig{.depth = depth, .norm = NormKind::batch_norm, .num_classes = 1000}, gen);
  auto images = std::make_shared<Tensor>(randn({2, 3, 224, 224}, gen));
  if (!train) {
    model->eval();
    return [model, images] {
      NoGradGuard no_grad;
      model->forward(*images);
    };
  }
  model->train();
  auto labels = std::make_shared<Tensor>(from_vector(std::vector<int64_t>{1, 7}, {2}));
  auto optimizer = std::make_shared<Sgd>(model->parameters(), kSgd);
  return [model, images, labels, optimizer] {
    optimizer->zero_grad();
    cross_entropy(model->forward(*images).logits, *labels).backward();
    profiler::Section section("optimizer step");
    optimizer->step();
  };
}

std::function<void()> retinanet_step(int depth, int64_t size, bool train) {
  Generator gen(0);
  auto model = std::make_shared<RetinaNet>(torchvision_retinanet_config(depth, 91), gen);
  auto images = std::make_shared<Tensor>(rand({1, 3, size, size}, gen));
  if (!train) {
    model->eval();
    return [model, images, size] {
      NoGradGuard no_grad;
      model->detect(model->forward(*images), {{size, size, size, size}});
    };
  }
  model->train();
  const double s = static_cast<double>(size) / 320.0;
  std::vector<double> boxes{10, 20, 110, 140, 150, 60, 300, 200, 40, 200, 90, 290};
  for (double& v : boxes)
    v *= s;
  auto targets = std::make_shared<std::vector<TargetBoxes>>(std::vector<TargetBoxes>{
      {from_vector(boxes, {3, 4}), from_vector(std::vector<int64_t>{1, 5, 7}, {3})}});
  auto optimizer = std::make_shared<Sgd>(model->trainable_parameters(), kSgd);
  return [model, images, targets, optimizer] {
    optimizer->zero_grad();
    RetinaNetLosses losses = model->losses(model->forward(*images), *targets);
    add(losses.classification, losses.box_regression).backward();
    profiler::Section section("optimizer step");
    optimizer->step();
  };
}

}  // namespace

std::vector<Workload> model_workloads() {
  std::vector<Workload> out;
  for (int depth : {18, 50})
    for (bool train : {true, false})
      out.push_back({"resnet" + std::to_string(depth) + (train ? " train" : " infer") + " b2 224", 0,
                     [depth, train] { return resnet_step(depth, train); }});
  for (int depth : {18, 50})
    for (int64_t size : {320, 512})
      for (bool train : {true, false})
        out.push_back({"retinanet-r" + std::to_string(depth) + (train ? " train" : " infer") + " b1 " +
                           std::to_string(size),
                       0, [depth, size, train] { return retinanet_step(depth, size, train); }});
  return out;
}

}  // namespace icd::bench
