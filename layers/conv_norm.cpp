#include "layers/conv_norm.h"

#include "engine/ops/elementwise.h"

namespace icd {

std::optional<ChannelAffine> fixed_channel_affine(UnaryModule& norm) {
  if (auto* frozen = dynamic_cast<FrozenBatchNorm2d*>(&norm)) return frozen->affine();
  if (auto* batch = dynamic_cast<BatchNorm2d*>(&norm)) return batch->eval_affine();
  return std::nullopt;
}

Tensor conv_then_norm(Conv2d& conv, UnaryModule& norm, const Tensor& x) {
  std::optional<ChannelAffine> affine = fixed_channel_affine(norm);
  if (!affine || affine->scale.dim() != 1 || affine->scale.size(0) != conv.config().out_channels)
    return norm.forward(conv.forward(x));
  const int64_t channels = affine->scale.size(0);
  Tensor weight = mul(conv.weight(), affine->scale.reshape({channels, 1, 1, 1}));
  Tensor conv_bias = conv.bias();
  Tensor bias = conv_bias.defined() ? add(mul(conv_bias, affine->scale), affine->shift) : affine->shift;
  return conv2d(x, weight, bias, conv.config().options);
}

}  // namespace icd
