// Device memory for the CUDA backend: one caching allocator and one stream per device, and the copies
// between host and device. Everything a device does is queued on its one stream, in order, which is
// what makes the allocator's reuse of released blocks safe (see engine/caching_allocator.h).
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>

#include "engine/caching_allocator.h"

namespace icd::cuda {

// cudaMalloc/cudaFree on one device; an out-of-memory cudaMalloc throws (the caching allocator then
// empties its cache and retries once).
class CudaRawAllocator : public RawAllocator {
 public:
  explicit CudaRawAllocator(int device) : device_(device) {}
  void* allocate(std::size_t bytes) override;
  void release(void* p) override;

 private:
  int device_;
};

// The process-wide allocator and stream of `device`, created on first use. Both live until the process
// ends: freeing them from static destructors would race CUDA's own teardown, and the driver reclaims
// a process's memory and streams anyway. Throw when CUDA is unavailable or `device` does not exist.
CachingAllocator& cuda_caching_allocator(int device);
// Page-locked host memory (cudaHostAlloc / cudaFreeHost) behind a caching allocator, one per process,
// living until the process ends like the device allocators.
CachingAllocator& pinned_host_allocator();
cudaStream_t cuda_stream(int device);

// A block of `device`'s caching allocator for one call's scratch space (a cuDNN workspace, CUB's
// temporary storage), given back when it goes out of scope: once the call that uses it is queued, later
// work on the one stream runs after it (see engine/caching_allocator.h). Zero bytes: no block, null data.
class DeviceBuffer {
 public:
  DeviceBuffer(int device, std::size_t bytes)
      : device_(device),
        bytes_(bytes),
        data_(bytes ? cuda_caching_allocator(device).allocate(bytes) : nullptr) {}
  ~DeviceBuffer() {
    if (data_) cuda_caching_allocator(device_).release(data_);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  void* data() const { return data_; }
  std::size_t bytes() const { return bytes_; }
  template <class T>
  T* as() const {
    return static_cast<T*>(data_);
  }

 private:
  int device_;
  std::size_t bytes_;
  void* data_;
};

// Copies of `bytes` bytes queued on the device's stream. host_to_device and device_to_host return when
// the copy is complete (the host buffer may then be reused or read); device_to_device returns at once
// and is ordered before any later work on the stream.
void copy_host_to_device(void* device_dst, const void* host_src, std::size_t bytes, int device);
void copy_device_to_host(void* host_dst, const void* device_src, std::size_t bytes, int device);
void copy_device_to_device(void* device_dst, const void* device_src, std::size_t bytes, int device);

}  // namespace icd::cuda
