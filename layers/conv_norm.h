// A convolution followed by a normalisation whose statistics are fixed (BatchNorm2d in eval mode,
// FrozenBatchNorm2d), folded into one convolution.
//
// Such a normalisation is an affine map per channel, norm(z)[c] = scale[c] z[c] + shift[c], with
//   scale = weight / sqrt(running_var + eps),   shift = bias - running_mean * scale.
// Since conv(x; W, b)[c] = sum over the window of W[c] * x + b[c] is linear in W and b,
//   norm(conv(x; W, b)) = conv(x; W', b'),   W'[c] = scale[c] W[c],   b'[c] = scale[c] b[c] + shift[c],
// which saves the normalisation's pass over the activations (and, in training, the backward pass over
// their gradient) for a product over the weights. That pays only where the weights are fewer than the
// outputs (early layers, large images); elsewhere the norm runs after the convolution as usual. W' and b' are
// built with differentiable ops, so gradients reach W, b and a trainable weight/bias of the norm exactly as
// without folding. A BatchNorm2d in training mode normalises by the batch's own statistics, which are not
// known before the convolution has run: it is applied after the convolution as usual.
#pragma once
#include <optional>

#include "layers/batch_norm.h"
#include "layers/conv2d.h"
#include "layers/module.h"

namespace icd {

// The affine map `norm` applies, if it is fixed: BatchNorm2d in eval mode or FrozenBatchNorm2d.
std::optional<ChannelAffine> fixed_channel_affine(UnaryModule& norm);

// norm.forward(conv.forward(x)), folded into one conv2d when the norm is fixed.
Tensor conv_then_norm(Conv2d& conv, UnaryModule& norm, const Tensor& x);

}  // namespace icd
