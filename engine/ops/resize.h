// Resizing the two spatial dims of an [N, C, H, W] tensor (engine/ops/resize.cpp), with torch's
// index conventions so that results match torch.nn.functional.interpolate exactly. Differentiable in x;
// x may be a non-contiguous view; the output is a new row-major tensor [N, C, out_h, out_w].
#pragma once
#include "engine/tensor.h"

namespace icd {

// mode='nearest' with size=(out_h, out_w): output pixel (i, j) copies input (src(i), src(j)) with
// src(d) = min(floor(d * in / out), in - 1), the ratio rounded to f32 as torch does.
Tensor upsample_nearest2d(const Tensor& x, int64_t out_h, int64_t out_w);
// mode='nearest' with scale_factor (both dims): out = floor(in * scale_factor), and src(d) uses the
// ratio 1 / scale_factor (torch's recompute_scale_factor=False default), e.g. 2.0 for the FPN.
Tensor upsample_nearest2d(const Tensor& x, double scale_factor);

// mode='bilinear' with size=(out_h, out_w). align_corners=true maps the corner pixels' centres onto
// each other (src = d (in - 1) / (out - 1)); false maps the image edges onto each other
// (src = (d + 0.5) in / out - 0.5, clamped below at 0).
Tensor interpolate_bilinear(const Tensor& x, int64_t out_h, int64_t out_w, bool align_corners);

}  // namespace icd
