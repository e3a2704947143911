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

}  // namespace icd::cpu::sgemm

#endif  // __AVX2__ && __FMA__
