// Grid-stride CUDA kernels over strided operands: maps (unary, binary, where), copies and fills. Thread
// i computes element i: its offsets in every operand (engine/kernels/strided_index.h) and the functor's
// value there (engine/kernels/elementwise_math.h), the same body the CPU launch runs.
#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "engine/cuda/cuda_check.h"
#include "engine/cuda/device_memory.h"
#include "engine/cuda/grid.h"
#include "engine/cuda/runtime.h"
#include "engine/cuda/strided_kernels.h"
#include "engine/kernels/half_math.h"
#include "engine/kernels/launch.h"

namespace icd::cuda {
namespace {

template <class F, int K, class Out, class... In>
__global__ void strided_map_kernel(F f, kernels::StridedLayout<K> layout, Out* out, const In*... in) {
  const int64_t stride = int64_t(blockDim.x) * gridDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < layout.numel; i += stride)
    kernels::strided_map_element(f, layout, i, out, in...);
}

// Launches f over the layout on the device's stream; nothing for an empty layout.
template <class F, int K, class Out, class... In>
void launch(const char* op, int device, F f, const kernels::StridedLayout<K>& layout, Out* out,
            const In*... in) {
  use_device(op, device);
  if (layout.numel == 0) return;
  const int blocks = grid_blocks(layout.numel);
  strided_map_kernel<<<blocks, kBlockThreads, 0, cuda_stream(device)>>>(f, layout, out, in...);
  ICD_CUDA_CHECK(cudaGetLastError());
}

void require_floating(const char* op, DType dtype) {
  if (dtype != DType::f32 && dtype != DType::f64)
    throw std::invalid_argument(std::string(op) + " (CUDA): dtype " + dtype_name(dtype) +
                                " is not supported (f32 and f64 are)");
}

// The unsigned integer type of a dtype's size: a copy without conversion moves bits.
template <class F>
void dispatch_bits(DType dtype, F&& f) {
  switch (dtype_size(dtype)) {
    case 2:
      return f(uint16_t{});
    case 4:
      return f(uint32_t{});
    default:
      return f(uint64_t{});
  }
}
}  // namespace

void cuda_map_unary(const char* op, kernels::UnaryOpCall call, DType dtype,
                    const kernels::StridedLayout<2>& layout, void* out, const void* x, int device) {
  require_floating(op, dtype);
  dispatch_floating(dtype, op, [&](auto tag) {
    using T = decltype(tag);
    kernels::visit_unary_op(
        call, [&](auto f) { launch(op, device, f, layout, static_cast<T*>(out), static_cast<const T*>(x)); });
  });
}

void cuda_map_binary(const char* op, kernels::BinaryOpCall call, DType dtype,
                     const kernels::StridedLayout<3>& layout, void* out, const void* a, const void* b,
                     int device) {
  require_floating(op, dtype);
  dispatch_floating(dtype, op, [&](auto tag) {
    using T = decltype(tag);
    kernels::visit_binary_op(call, [&](auto f) {
      launch(op, device, f, layout, static_cast<T*>(out), static_cast<const T*>(a), static_cast<const T*>(b));
    });
  });
}

void cuda_where(const char* op, DType dtype, const kernels::StridedLayout<4>& layout, void* out,
                const void* condition, const void* a, const void* b, int device) {
  require_floating(op, dtype);
  dispatch_floating(dtype, op, [&](auto tag) {
    using T = decltype(tag);
    launch(op, device, kernels::WhereOp{}, layout, static_cast<T*>(out), static_cast<const T*>(condition),
           static_cast<const T*>(a), static_cast<const T*>(b));
  });
}

void cuda_copy(const char* op, DType dst_dtype, DType src_dtype, const kernels::StridedLayout<2>& layout,
               void* dst, const void* src, int device) {
  if (dst_dtype == src_dtype) {
    dispatch_bits(dst_dtype, [&](auto tag) {
      using B = decltype(tag);
      launch(op, device, kernels::CopyOp{}, layout, static_cast<B*>(dst), static_cast<const B*>(src));
    });
    return;
  }
  // 16-bit storage converts to and from f32 only (mixed precision, engine/autocast.h), rounding to
  // nearest even as the CPU's round_to_precision does.
  auto* out16 = static_cast<uint16_t*>(dst);
  const auto* in16 = static_cast<const uint16_t*>(src);
  if (src_dtype == DType::f32 && dst_dtype == DType::f16)
    return launch(op, device, kernels::F32ToF16Bits{}, layout, out16, static_cast<const float*>(src));
  if (src_dtype == DType::f32 && dst_dtype == DType::bf16)
    return launch(op, device, kernels::F32ToBf16Bits{}, layout, out16, static_cast<const float*>(src));
  if (src_dtype == DType::f16 && dst_dtype == DType::f32)
    return launch(op, device, kernels::F16BitsToF32{}, layout, static_cast<float*>(dst), in16);
  if (src_dtype == DType::bf16 && dst_dtype == DType::f32)
    return launch(op, device, kernels::Bf16BitsToF32{}, layout, static_cast<float*>(dst), in16);
  const bool convertible = dst_dtype != DType::f16 && dst_dtype != DType::bf16 && src_dtype != DType::f16 &&
                           src_dtype != DType::bf16;
  if (!convertible)
    throw std::invalid_argument(std::string(op) + " (CUDA): no conversion from " + dtype_name(src_dtype) +
                                " to " + dtype_name(dst_dtype) +
                                " (f32, f64 and i64 convert among themselves, f16 and bf16 with f32)");
  dispatch_all(dst_dtype, op, [&](auto dtag) {
    using D = decltype(dtag);
    dispatch_all(src_dtype, op, [&](auto stag) {
      using S = decltype(stag);
      launch(op, device, kernels::CopyOp{}, layout, static_cast<D*>(dst), static_cast<const S*>(src));
    });
  });
}

void cuda_fill(const char* op, DType dtype, const kernels::StridedLayout<1>& layout, void* dst, double value,
               int device) {
  dispatch_all(dtype, op, [&](auto tag) {
    using T = decltype(tag);
    launch(op, device, kernels::ConstantOp<T>{static_cast<T>(value)}, layout, static_cast<T*>(dst));
  });
}

}  // namespace icd::cuda
