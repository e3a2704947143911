// The CUDA kernel of engine/ops/position.h (engine/cuda/position.cu). Host-only declarations with no CUDA
// headers.
#pragma once
#include <cstdint>

#include "engine/dtype.h"
#include "engine/kernels/position_math.h"

namespace icd::cuda {

// out: numel = S x batch x channels contiguous values of `dtype` (f32 or f64) on `device`, element i =
// kernels::sine_position_at(levels, extents, batch, channels, i); extents: [batch, levels.count, 2] i64 on
// the device. Queued on the device's stream.
void cuda_sine_position_embedding(const char* op, DType dtype, const kernels::PositionLevels& levels,
                                  const int64_t* extents, int64_t batch, int64_t channels, int64_t numel,
                                  void* out, int device);

}  // namespace icd::cuda
