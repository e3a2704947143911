// The launch shape shared by the grid-stride kernels of engine/cuda/*.cu: blocks of kBlockThreads threads,
// at most kMaxGridBlocks of them. That is enough blocks to fill any current GPU several times over; each
// thread's loop covers the rest, so one launch works for every n and each thread amortises its index
// arithmetic over several elements.
#pragma once
#include <algorithm>
#include <cstdint>

namespace icd::cuda {

inline constexpr int kBlockThreads = 256;  // a power of two: the block-wide trees halve it
inline constexpr int64_t kMaxGridBlocks = 4096;

// Blocks for n elements of one thread each (at least one, so an empty launch is still a valid one).
inline int grid_blocks(int64_t n) {
  return int(std::clamp<int64_t>((n + kBlockThreads - 1) / kBlockThreads, 1, kMaxGridBlocks));
}

}  // namespace icd::cuda
