// im2col / col2im (see im2col.h for the layout).
//
// No per-element index arithmetic or bounds test in the inner loops. A block row is walked one output
// row at a time (a "piece": output columns [ow_begin, ow_end) of output row oh). For kernel column j,
// the output columns ow whose input column iw = ow sW - pW + j dW lands inside [0, W) form one range,
// computed once per call; left and right of it lie in the padding (zeros). Inside it, stride 1 reads a
// contiguous run of the input row (a memcpy) and a larger stride reads every sW-th element. A piece whose
// input row ih lies in the padding is zero-filled whole. The commonest case, stride 1 with "same"
// padding, goes further: a whole block row is one memcpy (see im2col_row_same_width).
#include "engine/cpu/im2col.h"

#include <omp.h>

#if defined(__AVX2__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#include "engine/cpu/strided.h"

namespace icd::cpu {
namespace {

// a / b rounded up, for a >= 0 and b > 0.
int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

// The output columns [begin, end) whose input column falls inside the image, for one kernel column.
struct ValidColumns {
  int64_t begin, end;
  int64_t input_offset;  // iw - ow sW, the same for every ow (negative when the window starts in padding)
};

ValidColumns valid_columns(const Im2colGeometry& g, int64_t kernel_col) {
  const int64_t offset = kernel_col * g.dilation_w - g.padding_w;
  int64_t begin = offset >= 0 ? 0 : ceil_div(-offset, g.stride_w);
  int64_t end = g.width - offset <= 0 ? 0 : ceil_div(g.width - offset, g.stride_w);
  begin = std::min(begin, g.out_w);
  end = std::clamp(end, begin, g.out_w);
  return {begin, end, offset};
}

// The tap of a column-matrix row: its channel, kernel row and kernel column.
struct Tap {
  int64_t channel, kernel_row, kernel_col;
};

// The valid columns of every kernel column, computed once per call.
std::vector<ValidColumns> valid_columns_by_kernel_col(const Im2colGeometry& g) {
  std::vector<ValidColumns> table(g.kernel_w);
  for (int64_t j = 0; j < g.kernel_w; ++j)
    table[j] = valid_columns(g, j);
  return table;
}

// Calls visit(row, tap) for the rows of `block` that belong to `channel`, in order.
template <class Visit>
void for_each_row_of_channel(const Im2colGeometry& g, const ColumnBlock& block, int64_t channel,
                             Visit&& visit) {
  int64_t row = channel * g.kernel_h * g.kernel_w;
  for (int64_t kernel_row = 0; kernel_row < g.kernel_h; ++kernel_row)
    for (int64_t kernel_col = 0; kernel_col < g.kernel_w; ++kernel_col, ++row)
      if (row >= block.row_begin && row < block.row_end) visit(row, Tap{channel, kernel_row, kernel_col});
}

// The channels that the rows of `block` belong to: [first, last].
struct ChannelRange {
  int64_t first, last;
};
ChannelRange channels_of(const Im2colGeometry& g, const ColumnBlock& block) {
  const int64_t area = g.kernel_h * g.kernel_w;
  return {block.row_begin / area, (block.row_end - 1) / area};
}

// Calls piece(oh, ow_begin, ow_end, position) for the runs of the block's columns that lie in one output
// row each; `position` is where ow_begin sits within the block row.
template <class Piece>
void for_each_piece(const Im2colGeometry& g, const ColumnBlock& block, Piece&& piece) {
  const int64_t total = block.col_end - block.col_begin;
  int64_t oh = block.col_begin / g.out_w, ow = block.col_begin % g.out_w;
  for (int64_t position = 0; position < total; ++oh, ow = 0) {
    const int64_t ow_end = std::min(g.out_w, ow + (total - position));
    piece(oh, ow, ow_end, position);
    position += ow_end - ow;
  }
}

// dst[0, n) = 0. The runs are mostly one or two elements (the padding columns), so those are stored
// directly rather than through a call to memset.
template <class T>
void zero_short(T* dst, int64_t n) {
  if (n == 1)
    *dst = T(0);
  else if (n > 1)
    std::memset(dst, 0, n * sizeof(T));
}

// One row of the column block, for stride 1 and OW == W (a "same"-padded row: each output row is as
// long as an input row). Output position p = oh OW + ow then reads input element p + shift of the
// channel plane, with shift = (ih - oh) W + (iw - ow) the same for every p. So the block row is one
// memcpy of the plane, shifted, over the output rows whose ih is inside the image; afterwards the few
// positions whose iw falls in the padding (they read a neighbouring row's pixel) are set to zero.
template <class T>
void im2col_row_same_width(const T* plane, const Im2colGeometry& g, const ColumnBlock& block, const Tap& tap,
                           const ValidColumns& valid, T* dst) {
  const int64_t row_offset = tap.kernel_row * g.dilation_h - g.padding_h;  // ih - oh
  const int64_t shift = row_offset * g.width + valid.input_offset;
  // Output rows with ih inside the image, as a range of positions, cut to the block.
  const int64_t first_oh = std::clamp<int64_t>(-row_offset, 0, g.out_h);
  const int64_t end_oh = std::clamp<int64_t>(g.height - row_offset, first_oh, g.out_h);
  const int64_t begin = std::clamp(first_oh * g.out_w, block.col_begin, block.col_end);
  const int64_t end = std::clamp(end_oh * g.out_w, begin, block.col_end);
  // Inside [begin, end) every read lies in the plane except at its two ends, where iw is in the padding.
  const int64_t copy_begin = std::clamp(-shift, begin, end);
  const int64_t copy_end = std::clamp(g.height * g.width - shift, copy_begin, end);
  auto at = [&](int64_t position) { return dst + (position - block.col_begin); };
  std::fill(at(block.col_begin), at(copy_begin), T(0));
  if (copy_end > copy_begin)
    std::memcpy(at(copy_begin), plane + copy_begin + shift, (copy_end - copy_begin) * sizeof(T));
  std::fill(at(copy_end), at(block.col_end), T(0));
  if (valid.begin == 0 && valid.end == g.out_w) return;
  for (int64_t row_start = begin - begin % g.out_w; row_start < end; row_start += g.out_w) {
    const int64_t left = std::max(begin, row_start), right = std::min(end, row_start + g.out_w);
    zero_short(at(left), std::max<int64_t>(0, std::min(right, row_start + valid.begin) - left));
    const int64_t trail = std::max(left, row_start + valid.end);
    zero_short(at(trail), std::max<int64_t>(0, right - trail));
  }
}

// dst[k] = src[2 k] for k < count: the input run under a stride-2 window. In f32 with AVX2, eight
// outputs come from two 8-float loads: shuffle_ps picks the even lanes of each 128-bit half of both,
// and permute4x64 puts the four pairs in order. Reading src[2 k .. 2 k + 15] for the last group would
// pass the run's last element (src[2 count - 2]), possibly the end of the image, so the vector loop
// stops while a full group is left over and the tail goes element by element.
template <class T>
void copy_every_other(const T* src, int64_t count, T* dst) {
  int64_t k = 0;
#if defined(__AVX2__)
  if constexpr (std::is_same_v<T, float>) {
    for (; k + 8 < count; k += 8) {
      const __m256 low = _mm256_loadu_ps(src + 2 * k), high = _mm256_loadu_ps(src + 2 * k + 8);
      const __m256 evens = _mm256_shuffle_ps(low, high, _MM_SHUFFLE(2, 0, 2, 0));  // l0 l2 h0 h2 l4 l6 h4 h6
      _mm256_storeu_ps(
          dst + k, _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(evens), _MM_SHUFFLE(3, 1, 2, 0))));
    }
  }
#endif
  for (; k < count; ++k)
    dst[k] = src[2 * k];
}

