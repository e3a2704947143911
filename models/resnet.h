// ResNet-18/34/50/101 (He et al. 2016) from one config, with torchvision's parameter names
// (conv1, bn1, layer1.0.conv1, layer1.0.downsample.0, ..., fc) so weights and fixtures map one to one.
//
//   stem:   conv 7x7/2 (64) -> norm -> ReLU -> max-pool 3x3/2              (stride 4, "C2" input)
//   layer1: blocks at stride 4  (64 wide)     -> C2
//   layer2: first block strides 2 (128 wide)  -> C3, stride 8
//   layer3: first block strides 2 (256 wide)  -> C4, stride 16
//   layer4: first block strides 2 (512 wide)  -> C5, stride 32
//   head:   global average pool -> fc (classification only)
// BasicBlock (18, 34): 3x3 -> 3x3, expansion 1. Bottleneck (50, 101): 1x1 -> 3x3 -> 1x1 (x4 wide).
// Where a bottleneck strides differs between implementations: torchvision ("v1.5") strides the 3x3,
// the original MSRA/Keras ResNet ("v1") strides the first 1x1. Both are here (stride_on_3x3).
// `blocks` cuts (or extends) the stages: ResNet-50 with blocks {3, 4, 3, 3} keeps ResNet-50's widths and
// block type with three blocks fewer in layer3; its parameter names are then a subset of ResNet-50's, so it
// can start from the first blocks of each stage of a pretrained ResNet-50.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "engine/random.h"
#include "layers/conv2d.h"
#include "layers/module.h"

namespace icd {

enum class NormKind { batch_norm, frozen_batch_norm };

struct ResNetConfig {
  int depth = 50;             // 18, 34, 50 or 101: block type (basic or bottleneck) and widths
  std::vector<int> blocks{};  // blocks per stage (4 positive counts); empty: the depth's, e.g. {3, 4, 6, 3}
  bool stride_on_3x3 = true;  // torchvision; false: MSRA/Keras v1 (stride on the first 1x1)
  bool conv_bias = false;     // Keras ResNet-50 convolutions carry biases
  NormKind norm = NormKind::batch_norm;
  double norm_eps = 1e-5;      // Keras uses 1e-3
  int freeze_at = 0;           // 0: all trainable; 1: stem frozen; k >= 2: stem and layer1..layer(k-1) frozen
  int64_t num_classes = 1000;  // 0: no classifier (a detection backbone)
};

// The blocks per stage of a standard depth, e.g. {3, 4, 6, 3} for 50; throws for other depths.
std::vector<int> standard_blocks(int depth);
// Block counts as text for messages: "{3, 4, 6, 3}".
std::string blocks_text(const std::vector<int>& blocks);

struct ResNetOutput {
  Tensor c2, c3, c4, c5;  // stage outputs at strides 4, 8, 16, 32
  Tensor logits;          // [N, num_classes], undefined when num_classes = 0
};

class ResNet : public Module {
 public:
  ResNet(const ResNetConfig& config, Generator& gen);
  ResNetOutput forward(const Tensor& x);
  const ResNetConfig& config() const { return config_; }
  // Channels of C2..C5 (e.g. 256, 512, 1024, 2048 for ResNet-50).
  std::vector<int64_t> stage_channels() const;
  void train(bool on = true) override;  // keeps frozen stages in eval mode, as detectron2 does

 private:
  ResNetConfig config_;
  std::shared_ptr<Conv2d> conv1_;
  std::shared_ptr<UnaryModule> bn1_;
  std::vector<std::shared_ptr<UnaryModule>> stages_;
  std::shared_ptr<UnaryModule> fc_;
};

}  // namespace icd
