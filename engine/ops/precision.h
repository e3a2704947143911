// Rounding f32 tensors to a 16-bit format (engine/ops/precision.cpp), the one op mixed precision adds.
//
//   y = round_to_precision(x, p),  p = bf16 or f16:  y_i = the p value nearest x_i (ties to even), as f32
//
// The result keeps x's dtype (f32), shape and device; the values are exactly those a tensor of dtype p
// would hold, so every op downstream computes on bf16/f16 numbers with f32 arithmetic. Backward: the
// incoming gradient rounded the same way, dL/dx = round(dL/dy). That is not the derivative of rounding
// (zero almost everywhere) but the convention of mixed-precision training: a 16-bit tensor's gradient is
// itself 16-bit (the GPU computes it in that format) and passes straight through the cast to f32.
// Throws std::invalid_argument unless x is f32 and p is bf16 or f16.
#pragma once
#include "engine/tensor.h"

namespace icd {

Tensor round_to_precision(const Tensor& x, DType precision);

}  // namespace icd
