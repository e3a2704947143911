#include "models/resnet.h"

#include <algorithm>
#include <stdexcept>
#include <string>

#include "engine/ops/elementwise.h"
#include "engine/ops/pool.h"
#include "engine/ops/reduce.h"
#include "layers/batch_norm.h"
#include "layers/conv2d.h"
#include "layers/conv_norm.h"
#include "layers/init.h"
#include "layers/linear.h"
#include "layers/sequential.h"

namespace icd {
namespace {

struct BlockPlan {
  int64_t in_channels, width, stride;
};

std::shared_ptr<UnaryModule> make_norm(const ResNetConfig& config, int64_t channels) {
  if (config.norm == NormKind::frozen_batch_norm)
    return std::make_shared<FrozenBatchNorm2d>(channels, config.norm_eps);
  return std::make_shared<BatchNorm2d>(channels, config.norm_eps);
}

std::shared_ptr<Conv2d> make_conv(const ResNetConfig& config, int64_t in, int64_t out, int64_t kernel,
                                  int64_t stride, Generator& gen) {
  auto conv = std::make_shared<Conv2d>(in, out, kernel, gen, stride, kernel / 2, config.conv_bias);
  // torchvision: kaiming_normal(fan_out, relu) for every convolution, zero conv biases.
  init::kaiming_normal_(conv->weight(), gen, 0.0, init::FanMode::fan_out);
  if (config.conv_bias) init::constant_(conv->bias(), 0.0);
  return conv;
}

// x -> conv/norm/ReLU chain -> + shortcut(x) -> ReLU. The chain is BasicBlock's two 3x3 convs or
// Bottleneck's 1x1, 3x3, 1x1; the shortcut is identity or a strided 1x1 conv + norm ("downsample").
class ResidualBlock : public UnaryModule {
 public:
  ResidualBlock(const ResNetConfig& config, const BlockPlan& plan, bool bottleneck, Generator& gen) {
    const int64_t expansion = bottleneck ? 4 : 1;
    const int64_t out_channels = plan.width * expansion;
    if (bottleneck) {
      const int64_t stride_1x1 = config.stride_on_3x3 ? 1 : plan.stride;
      const int64_t stride_3x3 = config.stride_on_3x3 ? plan.stride : 1;
      add_conv_norm("conv1", make_conv(config, plan.in_channels, plan.width, 1, stride_1x1, gen), "bn1",
                    config, plan.width);
      add_conv_norm("conv2", make_conv(config, plan.width, plan.width, 3, stride_3x3, gen), "bn2", config,
                    plan.width);
      add_conv_norm("conv3", make_conv(config, plan.width, out_channels, 1, 1, gen), "bn3", config,
                    out_channels);
    } else {
      add_conv_norm("conv1", make_conv(config, plan.in_channels, plan.width, 3, plan.stride, gen), "bn1",
                    config, plan.width);
      add_conv_norm("conv2", make_conv(config, plan.width, plan.width, 3, 1, gen), "bn2", config, plan.width);
    }
    if (plan.stride != 1 || plan.in_channels != out_channels) {
      auto downsample = std::make_shared<Sequential>();
      downsample->push_back(make_conv(config, plan.in_channels, out_channels, 1, plan.stride, gen));
      downsample->push_back(make_norm(config, out_channels));
      downsample_ = register_module("downsample", downsample);
    }
  }

  Tensor forward(const Tensor& x) override {
    Tensor y = x;
    for (std::size_t i = 0; i < convs_.size(); ++i) {
      y = conv_then_norm(*convs_[i], *norms_[i], y);
      if (i + 1 < convs_.size()) y = relu(y);
    }
    Tensor shortcut = x;
    if (downsample_)
      shortcut = conv_then_norm(dynamic_cast<Conv2d&>((*downsample_)[0]), (*downsample_)[1], x);
    return relu(add(y, shortcut));
  }

 private:
  void add_conv_norm(const std::string& conv_name, std::shared_ptr<Conv2d> conv, const std::string& norm_name,
                     const ResNetConfig& config, int64_t channels) {
    convs_.push_back(register_module(conv_name, conv));
    norms_.push_back(register_module(norm_name, make_norm(config, channels)));
  }

