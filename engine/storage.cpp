#include "engine/storage.h"

#include <atomic>
#include <cstdlib>
#include <new>
#include <stdexcept>
#include <string>

#include "engine/device_memory.h"

namespace icd {
namespace {
std::atomic<std::size_t> g_cpu_in_use{0};
std::atomic<std::size_t> g_cpu_peak{0};

void note_allocation(std::size_t nbytes) {
  std::size_t now = g_cpu_in_use.fetch_add(nbytes) + nbytes;
  std::size_t peak = g_cpu_peak.load();
  while (now > peak && !g_cpu_peak.compare_exchange_weak(peak, now)) {
  }
}
}  // namespace

Storage::Storage(std::size_t nbytes, Device device, bool pinned) : nbytes_(nbytes), device_(device) {
  if (!device.is_cpu()) {
    data_ = device_allocate(device, nbytes);  // the backend's caching allocator; throws saying why not
    return;
  }
  if (pinned && (data_ = pinned_host_allocate(nbytes))) {  // 256-byte aligned by cudaHostAlloc
    note_allocation(nbytes);
    return;
  }
  // aligned_alloc needs a size that is a multiple of the alignment; never ask for zero bytes.
  std::size_t rounded = (nbytes + 63) / 64 * 64;
  if (rounded == 0) rounded = 64;
  data_ = std::aligned_alloc(64, rounded);
  if (!data_) throw std::bad_alloc();
  note_allocation(nbytes);
}

Storage::~Storage() {
  if (device_.is_cpu()) {
    if (!pinned_host_release(data_)) std::free(data_);
    g_cpu_in_use.fetch_sub(nbytes_);
  } else {
    device_release(device_, data_);
  }
}

bool Storage::pinned() const {
  return device_.is_cpu() && is_pinned_host(data_);
}

std::size_t cpu_bytes_in_use() {
  return g_cpu_in_use.load();
}
std::size_t cpu_bytes_peak() {
  return g_cpu_peak.load();
}

}  // namespace icd