// One row of the column block in general: output row by output row, zeros left of the valid columns,
// a copy (a memcpy for stride 1) of the valid ones, zeros right of them.
template <class T>
void im2col_row_pieces(const T* plane, const Im2colGeometry& g, const ColumnBlock& block, const Tap& tap,
                       const ValidColumns& valid, T* dst_row) {
  for_each_piece(g, block, [&](int64_t oh, int64_t ow_begin, int64_t ow_end, int64_t position) {
    T* dst = dst_row + position;  // dst[ow - ow_begin] is output column ow
    const int64_t ih = oh * g.stride_h - g.padding_h + tap.kernel_row * g.dilation_h;
    if (ih < 0 || ih >= g.height) {
      std::fill(dst, dst + (ow_end - ow_begin), T(0));
      return;
    }
    const int64_t copy_begin = std::clamp(valid.begin, ow_begin, ow_end);
    const int64_t copy_end = std::clamp(valid.end, copy_begin, ow_end);
    zero_short(dst, copy_begin - ow_begin);
    if (copy_end > copy_begin) {
      // The input element under output column copy_begin; the next ones follow every sW elements.
      const T* src = plane + ih * g.width + copy_begin * g.stride_w + valid.input_offset;
      T* run = dst + (copy_begin - ow_begin);
      const int64_t count = copy_end - copy_begin;
      if (g.stride_w == 1)
        std::memcpy(run, src, count * sizeof(T));
      else if (g.stride_w == 2)
        copy_every_other(src, count, run);
      else
        for (int64_t k = 0; k < count; ++k)
          run[k] = src[k * g.stride_w];
    }
    zero_short(dst + (copy_end - ow_begin), ow_end - copy_end);
  });
}

