// BatchNorm2d and FrozenBatchNorm2d. Both hold "weight" and "bias" (gamma, beta) and the buffers
// "running_mean" and "running_var", named as in torchvision so checkpoints map one to one (BatchNorm2d
// also counts its training batches in "num_batches_tracked", as torch does).
//
// BatchNorm2d: in training mode normalises with the batch statistics and updates the running ones
// (momentum, unbiased variance); in eval mode uses the running statistics.
// FrozenBatchNorm2d (detection backbones, whose batches are too small for batch statistics): a fixed
// per-channel affine map y = x * scale + shift, scale = weight / sqrt(running_var + eps),
// shift = bias - running_mean * scale. All four are buffers (never trained); gradients flow to x only.
#pragma once
#include <optional>

#include "layers/module.h"

namespace icd {

// y = x * scale[c] + shift[c] per channel c: what a normalisation with fixed statistics computes.
struct ChannelAffine {
  Tensor scale, shift;  // [C], built with differentiable ops from the layer's weight and bias
};

class BatchNorm2d : public UnaryModule {
 public:
  explicit BatchNorm2d(int64_t channels, double eps = 1e-5, double momentum = 0.1);
  Tensor forward(const Tensor& x) override;
  int64_t channels() const { return channels_; }
  // The affine map of eval mode (running statistics); nullopt in training mode, whose batch statistics
  // depend on the input.
  std::optional<ChannelAffine> eval_affine();

 private:
  int64_t channels_;
  double eps_, momentum_;
};

class FrozenBatchNorm2d : public UnaryModule {
 public:
  explicit FrozenBatchNorm2d(int64_t channels, double eps = 1e-5);
  Tensor forward(const Tensor& x) override;
  ChannelAffine affine();

 private:
  int64_t channels_;
  double eps_;
};

}  // namespace icd
