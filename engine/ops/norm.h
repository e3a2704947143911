// Normalisation ops: batch, group and layer norm, forward and backward fused (engine/ops/norm.cpp).
//
// Each normalises x over a set of elements to zero mean and unit (biased) variance, then applies an
// optional affine map y = x_hat * weight + bias. weight and bias may each be undefined (Tensor()): no
// scale, no shift. All defined tensor arguments share x's dtype and device. Gradients flow to x,
// weight and bias; x may be a non-contiguous view.
#pragma once
#include "engine/tensor.h"

namespace icd {

// x: [N, C, *]; weight, bias, running_mean, running_var: [C] or undefined.
// training: normalise each channel with the mean and biased variance of its N * prod(*) elements, and,
//   when the running statistics are given, update them IN PLACE (no gradient, like torch):
//     running_mean = (1 - momentum) running_mean + momentum mean
//     running_var  = (1 - momentum) running_var  + momentum unbiased_variance
//   Needs more than one value per channel.
// eval (training = false): normalise with running_mean and running_var, which must be given and are
//   left untouched.
Tensor batch_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& running_mean,
                  const Tensor& running_var, bool training, double momentum = 0.1, double eps = 1e-5);

// x: [N, C, *] with C divisible by num_groups; each sample's channels are split into num_groups groups
// of consecutive channels and each (sample, group) is normalised over its (C / G) * prod(*) elements.
// weight, bias: [C] or undefined (per channel, as in torch).
Tensor group_norm(const Tensor& x, int64_t num_groups, const Tensor& weight, const Tensor& bias,
                  double eps = 1e-5);

// Normalises over the trailing dims of x given by normalized_shape (which must equal x's last dims).
// weight, bias: of normalized_shape, or undefined for a layer norm with no affine parameters.
Tensor layer_norm(const Tensor& x, const Shape& normalized_shape, const Tensor& weight, const Tensor& bias,
                  double eps = 1e-5);

}  // namespace icd
