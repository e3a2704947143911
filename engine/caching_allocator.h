// A caching allocator over a raw backend (cudaMalloc/cudaFree for the CUDA backend, malloc in tests).
// cudaMalloc and cudaFree are slow (cudaFree also synchronises the whole device), so a training step
// must not call them per op: a released block is kept and handed to the next request of the same size.
//
// Policy, chosen to be simple and predictable rather than to pack memory tightly:
// - Sizes are rounded up: requests under 1 MiB to a multiple of 512 bytes, larger ones to a multiple of
//   2 MiB. A zero-byte request gets a 512-byte block, so every live pointer is distinct.
// - Exact-size buckets: a released block goes to the free list of its rounded size and only a request of
//   that same rounded size reuses it. Blocks are never split or merged. A training step asks for the same
//   sizes every iteration, so after the first step every request is a cache hit.
// - Out of memory: when the backend throws (or returns null), every cached block is returned to the
//   backend and the request is tried once more; if that fails too, a std::runtime_error names the
//   request and the totals in use and cached.
// - One stream per device: a block released while kernels that use it are still queued is reused only
//   by work queued after them on that same stream, so stream order alone makes reuse safe. Several
//   streams would need events recorded at release (PyTorch's record_stream); we have one.
// All sizes in Stats are rounded sizes. Thread-safe: one mutex guards everything, the backend call too.
#pragma once
#include <cstddef>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace icd {

// Where the cached blocks come from. allocate throws (any std::exception) or returns null when out of
// memory; release gets only pointers that allocate returned.
struct RawAllocator {
  virtual void* allocate(std::size_t bytes) = 0;
  virtual void release(void* p) = 0;
  virtual ~RawAllocator();
};

class CachingAllocator {
 public:
  struct Stats {
    std::size_t in_use_bytes = 0;       // held by callers
    std::size_t cached_bytes = 0;       // released by callers, kept for reuse
    std::size_t peak_in_use_bytes = 0;  // the most in_use_bytes ever reached
    std::size_t raw_allocations = 0;    // successful calls to the backend's allocate
    std::size_t cache_hits = 0;         // requests served from a free list
  };

  explicit CachingAllocator(std::unique_ptr<RawAllocator> backend);
  // Returns the cached blocks to the backend. Blocks still in use are left alone (their owner frees them).
  ~CachingAllocator();
  CachingAllocator(const CachingAllocator&) = delete;
  CachingAllocator& operator=(const CachingAllocator&) = delete;

  // The size a request of `bytes` is served with (see the policy above).
  static std::size_t rounded_size(std::size_t bytes);

  void* allocate(std::size_t bytes);
  // Gives the block back to the cache. Null is ignored; a pointer this allocator did not hand out (or
  // already took back) throws std::invalid_argument.
  void release(void* p);
  // Whether p is a block this allocator handed out and has not taken back.
  bool owns(const void* p) const;
  // Returns every cached block to the backend (in-use blocks are untouched).
  void empty_cache();
  Stats stats() const;

 private:
  void* allocate_from_backend(std::size_t bytes, std::size_t rounded);
  void empty_cache_locked();

  mutable std::mutex mutex_;
  std::unique_ptr<RawAllocator> backend_;
  std::unordered_map<void*, std::size_t> live_;                     // pointer -> rounded size
  std::unordered_map<std::size_t, std::vector<void*>> free_lists_;  // rounded size -> cached blocks
  Stats stats_;
};

}  // namespace icd
