#include "engine/caching_allocator.h"

#include <cstdio>
#include <limits>
#include <stdexcept>
#include <string>

namespace icd {
namespace {
constexpr std::size_t kSmallLimit = std::size_t(1) << 20;  // requests below 1 MiB ...
constexpr std::size_t kSmallStep = 512;                    // ... round to 512 bytes
constexpr std::size_t kLargeStep = std::size_t(2) << 20;   // larger ones to 2 MiB

std::string mib(std::size_t bytes) {
  return std::to_string(bytes) + " bytes (" + std::to_string(bytes / double(std::size_t(1) << 20)) + " MiB)";
}
}  // namespace

RawAllocator::~RawAllocator() = default;

CachingAllocator::CachingAllocator(std::unique_ptr<RawAllocator> backend) : backend_(std::move(backend)) {
  if (!backend_) throw std::invalid_argument("CachingAllocator: the backend is null");
}

CachingAllocator::~CachingAllocator() {
  // A destructor must not throw; a backend that fails to free at this point can only leak.
  try {
    std::lock_guard<std::mutex> lock(mutex_);
    empty_cache_locked();
  } catch (...) {
  }
}

std::size_t CachingAllocator::rounded_size(std::size_t bytes) {
  if (bytes == 0) return kSmallStep;
  std::size_t step = bytes < kSmallLimit ? kSmallStep : kLargeStep;
  if (bytes > std::numeric_limits<std::size_t>::max() - step)
    throw std::length_error("CachingAllocator: a request of " + std::to_string(bytes) +
                            " bytes is too large");
  return (bytes + step - 1) / step * step;
}

void* CachingAllocator::allocate(std::size_t bytes) {
  std::size_t rounded = rounded_size(bytes);
  std::lock_guard<std::mutex> lock(mutex_);
  void* p = nullptr;
  auto bucket = free_lists_.find(rounded);
  if (bucket != free_lists_.end() && !bucket->second.empty()) {
    p = bucket->second.back();
    bucket->second.pop_back();
    stats_.cached_bytes -= rounded;
    ++stats_.cache_hits;
  } else {
    p = allocate_from_backend(bytes, rounded);
    ++stats_.raw_allocations;
  }
  live_.emplace(p, rounded);
  stats_.in_use_bytes += rounded;
  if (stats_.in_use_bytes > stats_.peak_in_use_bytes) stats_.peak_in_use_bytes = stats_.in_use_bytes;
  return p;
}

// Called with the mutex held. The first failure frees the cache (the memory may be there, parked in
// buckets of other sizes) and tries again; the second one is reported with the totals.
void* CachingAllocator::allocate_from_backend(std::size_t bytes, std::size_t rounded) {
  auto attempt = [&] {
    void* p = backend_->allocate(rounded);
    if (!p) throw std::runtime_error("the backend returned null");
    return p;
  };
  try {
    return attempt();
  } catch (const std::exception&) {
  }
  std::size_t cached_before = stats_.cached_bytes;
  empty_cache_locked();
  try {
    return attempt();
  } catch (const std::exception& e) {
    throw std::runtime_error("CachingAllocator: out of memory allocating " + mib(bytes) + ", rounded to " +
                             std::to_string(rounded) + " bytes, with " + mib(stats_.in_use_bytes) +
                             " in use and " + mib(cached_before) +
                             " cached (the cache was emptied and the allocation retried): " + e.what());
  }
}

bool CachingAllocator::owns(const void* p) const {
  std::lock_guard<std::mutex> lock(mutex_);
  return live_.count(const_cast<void*>(p)) != 0;
}

void CachingAllocator::release(void* p) {
  if (!p) return;
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = live_.find(p);
  if (it == live_.end()) {
    char address[32];
    std::snprintf(address, sizeof address, "%p", p);
    throw std::invalid_argument(std::string("CachingAllocator::release: pointer ") + address +
                                " was not allocated here or was already released");
  }
  std::size_t rounded = it->second;
  live_.erase(it);
  free_lists_[rounded].push_back(p);
  stats_.in_use_bytes -= rounded;
  stats_.cached_bytes += rounded;
}

void CachingAllocator::empty_cache() {
  std::lock_guard<std::mutex> lock(mutex_);
  empty_cache_locked();
}

// Each block leaves the free list before the backend sees it, so a throwing release cannot leave a
// dangling pointer in the cache.
void CachingAllocator::empty_cache_locked() {
  for (auto& [rounded, blocks] : free_lists_) {
    while (!blocks.empty()) {
      void* p = blocks.back();
      blocks.pop_back();
      stats_.cached_bytes -= rounded;
      backend_->release(p);
    }
  }
  free_lists_.clear();
}

CachingAllocator::Stats CachingAllocator::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stats_;
}

}  // namespace icd
