// Where element i of a strided tensor lives. Kernels over strided tensors number the elements of the
// iteration shape row-major, i = 0 .. numel-1, and each operand (the output and every input) reads its
// own strides: element (j0, ..., jk) of operand o is at  sum_d j_d * strides[o][d]  from the operand's
// first element. A broadcast dimension has stride 0; permuted, sliced and expanded views are all just
// strides. The layout is a small struct passed to CUDA kernels by value (kernel parameters), and the
// same ICD_HD functions compute the offsets in the CPU launch (engine/kernels/launch.h).
//
// make_strided_layout (host only) builds one from a shape and the operands' strides: it drops size-1
// dimensions and merges neighbouring dimensions that are laid out back to back in every operand, so a
// contiguous tensor is one dimension (a single multiply per offset) and most views fit kMaxDims.
#pragma once
#include <array>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "engine/hd.h"

namespace icd::kernels {

constexpr int kMaxDims = 8;

template <int N>
struct StridedLayout {
  int ndim = 0;       // 0: one element (every offset is 0)
  int64_t numel = 1;  // the product of sizes
  int64_t sizes[kMaxDims] = {};
  int64_t strides[N][kMaxDims] = {};

  // The offset of element i in operand `operand`.
  ICD_HD int64_t offset(int operand, int64_t i) const {
    if (ndim == 1) return i * strides[operand][0];
    int64_t offset = 0;
    for (int d = ndim - 1; d >= 0; --d) {
      const int64_t index = i % sizes[d];
      i /= sizes[d];
      offset += index * strides[operand][d];
    }
    return offset;
  }

  // The offsets of element i in every operand at once (the index digits are computed once).
  ICD_HD void offsets(int64_t i, int64_t (&out)[N]) const {
    for (int o = 0; o < N; ++o)
      out[o] = 0;
    for (int d = ndim - 1; d >= 0; --d) {
      const int64_t index = d == 0 ? i : i % sizes[d];
      i /= sizes[d];
      for (int o = 0; o < N; ++o)
        out[o] += index * strides[o][d];
    }
  }
};

// The layout of `shape` read through each operand's strides (each the same length as shape). `op`
// names the caller in the error thrown when more than kMaxDims dimensions remain after merging.
template <int N>
StridedLayout<N> make_strided_layout(const std::vector<int64_t>& shape,
                                     const std::array<std::vector<int64_t>, N>& strides, const char* op) {
  StridedLayout<N> layout;
  for (int o = 0; o < N; ++o)
    if (strides[o].size() != shape.size())
      throw std::invalid_argument(std::string(op) + ": operand " + std::to_string(o) + " has " +
                                  std::to_string(strides[o].size()) + " strides for " +
                                  std::to_string(shape.size()) + " dimensions");
  std::vector<int64_t> sizes;
  std::array<std::vector<int64_t>, N> merged;
  for (std::size_t d = 0; d < shape.size(); ++d) {
    layout.numel *= shape[d];
    if (shape[d] == 1) continue;
    bool merge = !sizes.empty();
    for (int o = 0; o < N && merge; ++o)
      merge = merged[o].back() == strides[o][d] * shape[d];
    if (merge) {
      sizes.back() *= shape[d];
      for (int o = 0; o < N; ++o)
        merged[o].back() = strides[o][d];
    } else {
      sizes.push_back(shape[d]);
      for (int o = 0; o < N; ++o)
        merged[o].push_back(strides[o][d]);
    }
  }
  if (layout.numel == 0) return layout;  // nothing to visit; callers launch no work
  if (sizes.size() > std::size_t(kMaxDims))
    throw std::invalid_argument(std::string(op) + ": " + std::to_string(sizes.size()) +
                                " dimensions remain after merging contiguous ones; kernels take at most " +
                                std::to_string(kMaxDims));
  layout.ndim = int(sizes.size());
  for (int d = 0; d < layout.ndim; ++d) {
    layout.sizes[d] = sizes[d];
    for (int o = 0; o < N; ++o)
      layout.strides[o][d] = merged[o][d];
  }
  return layout;
}

}  // namespace icd::kernels
