// Strided CUDA kernels (engine/cuda/strided_map.cu, engine/cuda/reduce_sum.cu). Host-only declarations
// with no CUDA headers, so host-compiled code can call them. Each kernel runs the ICD_HD bodies that the
// CPU launch runs (engine/kernels/launch.h); tests/test_cuda_parity.cpp compares the two.
//
// Every pointer is the first element of its operand in the memory of `device`; each operand reads its
// own strides from the layout (operand 0 is the output; broadcast inputs have stride 0). The output may
// be strided, and may be one of the inputs with the same strides (in-place updates), but must not
// otherwise overlap an input. Work is queued on the device's stream (engine/cuda/device_memory.h) and
// the call returns at once. `op` names the caller in errors: std::invalid_argument for a dtype the
// kernel does not take, std::runtime_error when CUDA is unavailable or the launch fails.
#pragma once
#include "engine/dtype.h"
#include "engine/kernels/binary_op.h"
#include "engine/kernels/reduce_sum.h"
#include "engine/kernels/strided_index.h"
#include "engine/kernels/unary_op.h"

namespace icd::cuda {

// out = f(x), f32 or f64.
void cuda_map_unary(const char* op, kernels::UnaryOpCall call, DType dtype,
                    const kernels::StridedLayout<2>& layout, void* out, const void* x, int device);
// out = f(a, b), f32 or f64.
void cuda_map_binary(const char* op, kernels::BinaryOpCall call, DType dtype,
                     const kernels::StridedLayout<3>& layout, void* out, const void* a, const void* b,
                     int device);
// out = condition != 0 ? a : b, all four of `dtype` (f32 or f64).
void cuda_where(const char* op, DType dtype, const kernels::StridedLayout<4>& layout, void* out,
                const void* condition, const void* a, const void* b, int device);
// dst = src converted to dst's dtype: any pair of f32, f64, i64; f16 and bf16 only to themselves.
void cuda_copy(const char* op, DType dst_dtype, DType src_dtype, const kernels::StridedLayout<2>& layout,
               void* dst, const void* src, int device);
// dst = value (f32, f64, i64).
void cuda_fill(const char* op, DType dtype, const kernels::StridedLayout<1>& layout, void* dst, double value,
               int device);
// out[o] = sum over j of x(o, j), out contiguous with layout.outer.numel elements (f32 or f64), in the
// order kernels::plan_sum(outputs, per_output) fixes; a partial-sum buffer, when needed, comes from the
// device's caching allocator.
void cuda_sum(const char* op, DType dtype, const kernels::SumLayout& layout, const void* x, void* out,
              int device);

}  // namespace icd::cuda
