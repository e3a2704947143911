// engine/device_memory.h for a build without the CUDA backend: only the CPU exists, and every other
// device is refused with the reason cuda_status() gives.
#include <cstring>
#include <stdexcept>

#include "engine/cuda_status.h"
#include "engine/device_memory.h"

namespace icd {

void* device_allocate(Device device, std::size_t) {
  throw std::runtime_error("device " + device.str() + " is not available: " + cuda_status().reason);
}

void device_release(Device, void*) noexcept {}

void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device, std::size_t bytes) {
  if (!dst_device.is_cpu() || !src_device.is_cpu())
    throw std::runtime_error("copy from " + src_device.str() + " to " + dst_device.str() +
                             ": not available: " + cuda_status().reason);
  if (bytes > 0) std::memcpy(dst, src, bytes);
}

void* pinned_host_allocate(std::size_t) {
  return nullptr;  // no GPU to pin for: the caller uses ordinary memory
}

bool pinned_host_release(void*) noexcept {
  return false;
}

bool is_pinned_host(const void*) noexcept {
  return false;
}

CachingAllocator::Stats device_memory_stats(Device device) {
  throw std::runtime_error("device_memory_stats " + device.str() +
                           ": not available: " + cuda_status().reason);
}

void synchronize(Device device) {
  if (!device.is_cpu())
    throw std::runtime_error("synchronize " + device.str() + ": not available: " + cuda_status().reason);
}

}  // namespace icd
