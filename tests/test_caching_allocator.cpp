// The caching allocator over a fake backend that counts its calls and can be told to fail: rounding,
// reuse, the stats through a sequence, empty_cache, the out-of-memory retry, bad releases, two threads.
#include <doctest/doctest.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "engine/caching_allocator.h"

using namespace icd;

namespace {
constexpr std::size_t KiB = 1024, MiB = 1024 * 1024;

// What the fake backend saw. The allocator owns the backend, so the test keeps this record instead.
struct BackendLog {
  int allocate_calls = 0;  // failed ones included
  int release_calls = 0;
  int live_blocks = 0;
  int fail_next = 0;               // the next N allocate calls fail
  bool fail_with_null = false;     // ... by returning null instead of throwing
  std::vector<std::size_t> sizes;  // the size of each allocate call
};

struct FakeBackend : RawAllocator {
  explicit FakeBackend(BackendLog& log) : log(log) {}
  void* allocate(std::size_t bytes) override {
    ++log.allocate_calls;
    log.sizes.push_back(bytes);
    if (log.fail_next > 0) {
      --log.fail_next;
      if (log.fail_with_null) return nullptr;
      throw std::runtime_error("fake backend: out of memory");
    }
    ++log.live_blocks;
    return std::malloc(bytes);
  }
  void release(void* p) override {
    ++log.release_calls;
    --log.live_blocks;
    std::free(p);
  }
  BackendLog& log;
};

std::string message_of(CachingAllocator& allocator, std::size_t bytes) {
  try {
    allocator.allocate(bytes);
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "";
}
}  // namespace

TEST_CASE("rounded sizes: 512-byte steps below 1 MiB, 2 MiB steps from 1 MiB") {
  CHECK(CachingAllocator::rounded_size(0) == 512);
  CHECK(CachingAllocator::rounded_size(1) == 512);
  CHECK(CachingAllocator::rounded_size(512) == 512);
  CHECK(CachingAllocator::rounded_size(513) == 1024);
  CHECK(CachingAllocator::rounded_size(MiB - 1) == MiB);
  CHECK(CachingAllocator::rounded_size(MiB) == 2 * MiB);
  CHECK(CachingAllocator::rounded_size(2 * MiB) == 2 * MiB);
  CHECK(CachingAllocator::rounded_size(2 * MiB + 1) == 4 * MiB);
  CHECK_THROWS_AS(CachingAllocator::rounded_size(~std::size_t(0)), std::length_error);

  BackendLog log;
  CachingAllocator allocator(std::make_unique<FakeBackend>(log));
  void* a = allocator.allocate(100);
  void* b = allocator.allocate(3 * MiB);
  CHECK(log.sizes == std::vector<std::size_t>{512, 4 * MiB});
  std::memset(b, 1, 3 * MiB);  // the whole request is usable (ASan would catch an overrun)
  allocator.release(a);
  allocator.release(b);
}

TEST_CASE("a released block is reused by the next request of the same rounded size only") {
  BackendLog log;
  CachingAllocator allocator(std::make_unique<FakeBackend>(log));
  void* a = allocator.allocate(1000);  // 1024
  allocator.release(a);
  void* b = allocator.allocate(700);  // also 1024: served from the cache
  CHECK(b == a);
  CHECK(log.allocate_calls == 1);
  CHECK(allocator.stats().cache_hits == 1);
  CHECK(allocator.stats().raw_allocations == 1);

  void* c = allocator.allocate(1500);  // 1536: a different bucket, so a new block
  CHECK(c != b);
  CHECK(log.allocate_calls == 2);
  allocator.release(c);
  void* d = allocator.allocate(1024);  // the 1536 block is cached but is not this size
  CHECK(log.allocate_calls == 3);
  CHECK(allocator.stats().cache_hits == 1);
  // owns: the blocks handed out and not taken back; not a cached one, not a foreign pointer.
  CHECK(allocator.owns(b));
  CHECK(allocator.owns(d));
  CHECK_FALSE(allocator.owns(c));
  int elsewhere = 0;
  CHECK_FALSE(allocator.owns(&elsewhere));
  allocator.release(b);
  CHECK_FALSE(allocator.owns(b));
  allocator.release(d);
}

TEST_CASE("stats follow a sequence of allocations and releases") {
  BackendLog log;
  CachingAllocator allocator(std::make_unique<FakeBackend>(log));
  void* a = allocator.allocate(10 * KiB);  // 10 KiB
  void* b = allocator.allocate(3 * MiB);   // 4 MiB
  CachingAllocator::Stats s = allocator.stats();
  CHECK(s.in_use_bytes == 10 * KiB + 4 * MiB);
  CHECK(s.cached_bytes == 0);
  CHECK(s.peak_in_use_bytes == 10 * KiB + 4 * MiB);

  allocator.release(b);
  s = allocator.stats();
  CHECK(s.in_use_bytes == 10 * KiB);
  CHECK(s.cached_bytes == 4 * MiB);
  CHECK(s.peak_in_use_bytes == 10 * KiB + 4 * MiB);

  void* c = allocator.allocate(4 * MiB);  // reuses b's block
  void* d = allocator.allocate(512);
  s = allocator.stats();
  CHECK(c == b);
  CHECK(s.in_use_bytes == 10 * KiB + 4 * MiB + 512);
  CHECK(s.cached_bytes == 0);
  CHECK(s.peak_in_use_bytes == 10 * KiB + 4 * MiB + 512);
  CHECK(s.raw_allocations == 3);
  CHECK(s.cache_hits == 1);

  allocator.release(a);
  allocator.release(c);
  allocator.release(d);
  s = allocator.stats();
  CHECK(s.in_use_bytes == 0);
  CHECK(s.cached_bytes == 10 * KiB + 4 * MiB + 512);
  CHECK(s.peak_in_use_bytes == 10 * KiB + 4 * MiB + 512);
  CHECK(log.release_calls == 0);  // nothing went back to the backend yet
}

TEST_CASE("empty_cache returns every cached block to the backend and leaves in-use blocks alone") {
  BackendLog log;
  {
    CachingAllocator allocator(std::make_unique<FakeBackend>(log));
    void* kept = allocator.allocate(2 * KiB);
    for (std::size_t bytes : {KiB, KiB, 5 * MiB})
      allocator.release(allocator.allocate(bytes));
    // The two 1 KiB requests shared one block: 3 backend blocks in all, 2 of them cached.
    CHECK(log.live_blocks == 3);
    allocator.empty_cache();
    CHECK(log.release_calls == 2);
    CHECK(log.live_blocks == 1);
    CHECK(allocator.stats().cached_bytes == 0);
    CHECK(allocator.stats().in_use_bytes == 2 * KiB);

    void* again = allocator.allocate(KiB);  // the cache is empty: a new backend block
    CHECK(log.allocate_calls == 4);
    allocator.release(again);
    allocator.release(kept);
  }
  CHECK(log.live_blocks == 0);  // the destructor returned the last cached blocks
}

TEST_CASE("out of memory: the cache is emptied and the request retried once") {
  BackendLog log;
  CachingAllocator allocator(std::make_unique<FakeBackend>(log));
  allocator.release(allocator.allocate(8 * MiB));  // parked in the 8 MiB bucket

  SUBCASE("the retry succeeds") {
    log.fail_next = 1;
    void* p = allocator.allocate(3000);
    CHECK(p != nullptr);
    CHECK(log.allocate_calls == 3);  // the first block, the failure, the retry
    CHECK(log.release_calls == 1);   // the cached 8 MiB block went back before the retry
    CHECK(allocator.stats().cached_bytes == 0);
    CHECK(allocator.stats().in_use_bytes == 3072);
    CHECK(allocator.stats().raw_allocations == 2);
    allocator.release(p);
  }
  SUBCASE("a backend that returns null is treated the same way") {
    log.fail_next = 1;
    log.fail_with_null = true;
    void* p = allocator.allocate(3000);
    CHECK(p != nullptr);
    CHECK(log.release_calls == 1);
    allocator.release(p);
  }
  SUBCASE("a second failure is reported with the request and the totals") {
    void* held = allocator.allocate(KiB);
    log.fail_next = 2;
    std::string message = message_of(allocator, 3000);
    CHECK(message.find("3000 bytes") != std::string::npos);
    CHECK(message.find("rounded to 3072 bytes") != std::string::npos);
    CHECK(message.find("1024 bytes") != std::string::npos);     // in use
    CHECK(message.find("8388608 bytes") != std::string::npos);  // cached before the retry
    CHECK(message.find("fake backend: out of memory") != std::string::npos);
    CHECK(log.allocate_calls == 4);
    CHECK(allocator.stats().in_use_bytes == KiB);  // the failed request left no trace
    CHECK(allocator.stats().cached_bytes == 0);
    allocator.release(held);
  }
}

TEST_CASE("release of a pointer that is not live throws std::invalid_argument") {
  BackendLog log;
  CachingAllocator allocator(std::make_unique<FakeBackend>(log));
  int not_ours = 0;
  CHECK_THROWS_AS(allocator.release(&not_ours), std::invalid_argument);
  void* p = allocator.allocate(64);
  allocator.release(p);
  CHECK_THROWS_AS(allocator.release(p), std::invalid_argument);  // released twice
  CHECK_NOTHROW(allocator.release(nullptr));
  CHECK(allocator.stats().cached_bytes == 512);
  CHECK_THROWS_AS(CachingAllocator(nullptr), std::invalid_argument);
}

TEST_CASE("two threads allocating and releasing keep the stats consistent") {
  BackendLog log;
  CachingAllocator allocator(std::make_unique<FakeBackend>(log));
  constexpr int iterations = 20000;
  std::vector<int> corrupted(2, 0);
  std::atomic<int> ready{0};
  auto work = [&](int thread) {
    // Start together, so the two threads really do overlap.
    ready.fetch_add(1);
    while (ready.load() < 2)
      std::this_thread::yield();
    std::vector<void*> held;
    for (int i = 0; i < iterations; ++i) {
      std::size_t bytes = 512 * std::size_t(1 + (i * 7 + thread) % 5);
      unsigned char* p = static_cast<unsigned char*>(allocator.allocate(bytes));
      // A block handed to both threads at once would see the other thread's byte.
      std::memset(p, thread + 1, bytes);
      held.push_back(p);
      if (held.size() == 4) {
        for (void* q : held) {
          auto* bytes_of = static_cast<unsigned char*>(q);
          if (bytes_of[0] != thread + 1 || bytes_of[511] != thread + 1) ++corrupted[thread];
          allocator.release(q);
        }
        held.clear();
      }
    }
    for (void* q : held)
      allocator.release(q);
  };
  std::thread first(work, 0), second(work, 1);
  first.join();
  second.join();

  CachingAllocator::Stats s = allocator.stats();
  CHECK(corrupted == std::vector<int>{0, 0});
  CHECK(s.in_use_bytes == 0);
  CHECK(s.raw_allocations + s.cache_hits == 2 * iterations);
  CHECK(s.raw_allocations == std::size_t(log.allocate_calls));
  CHECK(log.live_blocks == int(s.raw_allocations));
  CHECK(s.peak_in_use_bytes <= 2 * 4 * 5 * 512);  // at most 4 blocks of at most 2560 bytes per thread
  std::size_t cached = 0;
  for (std::size_t i = 0; i < log.sizes.size(); ++i)
    cached += log.sizes[i];
  CHECK(s.cached_bytes == cached);  // every block the backend gave is now in the cache
}
