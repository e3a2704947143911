// Loops over strided tensors on the CPU. Elementwise kernels see a tensor as "rows": runs of elements
// along the innermost dimension, each with one stride per operand. Adjacent dimensions that are laid
// out back to back in every operand are merged first, so a contiguous tensor is a single long row and
// the inner loop vectorises.
#pragma once
#include <algorithm>
#include <array>
#include <cstdint>
#include <vector>

#include "engine/tensor.h"

namespace icd::cpu {

// Calls f(offset) for every element of (shape, strides) in row-major order, on this thread.
template <class F>
void for_each_offset(const Shape& shape, const Shape& strides, F&& f) {
  const int64_t ndim = static_cast<int64_t>(shape.size());
  const int64_t n = shape_numel(shape);
  if (n == 0) return;
  if (ndim == 0) {
    f(int64_t{0});
    return;
  }
  std::vector<int64_t> index(ndim, 0);
  int64_t offset = 0;
  const int64_t inner = shape[ndim - 1], inner_stride = strides[ndim - 1];
  for (int64_t done = 0; done < n; done += inner) {
    for (int64_t i = 0; i < inner; ++i)
      f(offset + i * inner_stride);
    for (int64_t d = ndim - 2; d >= 0; --d) {  // odometer step over the outer dimensions
      offset += strides[d];
      if (++index[d] < shape[d]) break;
      offset -= strides[d] * shape[d];
      index[d] = 0;
    }
  }
}

template <std::size_t N>
struct RowLayout {
  Shape shape;                   // merged outer dims + the inner dim last (at least one dim)
  std::array<Shape, N> strides;  // per operand, same length as shape
};

// Merges dimensions that are contiguous with their neighbour in all operands and drops size-1 dims.
template <std::size_t N>
RowLayout<N> coalesce(const Shape& shape, const std::array<Shape, N>& strides) {
  RowLayout<N> layout;
  for (std::size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    bool merge = !layout.shape.empty();
    for (std::size_t k = 0; k < N && merge; ++k)
      merge = layout.strides[k].back() == strides[k][d] * shape[d];
    if (merge) {
      layout.shape.back() *= shape[d];
      for (std::size_t k = 0; k < N; ++k)
        layout.strides[k].back() = strides[k][d];
    } else {
      layout.shape.push_back(shape[d]);
      for (std::size_t k = 0; k < N; ++k)
        layout.strides[k].push_back(strides[k][d]);
    }
  }
  if (layout.shape.empty()) {
    layout.shape.push_back(1);
    for (std::size_t k = 0; k < N; ++k)
      layout.strides[k].push_back(0);
  }
  return layout;
}

// Elements below this count run on one thread: the fork/join would cost more than it saves.
constexpr int64_t kParallelGrain = 32768;

// Calls row(offsets, n, inner_strides) for each innermost run of the N operands, where offsets[k] is
// the element offset of the run's first element in operand k. Runs are shared among OpenMP threads.
template <std::size_t N, class Row>
void for_each_row(const Shape& shape, const std::array<Shape, N>& strides, Row&& row) {
  const int64_t numel = shape_numel(shape);
  if (numel == 0) return;
  RowLayout<N> layout = coalesce<N>(shape, strides);
  const int64_t ndim = static_cast<int64_t>(layout.shape.size());
  const int64_t inner = layout.shape[ndim - 1];
  const int64_t rows = numel / inner;
  std::array<int64_t, N> inner_strides;
  for (std::size_t k = 0; k < N; ++k)
    inner_strides[k] = layout.strides[k][ndim - 1];
  // Long rows are cut into chunks so that even one contiguous row is shared among threads.
  const bool parallel = numel >= kParallelGrain;
  const int64_t chunk = parallel ? std::min<int64_t>(inner, 16384) : inner;
  const int64_t chunks_per_row = (inner + chunk - 1) / chunk;
  auto run = [&](int64_t piece) {
    const int64_t r = piece / chunks_per_row, start = (piece % chunks_per_row) * chunk;
    std::array<int64_t, N> offsets{};
    int64_t rest = r;
    for (int64_t d = ndim - 2; d >= 0; --d) {
      int64_t i = rest % layout.shape[d];
      rest /= layout.shape[d];
      for (std::size_t k = 0; k < N; ++k)
        offsets[k] += i * layout.strides[k][d];
    }
    for (std::size_t k = 0; k < N; ++k)
      offsets[k] += start * inner_strides[k];
    row(offsets, std::min(chunk, inner - start), inner_strides);
  };
  const int64_t pieces = rows * chunks_per_row;
  if (parallel && pieces > 1) {
#pragma omp parallel for schedule(static)
    for (int64_t p = 0; p < pieces; ++p)
      run(p);
  } else {
    for (int64_t p = 0; p < pieces; ++p)
      run(p);
  }
}

}  // namespace icd::cpu
