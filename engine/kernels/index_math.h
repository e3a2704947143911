// The addressing of index_select and gather and of their backward (engine/ops/shape.cpp states the
// math), one output element at a time. The CUDA kernels (engine/cuda/indexing.cu) run these bodies and
// tests/test_kernel_bodies.cpp checks them on the CPU.
//
// The backward of an index op is a scatter-add (an x element read several times collects every read's
// gradient). Written as a gather instead, each dx element sums its own contributions in a fixed order,
// with no atomics: the host groups the contributions by the dx element they reach, keeping them in
// ascending order (group_by_target), which is the order the CPU backend adds them in, so the sums agree
// bit for bit.
#pragma once
#include <cstdint>
#include <vector>

#include "engine/hd.h"
#include "engine/kernels/strided_index.h"

namespace icd::kernels {

// index_select with x (contiguous) as [outer, D, inner] and out as [outer, K, inner]:
// out[o, k, i] = x[o, index[k], i]. T is any type of the element's size: this only moves bits.
template <class T>
ICD_HD void index_select_element(const T* x, const int64_t* index, int64_t D, int64_t K, int64_t inner,
                                 int64_t e, T* out) {
  const int64_t i = e % inner, ok = e / inner;
  const int64_t k = ok % K, o = ok / K;
  out[e] = x[(o * D + index[k]) * inner + i];
}

// Its backward, element e = (o, j, i) of dx [outer, D, inner]: the sum of g[o, k, i] over the positions k
// with index[k] == j, which are positions[starts[j] .. starts[j + 1]), ascending.
template <class T>
ICD_HD T index_select_backward_element(const T* g, const int64_t* starts, const int64_t* positions, int64_t D,
                                       int64_t K, int64_t inner, int64_t e) {
  const int64_t i = e % inner, oj = e / inner;
  const int64_t j = oj % D, o = oj / D;
  T acc = T(0);
  for (int64_t s = starts[j]; s < starts[j + 1]; ++s)
    acc += g[(o * K + positions[s]) * inner + i];
  return acc;
}

// gather, element p of out (contiguous, index's shape): `layout` walks index's shape with operand 0 the
// contiguous out (and index, which has the same layout) and operand 1 x with a zero stride along dim;
// the element read is x[that offset + index[p] * dim_stride].
template <class T>
ICD_HD void gather_element(const T* x, const int64_t* index, const StridedLayout<2>& layout,
                           int64_t dim_stride, int64_t p, T* out) {
  int64_t off[2];
  layout.offsets(p, off);
  out[off[0]] = x[off[1] + index[off[0]] * dim_stride];
}

// dx[q] = the sum of g[sources[s]] for s in [starts[q], starts[q + 1]), in that order (gather's backward,
// with the sources of each q ascending).
template <class T>
ICD_HD T segment_sum_element(const T* g, const int64_t* starts, const int64_t* sources, int64_t q) {
  T acc = T(0);
  for (int64_t s = starts[q]; s < starts[q + 1]; ++s)
    acc += g[sources[s]];
  return acc;
}

// Groups positions by target: for every target t in [0, targets), the positions p with target_of[p] == t
// are sources[starts[t] .. starts[t + 1]), ascending (a stable counting sort). Host only.
struct TargetGroups {
  std::vector<int64_t> starts, sources;
};
inline TargetGroups group_by_target(const std::vector<int64_t>& target_of, int64_t targets) {
  TargetGroups groups;
  groups.starts.assign(targets + 1, 0);
  for (int64_t t : target_of)
    ++groups.starts[t + 1];
  for (int64_t t = 0; t < targets; ++t)
    groups.starts[t + 1] += groups.starts[t];
  groups.sources.resize(target_of.size());
  std::vector<int64_t> next(groups.starts.begin(), groups.starts.end() - 1);
  for (std::size_t p = 0; p < target_of.size(); ++p)
    groups.sources[next[target_of[p]]++] = static_cast<int64_t>(p);
  return groups;
}

}  // namespace icd::kernels
