// The resizing kernels (engine/cuda/resize.cu): one thread per output element forward and one per input
// element backward, running the ICD_HD bodies of engine/kernels/resize_math.h that the CPU tests run too.
// Host-only declarations with no CUDA headers. Pointers are contiguous [planes, H, W] arrays of `dtype`
// (f32 or f64) in the memory of `device`, shaped as `g` says; every output element is written. Work is
// queued on the device's stream. std::invalid_argument for another dtype, std::runtime_error when CUDA
// is unavailable or the launch fails.
#pragma once

#include "engine/dtype.h"
#include "engine/kernels/resize_math.h"

namespace icd::cuda {

void cuda_upsample_nearest2d(const kernels::ResizeGeometry& g, DType dtype, const void* x, void* y,
                             int device);
void cuda_upsample_nearest2d_backward(const kernels::ResizeGeometry& g, DType dtype, const void* grad_out,
                                      void* grad_x, int device);
void cuda_interpolate_bilinear(const kernels::ResizeGeometry& g, DType dtype, const void* x, void* y,
                               int device);
void cuda_interpolate_bilinear_backward(const kernels::ResizeGeometry& g, DType dtype, const void* grad_out,
                                        void* grad_x, int device);

}  // namespace icd::cuda
