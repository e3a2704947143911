#include "layers/conv_norm.h"

#include "engine/ops/elementwise.h"

namespace icd {

std::optional<ChannelAffine> fixed_channel_affine(UnaryModule& norm) {
  if (auto* frozen = dynamic_cast<FrozenBatchNorm2d*>(&norm)) return frozen->affine();
  if (auto* batch = dynamic_cast<BatchNorm2d*>(&norm)) return batch->eval_affine();
  return std::nullopt;
}

namespace {

// Elements of conv's output for input x (0 when x is not a 4-D image batch: the conv reports the error).
int64_t output_elements(const Conv2d& conv, const Tensor& x) {
  if (x.dim() != 4) return 0;
  const Conv2dConfig& c = conv.config();
  const Conv2dOptions& o = c.options;
  return x.size(0) * c.out_channels *
         conv2d_output_size(x.size(2), c.kernel_h, o.stride_h, o.padding_h, o.dilation_h) *
         conv2d_output_size(x.size(3), c.kernel_w, o.stride_w, o.padding_w, o.dilation_w);
}

}  // namespace

Tensor conv_then_norm(Conv2d& conv, UnaryModule& norm, const Tensor& x) {
  std::optional<ChannelAffine> affine = fixed_channel_affine(norm);
  // Folding costs a pass over the weights, the norm a pass over the output: fold only where the weights
  // are the smaller (ResNet-18's last stage at batch 2 has 2.4M weights per conv for 50K outputs).
  if (!affine || affine->scale.dim() != 1 || affine->scale.size(0) != conv.config().out_channels ||
      conv.weight().numel() >= output_elements(conv, x))
    return norm.forward(conv.forward(x));
  const int64_t channels = affine->scale.size(0);
  Tensor weight = mul(conv.weight(), affine->scale.reshape({channels, 1, 1, 1}));
  Tensor conv_bias = conv.bias();
  Tensor bias = conv_bias.defined() ? add(mul(conv_bias, affine->scale), affine->shift) : affine->shift;
  return conv2d(x, weight, bias, conv.config().options);
}

}  // namespace icd