// Enough work to be worth waking the other threads, and no parallel region around us already.
bool run_parallel(int64_t elements) {
  return elements >= kParallelGrain && !omp_in_parallel();
}

}  // namespace

template <class T>
void im2col(const T* image, const Im2colGeometry& g, const ColumnBlock& block, T* columns, int64_t ld) {
  if (block.row_end <= block.row_begin) return;
  const int64_t block_cols = block.col_end - block.col_begin;
  const int64_t block_rows = block.row_end - block.row_begin;
  const bool same_width = g.stride_h == 1 && g.stride_w == 1 && g.out_w == g.width;
  const std::vector<ValidColumns> valid = valid_columns_by_kernel_col(g);
  const ChannelRange channels = channels_of(g, block);
#pragma omp parallel for schedule(static) if (run_parallel(block_rows * block_cols))
  for (int64_t channel = channels.first; channel <= channels.last; ++channel) {
    const T* plane = image + channel * g.height * g.width;
    for_each_row_of_channel(g, block, channel, [&](int64_t row, const Tap& tap) {
      T* dst = columns + (row - block.row_begin) * ld;
      if (same_width)
        im2col_row_same_width(plane, g, block, tap, valid[tap.kernel_col], dst);
      else
        im2col_row_pieces(plane, g, block, tap, valid[tap.kernel_col], dst);
    });
  }
}

// Parallel over channels: the rows of one channel overlap in the image (neighbouring windows share
// pixels), the rows of different channels never do, so each thread owns whole channel planes.
template <class T>
void col2im(const T* columns, const Im2colGeometry& g, const ColumnBlock& block, T* image, int64_t ld) {
  if (block.row_end <= block.row_begin) return;
  const int64_t block_cols = block.col_end - block.col_begin;
  const int64_t block_rows = block.row_end - block.row_begin;
  const std::vector<ValidColumns> valid_table = valid_columns_by_kernel_col(g);
  const ChannelRange channels = channels_of(g, block);
#pragma omp parallel for schedule(static) if (run_parallel(block_rows * block_cols))
  for (int64_t channel = channels.first; channel <= channels.last; ++channel) {
    T* plane = image + channel * g.height * g.width;
    for_each_row_of_channel(g, block, channel, [&](int64_t row, const Tap& tap) {
      const ValidColumns& valid = valid_table[tap.kernel_col];
      const T* src_row = columns + (row - block.row_begin) * ld;
      for_each_piece(g, block, [&](int64_t oh, int64_t ow_begin, int64_t ow_end, int64_t position) {
        const int64_t ih = oh * g.stride_h - g.padding_h + tap.kernel_row * g.dilation_h;
        const int64_t add_begin = std::clamp(valid.begin, ow_begin, ow_end);
        const int64_t add_end = std::clamp(valid.end, add_begin, ow_end);
        if (ih < 0 || ih >= g.height || add_end == add_begin) return;
        T* dst = plane + ih * g.width + add_begin * g.stride_w + valid.input_offset;
        const T* run = src_row + position + (add_begin - ow_begin);
        const int64_t count = add_end - add_begin;
        if (g.stride_w == 1) {
          for (int64_t k = 0; k < count; ++k)
            dst[k] += run[k];
        } else {
          for (int64_t k = 0; k < count; ++k)
            dst[k * g.stride_w] += run[k];
        }
      });
    });
  }
}

template void im2col<float>(const float*, const Im2colGeometry&, const ColumnBlock&, float*, int64_t);
template void im2col<double>(const double*, const Im2colGeometry&, const ColumnBlock&, double*, int64_t);
template void col2im<float>(const float*, const Im2colGeometry&, const ColumnBlock&, float*, int64_t);
template void col2im<double>(const double*, const Im2colGeometry&, const ColumnBlock&, double*, int64_t);

}  // namespace icd::cpu
