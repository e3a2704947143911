// Memory on a device other than the CPU, and copies between any two devices: the one place where
// Storage and tensor transfers meet a backend. Declared for every build: engine/cuda/device_bridge.cpp
// implements it with the CUDA backend's caching allocator and stream, engine/device_memory_without_cuda.cpp
// (builds without CUDA) refuses every non-CPU device with a message that says why.
#pragma once
#include <cstddef>

#include "engine/caching_allocator.h"
#include "engine/device.h"

namespace icd {

// `bytes` on `device` (not the CPU); throws std::runtime_error naming the device and why it cannot be
// used (no GPU, no driver, a build without CUDA, out of memory).
void* device_allocate(Device device, std::size_t bytes);
// Gives back a block device_allocate returned (to the caching allocator: no cudaFree per tensor).
void device_release(Device device, void* p) noexcept;
// Copies `bytes` from src on src_device to dst on dst_device, any pair of devices; returns when dst can
// be read (a copy to the host) or when later work on the device will see it (device to device).
void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device, std::size_t bytes);
// Page-locked ("pinned") host memory, which the GPU reads by DMA: copies from it to a device run at full
// bus speed, where ordinary memory is first staged through a driver buffer. Blocks come from a caching
// allocator (pinning is slow). Returns nullptr when no GPU can be used (a build without CUDA, no driver,
// no device): the caller then uses ordinary memory, which works the same, only slower to upload.
void* pinned_host_allocate(std::size_t bytes);
// Gives p back and returns true if it is a block pinned_host_allocate returned; returns false, doing
// nothing, for any other pointer (ordinary memory). Whether p is pinned is asked of the allocator rather
// than stored beside it: see engine/storage.h.
bool pinned_host_release(void* p) noexcept;
bool is_pinned_host(const void* p) noexcept;
// The statistics of `device`'s caching allocator (in use, cached, peak in use), e.g. for benchmarks;
// throws naming the device when it is not a GPU this process can use.
CachingAllocator::Stats device_memory_stats(Device device);
// Returns when all work queued on `device` so far has finished (nothing to wait for on the CPU). Only
// timing needs it: copies to the host already wait for the work before them.
void synchronize(Device device);

}  // namespace icd
