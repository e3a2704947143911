// The sine position embedding on the GPU: one thread per output element, running the body the CPU loop
// of engine/ops/position.cpp runs (engine/kernels/position_math.h).
#include <stdexcept>
#include <string>

#include "engine/cuda/cuda_check.h"
#include "engine/cuda/device_memory.h"
#include "engine/cuda/grid.h"
#include "engine/cuda/position_kernels.h"
#include "engine/cuda/runtime.h"

namespace icd::cuda {
namespace {

template <class T>
__global__ void sine_position_kernel(kernels::PositionLevels levels, const int64_t* extents, int64_t batch,
                                     int64_t channels, int64_t numel, T* out) {
  const int64_t stride = int64_t(blockDim.x) * gridDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < numel; i += stride)
    out[i] = kernels::sine_position_at<T>(levels, extents, batch, channels, i);
}

}  // namespace

void cuda_sine_position_embedding(const char* op, DType dtype, const kernels::PositionLevels& levels,
                                  const int64_t* extents, int64_t batch, int64_t channels, int64_t numel,
                                  void* out, int device) {
  if (dtype != DType::f32 && dtype != DType::f64)
    throw std::invalid_argument(std::string(op) + " (CUDA): dtype " + dtype_name(dtype) +
                                " is not supported (f32 and f64 are)");
  use_device(op, device);
  if (numel == 0) return;
  cudaStream_t stream = cuda_stream(device);
  if (dtype == DType::f32)
    sine_position_kernel<<<grid_blocks(numel), kBlockThreads, 0, stream>>>(levels, extents, batch, channels,
                                                                           numel, static_cast<float*>(out));
  else
    sine_position_kernel<<<grid_blocks(numel), kBlockThreads, 0, stream>>>(levels, extents, batch, channels,
                                                                           numel, static_cast<double*>(out));
  ICD_CUDA_CHECK(cudaGetLastError());
}

}  // namespace icd::cuda
