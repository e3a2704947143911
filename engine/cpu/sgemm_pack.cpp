// Packing for the f32 GEMM (see sgemm_pack.h). The packed layouts interleave the operand: an A panel
// stores column k of six rows together, a B panel row k of sixteen columns. Copying element by element
// would spend a load and a store per float, which is comparable to the product itself when one of the
// GEMM's dimensions is small (conv2d: 64 output channels, or 98 output positions per task). So whole
// 8 x 8 tiles are loaded as 8 vectors, transposed in registers (unpack / shuffle / permute, 24
// instructions) and stored as 8 vectors wherever the source runs the other way from the panel.
#include "engine/cpu/sgemm_pack.h"

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>

#include <algorithm>

#include "engine/cpu/sgemm_kernel.h"

namespace icd::cpu::sgemm {
namespace {

static_assert(kMR == 6 && kNR == 16, "the packing routines are written for a 6 x 16 register tile");

// Transposes the 8 x 8 tile held in r[0..8) (r[i] = row i) in place (r[j] = column j).
inline void transpose_8x8(__m256 r[8]) {
  const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
  const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
  const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
  const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
  const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
  const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
  const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  r[0] = _mm256_permute2f128_ps(u0, u4, 0x20);
  r[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
  r[2] = _mm256_permute2f128_ps(u2, u6, 0x20);
  r[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
  r[4] = _mm256_permute2f128_ps(u0, u4, 0x31);
  r[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
  r[6] = _mm256_permute2f128_ps(u2, u6, 0x31);
  r[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

// One A panel of `rows` (<= kMR) rows whose elements along k are contiguous (a plain A).
void pack_a_panel_rows(const float* src, int64_t row_stride, int64_t rows, int64_t kc, float* out) {
  int64_t k = 0;
  if (rows == kMR) {
    // Eight columns at a time: six rows of 8 (plus two zero rows) transposed into 8 columns of 6 (plus two
    // zeros). Column j is stored as 8 lanes at out + (k + j) kMR; its two extra lanes are overwritten by
    // column j + 1, or land in the next panel or the slack after the buffer, which are written later.
    for (; k + 8 <= kc; k += 8) {
      __m256 r[8];
      for (int i = 0; i < 6; ++i)
        r[i] = _mm256_loadu_ps(src + i * row_stride + k);
      r[6] = r[7] = _mm256_setzero_ps();
      transpose_8x8(r);
      for (int j = 0; j < 8; ++j)
        _mm256_storeu_ps(out + (k + j) * kMR, r[j]);
    }
  }
  for (; k < kc; ++k)
    for (int64_t i = 0; i < kMR; ++i)
      out[k * kMR + i] = i < rows ? src[i * row_stride + k] : 0.0f;
}

// One A panel of `rows` (<= kMR) rows whose elements along m are contiguous (a transposed A): column k
// of the panel is kMR consecutive floats of the source. `readable` rows from the panel's first may be
// read (the rest of the block below it); with 8 of them, each column is one 8-lane load and one 8-lane
// store whose two extra lanes the next column overwrites (or the next panel, or the slack).
void pack_a_panel_columns(const float* src, int64_t col_stride, int64_t rows, int64_t readable, int64_t kc,
                          float* out) {
  if (rows == kMR && readable >= 8) {
    for (int64_t k = 0; k < kc; ++k)
      _mm256_storeu_ps(out + k * kMR, _mm256_loadu_ps(src + k * col_stride));
    return;
  }
  for (int64_t k = 0; k < kc; ++k) {
    const float* column = src + k * col_stride;
    for (int64_t i = 0; i < kMR; ++i)
      out[k * kMR + i] = i < rows ? column[i] : 0.0f;
  }
}

// One B panel of `cols` (<= kNR) columns whose elements along n are contiguous (a plain B): row k of the
// panel is kNR consecutive floats of the source.
void pack_b_panel_rows(const float* src, int64_t row_stride, int64_t cols, int64_t kc, float* out) {
  if (cols == kNR) {
    for (int64_t k = 0; k < kc; ++k) {
      const float* row = src + k * row_stride;
      _mm256_store_ps(out + k * kNR, _mm256_loadu_ps(row));
      _mm256_store_ps(out + k * kNR + 8, _mm256_loadu_ps(row + 8));
    }
    return;
  }
  for (int64_t k = 0; k < kc; ++k) {
    std::copy_n(src + k * row_stride, cols, out + k * kNR);
    std::fill(out + k * kNR + cols, out + (k + 1) * kNR, 0.0f);
  }
}

// One B panel of `cols` (<= kNR) columns whose elements along k are contiguous (a transposed B): each
// half of 8 columns is read as 8 rows of 8 along k, transposed, and stored as 8 panel rows.
void pack_b_panel_columns(const float* src, int64_t col_stride, int64_t cols, int64_t kc, float* out) {
  int64_t k = 0;
  for (; k + 8 <= kc; k += 8)
    for (int64_t half = 0; half < 2; ++half) {
      __m256 r[8];
      for (int64_t j = 0; j < 8; ++j) {
        const int64_t col = half * 8 + j;
        r[j] = col < cols ? _mm256_loadu_ps(src + col * col_stride + k) : _mm256_setzero_ps();
      }
      transpose_8x8(r);
      for (int64_t i = 0; i < 8; ++i)
        _mm256_store_ps(out + (k + i) * kNR + half * 8, r[i]);
    }
  for (; k < kc; ++k)
    for (int64_t j = 0; j < kNR; ++j)
      out[k * kNR + j] = j < cols ? src[j * col_stride + k] : 0.0f;
}

}  // namespace

void pack_a(const Operand& a, int64_t m0, int64_t mc, int64_t k0, int64_t kc, float* dst) {
  for (int64_t p = 0; p * kMR < mc; ++p) {
    const int64_t rows = std::min(kMR, mc - p * kMR);
    const float* src = a.data + (m0 + p * kMR) * a.row_stride + k0 * a.col_stride;
    float* out = dst + p * kMR * kc;
    if (a.col_stride == 1)
      pack_a_panel_rows(src, a.row_stride, rows, kc, out);
    else
      pack_a_panel_columns(src, a.col_stride, rows, mc - p * kMR, kc, out);
  }
}

void pack_b(const Operand& b, int64_t k0, int64_t kc, int64_t n0, int64_t nc, float* dst) {
  for (int64_t p = 0; p * kNR < nc; ++p) {
    const int64_t cols = std::min(kNR, nc - p * kNR);
    const float* src = b.data + k0 * b.row_stride + (n0 + p * kNR) * b.col_stride;
    float* out = dst + p * kNR * kc;
    if (b.col_stride == 1)
      pack_b_panel_rows(src, b.row_stride, cols, kc, out);
    else
      pack_b_panel_columns(src, b.col_stride, cols, kc, out);
  }
}

}  // namespace icd::cpu::sgemm

#endif  // __AVX2__ && __FMA__
