// DETR's normalised sine position embedding, one element at a time, for feature levels whose valid
// (unpadded) cells form the top-left rectangle of each level: the arithmetic of engine/ops/position.h,
// run by the CPU loop there and by the CUDA kernel (engine/cuda/position.cu).
//
// Along each axis, a cell's count is the number of valid cells up to and including it down its column
// (y) or along its row (x), and last is that column's or row's total; for a rectangle of rows x cols
// valid cells, at (y, x):
//   y: count = x < cols ? min(y + 1, rows) : 0,   last = x < cols ? rows : 0
//   x: count = y < rows ? min(x + 1, cols) : 0,   last = y < rows ? cols : 0
// e = count / (last + 1e-6) 2 pi; with n = channels / 2 and f_k = 10000^(2k / n), channel 2k of an axis is
// sin(e / f_k) and 2k + 1 is cos(e / f_k); channels [0, n) are the y axis, [n, 2n) the x axis. The
// expressions are those of distill/conditional_decoder.cpp's table, so the CPU results agree bit for bit.
#pragma once
#include <cmath>
#include <cstdint>

#include "engine/hd.h"

namespace icd::kernels {

template <class T>
ICD_HD T sine_position_element(int64_t y, int64_t x, int64_t rows, int64_t cols, int64_t channel,
                               int64_t channels) {
  const int64_t per_axis = channels / 2;
  const bool y_axis = channel < per_axis;
  const int64_t j = y_axis ? channel : channel - per_axis;
  const bool along_valid = y_axis ? x < cols : y < rows;  // the column (y) or row (x) has valid cells
  const int64_t position = y_axis ? y : x, extent = y_axis ? rows : cols;
  const int64_t count = along_valid ? (position + 1 < extent ? position + 1 : extent) : 0;
  const int64_t last = along_valid ? extent : 0;
  const double frequency =
      std::pow(10000.0, 2.0 * static_cast<double>(j / 2) / static_cast<double>(per_axis));
  const double e = static_cast<double>(count) / (static_cast<double>(last) + 1e-6) * 2.0 * 3.141592653589793;
  return static_cast<T>(j % 2 == 0 ? std::sin(e / frequency) : std::cos(e / frequency));
}

// The levels of a pyramid as a kernel argument (by value): where each starts in S, and its size.
inline constexpr int kMaxPositionLevels = 8;
struct PositionLevels {
  int count = 0;
  int64_t start[kMaxPositionLevels];
  int64_t height[kMaxPositionLevels];
  int64_t width[kMaxPositionLevels];
};

// Element i of out [S, B, channels] (row-major): its level, cell, image and channel, then the value.
// extents: [B, count, 2] row-major, each image's valid rows and cols per level.
template <class T>
ICD_HD T sine_position_at(const PositionLevels& levels, const int64_t* extents, int64_t batch,
                          int64_t channels, int64_t i) {
  const int64_t channel = i % channels, b = (i / channels) % batch, s = i / (channels * batch);
  int l = 0;
  while (l + 1 < levels.count && s >= levels.start[l + 1])
    ++l;
  const int64_t cell = s - levels.start[l], y = cell / levels.width[l], x = cell % levels.width[l];
  const int64_t* extent = extents + (b * levels.count + l) * 2;
  return sine_position_element<T>(y, x, extent[0], extent[1], channel, channels);
}

}  // namespace icd::kernels
