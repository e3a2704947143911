#include "engine/cuda/device_memory.h"

#include <memory>
#include <mutex>
#include <vector>

#include "engine/cuda/cuda_check.h"
#include "engine/cuda/runtime.h"

namespace icd::cuda {
namespace {
struct DeviceState {
  CachingAllocator* allocator = nullptr;  // never deleted: see device_memory.h
  cudaStream_t stream = nullptr;
};

// The state of `device`, created on first use under one lock; `op` names the caller in errors.
DeviceState& device_state(const char* op, int device) {
  static std::mutex mutex;
  static std::vector<DeviceState> states;
  use_device(op, device);  // throws unless CUDA is available and the index is valid
  std::lock_guard<std::mutex> lock(mutex);
  if (states.empty()) states.resize(cuda_status().device_count);
  DeviceState& state = states[device];
  if (!state.allocator) {
    ICD_CUDA_CHECK(cudaStreamCreate(&state.stream));
    state.allocator = new CachingAllocator(std::make_unique<CudaRawAllocator>(device));
  }
  return state;
}

void copy(void* dst, const void* src, std::size_t bytes, cudaMemcpyKind kind, bool wait, const char* op,
          int device) {
  if (bytes == 0) return;
  cudaStream_t stream = device_state(op, device).stream;
  ICD_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, kind, stream));
  if (wait) ICD_CUDA_CHECK(cudaStreamSynchronize(stream));
}
}  // namespace

void* CudaRawAllocator::allocate(std::size_t bytes) {
  ICD_CUDA_CHECK(cudaSetDevice(device_));
  void* p = nullptr;
  cudaError_t error = cudaMalloc(&p, bytes);
  if (error != cudaSuccess) {
    cudaGetLastError();  // an out-of-memory error is not sticky: clear it before the allocator retries
    throw_cuda_error(error, "cudaMalloc(&p, bytes)", __FILE__, __LINE__);
  }
  return p;
}

void CudaRawAllocator::release(void* p) {
  ICD_CUDA_CHECK(cudaSetDevice(device_));
  ICD_CUDA_CHECK(cudaFree(p));  // waits for the device, so no queued kernel still uses p
}

namespace {

// Page-locked host memory. cudaHostAllocPortable: usable by every device's copies, not only the current one.
class PinnedHostRawAllocator : public RawAllocator {
 public:
  void* allocate(std::size_t bytes) override {
    void* p = nullptr;
    cudaError_t error = cudaHostAlloc(&p, bytes, cudaHostAllocPortable);
    if (error != cudaSuccess) {
      cudaGetLastError();  // not sticky: clear it before the allocator retries
      throw_cuda_error(error, "cudaHostAlloc(&p, bytes, cudaHostAllocPortable)", __FILE__, __LINE__);
    }
    return p;
  }
  void release(void* p) override { ICD_CUDA_CHECK(cudaFreeHost(p)); }
};

}  // namespace

CachingAllocator& pinned_host_allocator() {
  static CachingAllocator* allocator = new CachingAllocator(std::make_unique<PinnedHostRawAllocator>());
  return *allocator;  // never deleted: see device_memory.h
}

CachingAllocator& cuda_caching_allocator(int device) {
  return *device_state("cuda_caching_allocator", device).allocator;
}

cudaStream_t cuda_stream(int device) {
  return device_state("cuda_stream", device).stream;
}

void copy_host_to_device(void* device_dst, const void* host_src, std::size_t bytes, int device) {
  copy(device_dst, host_src, bytes, cudaMemcpyHostToDevice, true, "copy_host_to_device", device);
}

void copy_device_to_host(void* host_dst, const void* device_src, std::size_t bytes, int device) {
  copy(host_dst, device_src, bytes, cudaMemcpyDeviceToHost, true, "copy_device_to_host", device);
}

void copy_device_to_device(void* device_dst, const void* device_src, std::size_t bytes, int device) {
  copy(device_dst, device_src, bytes, cudaMemcpyDeviceToDevice, false, "copy_device_to_device", device);
}

}  // namespace icd::cuda
