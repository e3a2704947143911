// Grid-stride CUDA kernels over contiguous arrays. The arithmetic is the functor's, shared with the CPU
// (engine/kernels/elementwise_math.h); this file only decides which thread computes which element.
#include <algorithm>
#include <stdexcept>
#include <string>

#include "engine/cuda/cuda_check.h"
#include "engine/cuda/device_memory.h"
#include "engine/cuda/elementwise.h"
#include "engine/cuda/grid.h"
#include "engine/cuda/runtime.h"

namespace icd::cuda {
namespace {

template <class F, class T>
__global__ void binary_kernel(F f, const T* a, const T* b, T* out, int64_t n) {
  int64_t stride = int64_t(blockDim.x) * gridDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    out[i] = f(a[i], b[i]);
}
}  // namespace

void cuda_binary_elementwise(kernels::BinaryOpCall op, DType dtype, const void* a, const void* b, void* out,
                             int64_t n, int device) {
  const char* name = kernels::binary_op_name(op.op);
  if (n < 0) throw std::invalid_argument(std::string("cuda_binary_elementwise(") + name + "): n < 0");
  if (dtype != DType::f32 && dtype != DType::f64)
    throw std::invalid_argument(std::string("cuda_binary_elementwise(") + name + "): dtype " +
                                dtype_name(dtype) + " is not supported (f32 and f64 are)");
  use_device("cuda_binary_elementwise", device);
  if (n == 0) return;
  cudaStream_t stream = cuda_stream(device);
  int blocks = grid_blocks(n);
  dispatch_floating(dtype, "cuda_binary_elementwise", [&](auto tag) {
    using T = decltype(tag);
    kernels::visit_binary_op(op, [&](auto f) {
      binary_kernel<<<blocks, kBlockThreads, 0, stream>>>(f, static_cast<const T*>(a),
                                                          static_cast<const T*>(b), static_cast<T*>(out), n);
    });
  });
  ICD_CUDA_CHECK(cudaGetLastError());
}

}  // namespace icd::cuda