  std::vector<std::shared_ptr<Conv2d>> convs_;
  std::vector<std::shared_ptr<UnaryModule>> norms_;
  std::shared_ptr<Sequential> downsample_;  // "0": a strided 1x1 Conv2d, "1": its norm
};

struct DepthPlan {
  bool bottleneck;
  std::vector<int> blocks;
};

DepthPlan plan_for_depth(int depth) {
  switch (depth) {
    case 18:
      return {false, {2, 2, 2, 2}};
    case 34:
      return {false, {3, 4, 6, 3}};
    case 50:
      return {true, {3, 4, 6, 3}};
    case 101:
      return {true, {3, 4, 23, 3}};
  }
  throw std::invalid_argument("ResNet: depth must be 18, 34, 50 or 101, got " + std::to_string(depth));
}

// The depth's block type with the config's block counts, when it gives them.
DepthPlan plan_for_config(const ResNetConfig& config) {
  DepthPlan plan = plan_for_depth(config.depth);
  if (config.blocks.empty()) return plan;
  const bool positive = std::all_of(config.blocks.begin(), config.blocks.end(), [](int b) { return b > 0; });
  if (config.blocks.size() != 4 || !positive)
    throw std::invalid_argument(
        "ResNet: blocks must be 4 positive counts, one per stage (layer1..layer4), got " +
        blocks_text(config.blocks));
  plan.blocks = config.blocks;
  return plan;
}

}  // namespace

std::vector<int> standard_blocks(int depth) {
  return plan_for_depth(depth).blocks;
}

std::string blocks_text(const std::vector<int>& blocks) {
  std::string s;
  for (int b : blocks)
    s += (s.empty() ? "" : ", ") + std::to_string(b);
  return "{" + s + "}";
}

ResNet::ResNet(const ResNetConfig& config, Generator& gen) : config_(config) {
  DepthPlan plan = plan_for_config(config);
  conv1_ = register_module("conv1", make_conv(config, 3, 64, 7, 2, gen));
  bn1_ = register_module("bn1", make_norm(config, 64));
  int64_t channels = 64;
  const int64_t expansion = plan.bottleneck ? 4 : 1;
  for (int stage = 0; stage < 4; ++stage) {
    auto layer = std::make_shared<Sequential>();
    const int64_t width = int64_t{64} << stage;
    for (int b = 0; b < plan.blocks[stage]; ++b) {
      const int64_t stride = (stage > 0 && b == 0) ? 2 : 1;
      layer->push_back(
          std::make_shared<ResidualBlock>(config, BlockPlan{channels, width, stride}, plan.bottleneck, gen));
      channels = width * expansion;
    }
    stages_.push_back(register_module("layer" + std::to_string(stage + 1), layer));
  }
  if (config.num_classes > 0)
    fc_ = register_module("fc", std::make_shared<Linear>(channels, config.num_classes, gen));

  if (config.freeze_at >= 1) {
    conv1_->set_requires_grad(false);
    bn1_->set_requires_grad(false);
  }
  for (int stage = 0; stage + 2 <= config.freeze_at && stage < 4; ++stage)
    stages_[stage]->set_requires_grad(false);
}

std::vector<int64_t> ResNet::stage_channels() const {
  const int64_t expansion = plan_for_depth(config_.depth).bottleneck ? 4 : 1;
  return {64 * expansion, 128 * expansion, 256 * expansion, 512 * expansion};
}

void ResNet::train(bool on) {
  Module::train(on);
  if (!on) return;
  if (config_.freeze_at >= 1) {
    conv1_->train(false);
    bn1_->train(false);
  }
  for (int stage = 0; stage + 2 <= config_.freeze_at && stage < 4; ++stage)
    stages_[stage]->train(false);
}

ResNetOutput ResNet::forward(const Tensor& x) {
  if (x.dim() != 4 || x.size(1) != 3)
    throw std::invalid_argument("ResNet: expected an image batch [N, 3, H, W], got " + shape_str(x.shape()));
  Tensor y = relu(conv_then_norm(*conv1_, *bn1_, x));
  y = max_pool2d(y, {.kernel = 3, .stride = 2, .padding = 1});
  ResNetOutput out;
  Tensor* stage_outputs[4] = {&out.c2, &out.c3, &out.c4, &out.c5};
  for (int stage = 0; stage < 4; ++stage) {
    y = stages_[stage]->forward(y);
    *stage_outputs[stage] = y;
  }
  if (fc_) out.logits = fc_->forward(mean(y, {2, 3}));
  return out;
}

}  // namespace icd
