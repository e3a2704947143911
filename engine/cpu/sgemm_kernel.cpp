// The 6 x 16 AVX2 + FMA micro-kernel (see sgemm_kernel.h for the register tile and the packed layouts).
// Built only where AVX2 and FMA are available; elsewhere gemm.cpp uses Eigen and never calls it.
#include "engine/cpu/sgemm_kernel.h"

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>

namespace icd::cpu::sgemm {

static_assert(kMR == 6 && kNR == 16, "kernel_6x16 is written for a 6 x 16 register tile");

void kernel_6x16(int64_t kc, const float* a_panel, const float* b_panel, float* c, int64_t ldc, float alpha,
                 float beta) {
  // The C tile is written at the end; fetching its lines now hides their latency behind the K loop.
  for (int i = 0; i < 6; ++i) {
    _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc + 15), _MM_HINT_T0);
  }
  // Twelve named accumulators (row i, half h = columns 8h .. 8h + 7): the compiler keeps them in ymm
  // registers for the whole loop.
  __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps();
  __m256 c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
  __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps();
  __m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
  __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps();
  __m256 c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
  const float* a = a_panel;
  const float* b = b_panel;
#pragma GCC unroll 4
  for (int64_t k = 0; k < kc; ++k) {
    const __m256 b0 = _mm256_load_ps(b);
    const __m256 b1 = _mm256_load_ps(b + 8);
    __m256 ai = _mm256_broadcast_ss(a + 0);
    c00 = _mm256_fmadd_ps(ai, b0, c00);
    c01 = _mm256_fmadd_ps(ai, b1, c01);
    ai = _mm256_broadcast_ss(a + 1);
    c10 = _mm256_fmadd_ps(ai, b0, c10);
    c11 = _mm256_fmadd_ps(ai, b1, c11);
    ai = _mm256_broadcast_ss(a + 2);
    c20 = _mm256_fmadd_ps(ai, b0, c20);
    c21 = _mm256_fmadd_ps(ai, b1, c21);
    ai = _mm256_broadcast_ss(a + 3);
    c30 = _mm256_fmadd_ps(ai, b0, c30);
    c31 = _mm256_fmadd_ps(ai, b1, c31);
    ai = _mm256_broadcast_ss(a + 4);
    c40 = _mm256_fmadd_ps(ai, b0, c40);
    c41 = _mm256_fmadd_ps(ai, b1, c41);
    ai = _mm256_broadcast_ss(a + 5);
    c50 = _mm256_fmadd_ps(ai, b0, c50);
    c51 = _mm256_fmadd_ps(ai, b1, c51);
    a += kMR;
    b += kNR;
  }
  const __m256 valpha = _mm256_set1_ps(alpha);
  auto store_row = [&](float* row, __m256 lo, __m256 hi) {
    if (beta == 0.0f) {
      _mm256_storeu_ps(row, _mm256_mul_ps(valpha, lo));
      _mm256_storeu_ps(row + 8, _mm256_mul_ps(valpha, hi));
    } else {
      const __m256 vbeta = _mm256_set1_ps(beta);
      _mm256_storeu_ps(row, _mm256_fmadd_ps(valpha, lo, _mm256_mul_ps(vbeta, _mm256_loadu_ps(row))));
      _mm256_storeu_ps(row + 8, _mm256_fmadd_ps(valpha, hi, _mm256_mul_ps(vbeta, _mm256_loadu_ps(row + 8))));
    }
  };
  store_row(c + 0 * ldc, c00, c01);
  store_row(c + 1 * ldc, c10, c11);
  store_row(c + 2 * ldc, c20, c21);
  store_row(c + 3 * ldc, c30, c31);
  store_row(c + 4 * ldc, c40, c41);
  store_row(c + 5 * ldc, c50, c51);
}

