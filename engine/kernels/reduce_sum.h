// The sum over a set of dimensions, as the CUDA backend computes it, and its plan: how one output's
// elements are split among chunks (blocks) and threads, and in which order the partial sums combine.
// The order is fixed by the plan alone (no atomics), so a sum is the same bit for bit on every run, and
// the CPU launch (engine/kernels/launch.h, cpu_launch_sum) reproduces it exactly.
//
// x is seen as outputs x per_output: element j of output o is at  outer.offset(0, o) + inner.offset(0, j)
// (outer: the kept dimensions in order, inner: the reduced ones, both with x's strides). Sums accumulate
// in double for f32 and f64 alike, as the CPU backend does (engine/ops/reduce.cpp).
#pragma once
#include <algorithm>
#include <cstdint>

#include "engine/hd.h"
#include "engine/kernels/strided_index.h"

namespace icd::kernels {

struct SumLayout {
  StridedLayout<1> outer;  // numel = the number of outputs
  StridedLayout<1> inner;  // numel = elements summed into each output
};

// Output o's elements begin, begin + step, ... below end, summed in that order.
template <class Acc, class T>
ICD_HD Acc sum_strided_range(const T* x, const SumLayout& layout, int64_t o, int64_t begin, int64_t end,
                             int64_t step) {
  const T* base = x + layout.outer.offset(0, o);
  Acc acc = Acc(0);
  for (int64_t j = begin; j < end; j += step)
    acc += static_cast<Acc>(base[layout.inner.offset(0, j)]);
  return acc;
}

// Each output's elements are cut into `chunks` consecutive ranges of chunk_length; `threads` (a power
// of two) threads share a range, thread t taking elements t, t + threads, ...; their partial sums then
// combine pairwise in a tree (for s = threads/2, ..., 1: p[t] += p[t + s]), and the chunks' sums add up
// in chunk order. threads == 1 is one thread per output summing its elements in order.
struct SumPlan {
  int threads = 1;
  int64_t chunks = 1;
  int64_t chunk_length = 0;
};

constexpr int kSumThreads = 256;
// Outputs of at most this many elements get one thread each (a block per output would idle).
constexpr int64_t kSumSerialLength = 32;
// A chunk is at least this long; below kSumFillBlocks outputs, their elements are split into more
// chunks so that the GPU still runs about that many blocks.
constexpr int64_t kSumMinChunk = 16384;
constexpr int64_t kSumFillBlocks = 1024;

inline SumPlan plan_sum(int64_t outputs, int64_t per_output) {
  SumPlan plan;
  plan.chunk_length = per_output;
  if (per_output <= kSumSerialLength || outputs == 0) return plan;
  plan.threads = kSumThreads;
  const int64_t wanted = std::max<int64_t>(1, kSumFillBlocks / outputs);
  const int64_t most = std::max<int64_t>(1, per_output / kSumMinChunk);
  const int64_t chunks = std::min(wanted, most);
  plan.chunk_length = (per_output + chunks - 1) / chunks;
  plan.chunks = (per_output + plan.chunk_length - 1) / plan.chunk_length;
  return plan;
}

}  // namespace icd::kernels
