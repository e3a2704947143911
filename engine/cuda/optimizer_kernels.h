// The optimizers' fused per-tensor updates on CUDA (engine/cuda/optimizer.cu): one kernel per parameter
// tensor runs the ICD_HD body of engine/kernels/optimizer_math.h over its n elements. Host-only
// declarations with no CUDA headers. Pointers are contiguous arrays of n elements of `dtype` (f32 or f64)
// in the memory of `device`; work is queued on the device's stream. std::invalid_argument for another
// dtype, std::runtime_error when CUDA is unavailable or the launch fails.
#pragma once
#include <cstdint>

#include "engine/dtype.h"
#include "engine/kernels/optimizer_math.h"

namespace icd::cuda {

// param, momentum_buffer (nullptr without momentum) updated in place from grad.
void cuda_sgd_update(const kernels::SgdUpdate<double>& update, DType dtype, void* param, const void* grad,
                     void* momentum_buffer, int64_t n, int device);
void cuda_adamw_update(const kernels::AdamWUpdate<double>& update, DType dtype, void* param, const void* grad,
                       void* exp_avg, void* exp_avg_sq, int64_t n, int device);
// grad = clamp(grad, -clip_value, clip_value) in place.
void cuda_clip_by_value(double clip_value, DType dtype, void* grad, int64_t n, int device);

}  // namespace icd::cuda
