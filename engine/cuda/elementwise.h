// Elementwise kernels of the CUDA backend (engine/cuda/elementwise.cu). Host-only declarations with no
// CUDA headers, so ops compiled by the host compiler can call them. Each kernel runs the same ICD_HD
// functor as the CPU loops (engine/kernels/elementwise_math.h); tests/test_cuda_parity.cpp compares them.
#pragma once
#include <cstdint>

#include "engine/dtype.h"
#include "engine/kernels/binary_op.h"

namespace icd::cuda {

// out[i] = op(a[i], b[i]) for i < n: a, b and out are contiguous arrays of n elements of `dtype`
// (f32 or f64) in the memory of `device`; out may alias a or b. Queued on the device's stream
// (engine/cuda/device_memory.h) and returns at once. Throws std::invalid_argument for another dtype or
// n < 0, std::runtime_error when CUDA is unavailable or the launch fails.
void cuda_binary_elementwise(kernels::BinaryOpCall op, DType dtype, const void* a, const void* b, void* out,
                             int64_t n, int device);

}  // namespace icd::cuda
