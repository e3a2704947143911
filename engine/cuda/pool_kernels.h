// The pooling kernels (engine/cuda/pool.cu): one thread per output element forward and one per input
// element backward, running the ICD_HD bodies of engine/kernels/pool_math.h that the CPU tests run too.
// Host-only declarations with no CUDA headers. Pointers are contiguous [planes, H, W] arrays of `dtype`
// (f32 or f64; argmax i64) in the memory of `device`, shaped as `g` says; every output element is
// written. Work is queued on the device's stream. std::invalid_argument for another dtype,
// std::runtime_error when CUDA is unavailable or the launch fails.
#pragma once
#include <cstdint>

#include "engine/dtype.h"
#include "engine/kernels/pool_math.h"

namespace icd::cuda {

// y = the window maxima; argmax (nullptr: not wanted) = the plane offset each maximum came from.
void cuda_max_pool2d(const kernels::PoolGeometry& g, DType dtype, const void* x, void* y, int64_t* argmax,
                     int device);
// grad_x = the output gradients gathered back to the positions argmax names.
void cuda_max_pool2d_backward(const kernels::PoolGeometry& g, DType dtype, const void* grad_out,
                              const int64_t* argmax, void* grad_x, int device);
// y = the window means (g.count_padding and g.rows/cols.adaptive choose avg or adaptive pooling).
void cuda_avg_pool2d(const kernels::PoolGeometry& g, DType dtype, const void* x, void* y, int device);
void cuda_avg_pool2d_backward(const kernels::PoolGeometry& g, DType dtype, const void* grad_out, void* grad_x,
                              int device);

}  // namespace icd::cuda
