// 2-D convolution (engine/ops/conv.cpp), the same contract as torch.nn.functional.conv2d.
//
//   x:      [N, C_in, H, W]                 (any strides; f32 or f64)
//   weight: [C_out, C_in / groups, kH, kW]  (same dtype and device as x)
//   bias:   [C_out], or an undefined Tensor() for no bias
//   result: [N, C_out, OH, OW],  OH = floor((H + 2 pH - dH (kH - 1) - 1) / sH) + 1, and likewise OW.
//
// With groups = G, the channels are split into G independent convolutions: output channels
// [g C_out/G, (g+1) C_out/G) see only input channels [g C_in/G, (g+1) C_in/G). G = C_in = C_out is a
// depthwise convolution. Differentiable in x, weight and bias. Throws std::invalid_argument naming the
// argument and the shapes on a wrong rank, a channel mismatch, groups not dividing the channels, a
// non-positive stride or dilation, a negative padding, a bias of the wrong size, or an output of size 0.
// Inside an AutocastGuard (engine/autocast.h) f32 operands and the result are rounded to bf16/f16.
#pragma once
#include <cstdint>

#include "engine/tensor.h"

namespace icd {

struct Conv2dOptions {
  int64_t stride_h = 1, stride_w = 1;
  int64_t padding_h = 0, padding_w = 0;
  int64_t dilation_h = 1, dilation_w = 1;
  int64_t groups = 1;

  // The same stride, padding and dilation along both axes: Conv2dOptions::square(2, 1) is stride 2, pad 1.
  static Conv2dOptions square(int64_t stride = 1, int64_t padding = 0, int64_t dilation = 1,
                              int64_t groups = 1) {
    return {stride, stride, padding, padding, dilation, dilation, groups};
  }
};

Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dOptions& options = {});

// The output length along one axis: floor((input + 2 padding - dilation (kernel - 1) - 1) / stride) + 1,
// or 0 when the dilated kernel does not fit in the padded input.
int64_t conv2d_output_size(int64_t input, int64_t kernel, int64_t stride, int64_t padding, int64_t dilation);

}  // namespace icd
