// A reference-counted block of memory on one device. Tensors are views into a Storage; several
// tensors (a tensor and its transposes, slices, reshapes) may share one.
#pragma once
#include <cstddef>
#include <memory>

#include "engine/device.h"

namespace icd {

class Storage {
 public:
  // Allocates `nbytes` on `device`, aligned to 64 bytes. Contents are uninitialised. `pinned` asks for
  // page-locked host memory (engine/device_memory.h) for a CPU storage that will be uploaded to a GPU;
  // where none can be had (no GPU) the storage is ordinary memory and pinned() says false. Whether the
  // memory is pinned is asked of the pinned allocator, not stored here: the object stays 24 bytes, and
  // glibc's heap turned out to be sensitive to it (a 32-byte Storage cost ResNet-50 training ~140 MB of
  // peak RSS, through where the small control blocks landed among the freed tensor buffers).
  Storage(std::size_t nbytes, Device device, bool pinned = false);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  std::size_t nbytes() const { return nbytes_; }
  Device device() const { return device_; }
  bool pinned() const;

 private:
  void* data_ = nullptr;
  std::size_t nbytes_ = 0;
  Device device_;
};

// Bytes currently held by CPU storages, and the most ever held at once (for memory reports).
std::size_t cpu_bytes_in_use();
std::size_t cpu_bytes_peak();

}  // namespace icd
