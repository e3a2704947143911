// engine/device_memory.h with the CUDA backend: device memory from the per-device caching allocator,
// copies on the device's stream. Every entry point first checks that CUDA can be used at all, so a
// machine without a GPU gets the probe's reason rather than a bare cudaMalloc status.
#include <atomic>
#include <cstring>
#include <stdexcept>
#include <string>

#include "engine/cuda/cuda_check.h"
#include "engine/cuda/device_memory.h"
#include "engine/cuda_status.h"
#include "engine/device_memory.h"

namespace icd {
namespace {

void require_cuda(Device device, const std::string& what) {
  if (!device.is_cuda()) return;
  const CudaStatus& status = cuda_status();
  if (!status.available)
    throw std::runtime_error(what + " on " + device.str() + ": CUDA is not available: " + status.reason);
  if (device.index < 0 || device.index >= status.device_count)
    throw std::runtime_error(what + " on " + device.str() + ": this machine has " +
                             std::to_string(status.device_count) + " CUDA device(s)");
}

}  // namespace

void* device_allocate(Device device, std::size_t bytes) {
  if (!device.is_cuda()) throw std::invalid_argument("device_allocate: " + device.str() + " is not a GPU");
  require_cuda(device, "allocating " + std::to_string(bytes) + " bytes");
  return cuda::cuda_caching_allocator(device.index).allocate(bytes);
}

void device_release(Device device, void* p) noexcept {
  if (!p || !device.is_cuda()) return;
  try {
    cuda::cuda_caching_allocator(device.index).release(p);
  } catch (...) {
    // Only reachable for a pointer this allocator never handed out: nothing sensible to do in a destructor.
  }
}

void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device, std::size_t bytes) {
  require_cuda(dst_device, "copy");
  require_cuda(src_device, "copy");
  if (bytes == 0) return;
  if (dst_device.is_cpu() && src_device.is_cpu()) {
    std::memcpy(dst, src, bytes);
  } else if (dst_device.is_cuda() && src_device.is_cpu()) {
    cuda::copy_host_to_device(dst, src, bytes, dst_device.index);
  } else if (dst_device.is_cpu() && src_device.is_cuda()) {
    cuda::copy_device_to_host(dst, src, bytes, src_device.index);
  } else if (dst_device == src_device) {
    cuda::copy_device_to_device(dst, src, bytes, dst_device.index);
  } else {
    throw std::runtime_error("copy from " + src_device.str() + " to " + dst_device.str() +
                             ": copies between two GPUs are not supported (go through the host)");
  }
}

namespace {

// Set once pinned memory has been handed out. Until then no pointer can be pinned, so the release and
// query below (every CPU Storage's destructor calls the first) answer without probing CUDA or locking.
std::atomic<bool> pinned_memory_used{false};

}  // namespace

void* pinned_host_allocate(std::size_t bytes) {
  if (!cuda_status().available) return nullptr;
  void* p = cuda::pinned_host_allocator().allocate(bytes);
  pinned_memory_used.store(true, std::memory_order_release);
  return p;
}

bool pinned_host_release(void* p) noexcept {
  if (!p || !pinned_memory_used.load(std::memory_order_acquire)) return false;
  try {
    CachingAllocator& pinned = cuda::pinned_host_allocator();
    if (!pinned.owns(p)) return false;
    pinned.release(p);
    return true;
  } catch (...) {
    return false;  // unreachable: the block was checked; nothing sensible to do in a destructor
  }
}

bool is_pinned_host(const void* p) noexcept {
  if (!p || !pinned_memory_used.load(std::memory_order_acquire)) return false;
  try {
    return cuda::pinned_host_allocator().owns(p);
  } catch (...) {
    return false;
  }
}

CachingAllocator::Stats device_memory_stats(Device device) {
  if (!device.is_cuda())
    throw std::invalid_argument("device_memory_stats: " + device.str() + " is not a GPU");
  require_cuda(device, "device_memory_stats");
  return cuda::cuda_caching_allocator(device.index).stats();
}

void synchronize(Device device) {
  if (device.is_cpu()) return;
  require_cuda(device, "synchronize");
  ICD_CUDA_CHECK(cudaStreamSynchronize(cuda::cuda_stream(device.index)));
}

}  // namespace icd