namespace {

// kernel_edge for a Rows x (8 Halves) tile. Each row i has two accumulators, x_i and y_i:
//   Halves = 2: x_i holds columns 0-7 and y_i columns 8-15, one step of k at a time (as kernel_6x16);
//   Halves = 1: x_i and y_i both hold columns 0-7, x_i for even k and y_i for odd k, added at the end.
//               One chain per row would leave the FMA pipes idle (4 cycles of latency, fewer than 8
//               chains); two independent chains per row keep them busy.
// The accumulators are named variables, not an array, so that they stay in registers.
template <int Rows, int Halves>
void edge_tile(int64_t kc, const float* a, const float* b, float alpha, float* tile) {
  static_assert(Rows >= 1 && Rows <= kMR && (Halves == 1 || Halves == 2));
  constexpr int64_t k_step = Halves == 2 ? 1 : 2;
  constexpr int64_t y_a = Halves == 2 ? 0 : kMR;  // y's A values and B row, relative to x's
  constexpr int64_t y_b = Halves == 2 ? 8 : kNR;
  __m256 x0 = _mm256_setzero_ps(), x1 = x0, x2 = x0, x3 = x0, x4 = x0, x5 = x0;
  __m256 y0 = x0, y1 = x0, y2 = x0, y3 = x0, y4 = x0, y5 = x0;
// Adds A column a_k times B row b_k into the accumulators acc0 .. acc5 of the tile's rows.
#define ICD_EDGE_ROW(i, acc, a_k, b_k) \
  if constexpr (Rows > i) acc##i = _mm256_fmadd_ps(_mm256_broadcast_ss((a_k) + i), b_k, acc##i)
#define ICD_EDGE_ROWS(acc, a_k, b_k) \
  do {                               \
    ICD_EDGE_ROW(0, acc, a_k, b_k);  \
    ICD_EDGE_ROW(1, acc, a_k, b_k);  \
    ICD_EDGE_ROW(2, acc, a_k, b_k);  \
    ICD_EDGE_ROW(3, acc, a_k, b_k);  \
    ICD_EDGE_ROW(4, acc, a_k, b_k);  \
    ICD_EDGE_ROW(5, acc, a_k, b_k);  \
  } while (false)
  int64_t k = 0;
  for (; k + k_step <= kc; k += k_step) {
    const float* a_k = a + k * kMR;
    const float* b_k = b + k * kNR;
    __m256 bx = _mm256_load_ps(b_k), by = _mm256_load_ps(b_k + y_b);
    // Keeps the B vectors in registers: GCC would otherwise fold a load of them into every FMA, and
    // the loads, not the FMAs, would set the pace.
    asm("" : "+x"(bx), "+x"(by));
    ICD_EDGE_ROWS(x, a_k, bx);
    ICD_EDGE_ROWS(y, a_k + y_a, by);
  }
  if (k < kc) {  // Halves = 1 with kc odd: the last step has no odd partner
    const __m256 bx = _mm256_load_ps(b + k * kNR);
    ICD_EDGE_ROWS(x, a + k * kMR, bx);
  }
#undef ICD_EDGE_ROWS
#undef ICD_EDGE_ROW
  const __m256 valpha = _mm256_set1_ps(alpha);
  const __m256 xs[kMR] = {x0, x1, x2, x3, x4, x5}, ys[kMR] = {y0, y1, y2, y3, y4, y5};
  for (int i = 0; i < Rows; ++i) {
    if constexpr (Halves == 2) {
      _mm256_store_ps(tile + i * kNR, _mm256_mul_ps(valpha, xs[i]));
      _mm256_store_ps(tile + i * kNR + 8, _mm256_mul_ps(valpha, ys[i]));
    } else {
      _mm256_store_ps(tile + i * kNR, _mm256_mul_ps(valpha, _mm256_add_ps(xs[i], ys[i])));
    }
  }
}

template <int Halves>
void edge_tile_rows(int64_t kc, const float* a, const float* b, int64_t rows, float alpha, float* tile) {
  switch (rows) {
    case 1:
      return edge_tile<1, Halves>(kc, a, b, alpha, tile);
    case 2:
      return edge_tile<2, Halves>(kc, a, b, alpha, tile);
    case 3:
      return edge_tile<3, Halves>(kc, a, b, alpha, tile);
    case 4:
      return edge_tile<4, Halves>(kc, a, b, alpha, tile);
    case 5:
      return edge_tile<5, Halves>(kc, a, b, alpha, tile);
    default:  // all kMR rows: kernel_edge sends only tiles of one half here
      return edge_tile<kMR, 1>(kc, a, b, alpha, tile);
  }
}

}  // namespace

void kernel_edge(int64_t kc, const float* a_panel, const float* b_panel, int64_t rows, int64_t cols,
                 float alpha, float* tile) {
  if (cols <= 8)
    edge_tile_rows<1>(kc, a_panel, b_panel, rows, alpha, tile);
  else if (rows < kMR)
    edge_tile_rows<2>(kc, a_panel, b_panel, rows, alpha, tile);
  else  // all rows, 9 to 15 columns: the full kernel (written so that its 12 accumulators stay in registers)
    kernel_6x16(kc, a_panel, b_panel, tile, kNR, alpha, 0.0f);
}

}  // namespace icd::cpu::sgemm

#endif  // __AVX2__ && __FMA__
