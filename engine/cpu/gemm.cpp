// GEMM. f32 on x86 with AVX2 + FMA: a GotoBLAS/BLIS-style blocked product (packing, cache blocking,
// OpenMP threads) around the register-tiled micro-kernel of sgemm_kernel.h, which explains the scheme.
// f64 (gradient checks, not performance critical), and f32 on CPUs without AVX2: Eigen.
//
// Eigen: Eigen::Map views our buffers in place (no copies) with an outer stride, and Eigen's blocked,
// vectorised product does the work. A row-major M x K matrix with row stride lda is the same memory as
// a column-major K x M matrix with column stride lda, which is how transposes come free.
//
// The blocked f32 product. op(X) is read through (row_stride, col_stride): element (r, c) is at
// data[r row_stride + c col_stride], (lda, 1) for a plain operand and (1, lda) for a transposed one, so
// the packing routines are the only code that knows about transposes. Per block of K the packed result
// is added into C: the first block applies the caller's beta, later ones accumulate (beta = 1).
//
// Threads. Called outside a parallel region with enough work, the threads split C into sub-blocks on
// tile boundaries (rows, columns or both, whichever balances the tiles and repeats the least packing),
// and each runs the serial blocked product on its own sub-block with its own packed buffers. Sharing
// packed blocks between threads would save a little packing but needs a barrier per block, and a barrier
// costs a whole scheduler time slice when another process holds one of the cores. Called inside a
// parallel region (conv2d's per-thread tasks, batched matmul), the GEMM runs on the calling thread alone.
#include "engine/cpu/gemm.h"

#include <omp.h>

#include <Eigen/Core>
#include <algorithm>
#include <cstdlib>
#include <memory>
#include <new>
#include <type_traits>

#include "engine/cpu/sgemm_kernel.h"
#include "engine/cpu/sgemm_pack.h"
#include "engine/profiler.h"

namespace icd::cpu {
namespace {

// C = beta C over M x N; beta = 0 writes zeros whatever C held.
template <class T>
void scale_matrix(int64_t M, int64_t N, T beta, T* C, int64_t ldc) {
  for (int64_t i = 0; i < M; ++i) {
    T* row = C + i * ldc;
    if (beta == T(0))
      std::fill(row, row + N, T(0));
    else
      for (int64_t j = 0; j < N; ++j)
        row[j] *= beta;
  }
}

template <class T>
void eigen_gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda,
                const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
  using RowMajor = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using ColMajor = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::ColMajor>;
  using Stride = Eigen::OuterStride<>;
  Eigen::Map<RowMajor, 0, Stride> c(C, M, N, Stride(ldc));
  auto run = [&](const auto& a, const auto& b) {
    // noalias: C is not an operand, so Eigen may accumulate straight into it without a temporary.
    if (beta == T(0)) {
      c.noalias() = alpha * (a * b);
    } else {
      if (beta != T(1)) c *= beta;
      c.noalias() += alpha * (a * b);
    }
  };
  // op(A) is M x K: stored row-major M x K (no transpose) or row-major K x M (transpose).
  auto with_b = [&](const auto& a) {
    if (trans_b)
      run(a, Eigen::Map<const ColMajor, 0, Stride>(B, K, N, Stride(ldb)));
    else
      run(a, Eigen::Map<const RowMajor, 0, Stride>(B, K, N, Stride(ldb)));
  };
  if (trans_a)
    with_b(Eigen::Map<const ColMajor, 0, Stride>(A, M, K, Stride(lda)));
  else
    with_b(Eigen::Map<const RowMajor, 0, Stride>(A, M, K, Stride(lda)));
}

#if defined(__AVX2__) && defined(__FMA__)
#define ICD_BLOCKED_SGEMM 1

using sgemm::kKC;
using sgemm::kMC;
using sgemm::kMR;
using sgemm::kNC;
using sgemm::kNR;
using sgemm::Operand;

// Multiply-adds below which the product runs on one thread: waking the others would cost more than it
// saves.
constexpr int64_t kParallelMultiplyAdds = int64_t{1} << 19;

// a / b rounded up, for a >= 0 and b > 0.
int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

// The block size for a dimension of `total`: equal blocks of at most `limit`, rounded up to `multiple`.
int64_t block_size(int64_t total, int64_t limit, int64_t multiple) {
  const int64_t size = ceil_div(total, ceil_div(total, limit));
  return ceil_div(size, multiple) * multiple;
}

// Part k of [0, total) cut into `parts` ranges whose sizes differ by at most one.
struct Range {
  int64_t begin, end;
};
Range part(int64_t total, int64_t parts, int64_t k) {
  return {total * k / parts, total * (k + 1) / parts};
}

// A growable, 64-byte aligned float buffer, one per thread (the packed blocks), kept between calls.
class AlignedBuffer {
 public:
  float* get(int64_t count) {
    if (count > capacity_) {
      const size_t bytes = static_cast<size_t>(ceil_div(count * int64_t{sizeof(float)}, 64) * 64);
      data_.reset(static_cast<float*>(std::aligned_alloc(64, bytes)));
      if (!data_) throw std::bad_alloc();
      capacity_ = count;
    }
    return data_.get();
  }

 private:
  struct Free {
    void operator()(float* p) const { std::free(p); }
  };
  std::unique_ptr<float, Free> data_;
  int64_t capacity_ = 0;
};

// One micro-tile of C: the full kernel straight into C, or for a partial tile at the bottom or right
// edge, the edge kernel into a local tile of which only the m x n valid part is merged into C.
void micro_tile(int64_t kc, const float* a_panel, const float* b_panel, int64_t m, int64_t n, float alpha,
                float beta, float* c, int64_t ldc) {
  if (m == kMR && n == kNR) {
    sgemm::kernel_6x16(kc, a_panel, b_panel, c, ldc, alpha, beta);
    return;
  }
  alignas(64) float tile[kMR * kNR];
  sgemm::kernel_edge(kc, a_panel, b_panel, m, n, alpha, tile);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      float& out = c[i * ldc + j];
      out = beta == 0.0f ? tile[i * kNR + j] : tile[i * kNR + j] + beta * out;
    }
}

// C = alpha op(A) op(B) + beta C on the calling thread: the five loops of sgemm_kernel.h.
void blocked_sgemm_serial(const Operand& a, const Operand& b, int64_t M, int64_t N, int64_t K, float alpha,
                          float beta, float* C, int64_t ldc) {
  thread_local AlignedBuffer a_buffer, b_buffer;
  const int64_t kc = block_size(K, kKC, 1), mc = block_size(M, kMC, kMR), nc = block_size(N, kNC, kNR);
  float* packed_a = a_buffer.get(mc * kc + sgemm::kPackSlack);
  float* packed_b = b_buffer.get(nc * kc);
  for (int64_t jc = 0; jc < N; jc += nc) {
    const int64_t n_block = std::min(nc, N - jc), b_panels = ceil_div(n_block, kNR);
    for (int64_t pc = 0; pc < K; pc += kc) {
      const int64_t k_block = std::min(kc, K - pc);
      const float beta_block = pc == 0 ? beta : 1.0f;
      sgemm::pack_b(b, pc, k_block, jc, n_block, packed_b);
      for (int64_t ic = 0; ic < M; ic += mc) {
        const int64_t m_block = std::min(mc, M - ic), a_panels = ceil_div(m_block, kMR);
        sgemm::pack_a(a, ic, m_block, pc, k_block, packed_a);
        for (int64_t j = 0; j < b_panels; ++j) {
          const int64_t n = std::min(kNR, n_block - j * kNR);
          for (int64_t i = 0; i < a_panels; ++i) {
            const int64_t m = std::min(kMR, m_block - i * kMR);
            micro_tile(k_block, packed_a + i * kMR * k_block, packed_b + j * kNR * k_block, m, n, alpha,
                       beta_block, C + (ic + i * kMR) * ldc + jc + j * kNR, ldc);
          }
        }
      }
    }
  }
}

// How the threads share C: a grid of row_parts x col_parts sub-blocks, one per thread.
struct ThreadGrid {
  int64_t row_parts = 1, col_parts = 1;
};

// Packing one element costs about as much as this many multiply-adds in the micro-kernel (a load and a
// store against 16 FMAs per cycle): the grid below weighs the packing each thread repeats against the
// balance of its tiles.
constexpr int64_t kPackCost = 8;

ThreadGrid thread_grid(int64_t M, int64_t N, int64_t K, int64_t threads) {
  const int64_t row_tiles = ceil_div(M, kMR), col_tiles = ceil_div(N, kNR);
  ThreadGrid best;
  int64_t best_cost = -1;
  for (int64_t row_parts = 1; row_parts <= threads; ++row_parts) {
    if (threads % row_parts != 0) continue;
    const int64_t col_parts = threads / row_parts;
    if (row_parts > row_tiles || col_parts > col_tiles) continue;
    const int64_t rows = ceil_div(row_tiles, row_parts) * kMR, cols = ceil_div(col_tiles, col_parts) * kNR;
    const int64_t cost = rows * cols * K + kPackCost * (rows + cols) * K;
    if (best_cost < 0 || cost < best_cost) {
      best = {row_parts, col_parts};
      best_cost = cost;
    }
  }
  return best;
}

void blocked_sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                   int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  const Operand a = trans_a ? Operand{A, 1, lda} : Operand{A, lda, 1};
  const Operand b = trans_b ? Operand{B, 1, ldb} : Operand{B, ldb, 1};
  const int64_t threads =
      M * N * K >= kParallelMultiplyAdds && !omp_in_parallel() ? omp_get_max_threads() : 1;
  const ThreadGrid grid = thread_grid(M, N, K, threads);
  if (grid.row_parts * grid.col_parts == 1) {
    blocked_sgemm_serial(a, b, M, N, K, alpha, beta, C, ldc);
    return;
  }
  // Each thread owns a sub-block of C, cut on tile boundaries, and runs the serial product on it with its
  // own packed blocks: no barriers, so a thread that the OS preempts delays only its own share.
  const int64_t row_tiles = ceil_div(M, kMR), col_tiles = ceil_div(N, kNR);
  const int64_t parts = grid.row_parts * grid.col_parts;
#pragma omp parallel for schedule(static) num_threads(parts)
  for (int64_t t = 0; t < parts; ++t) {
    const Range row_range = part(row_tiles, grid.row_parts, t / grid.col_parts);
    const Range col_range = part(col_tiles, grid.col_parts, t % grid.col_parts);
    const int64_t m0 = row_range.begin * kMR, m1 = std::min(M, row_range.end * kMR);
    const int64_t n0 = col_range.begin * kNR, n1 = std::min(N, col_range.end * kNR);
    const Operand a_rows{a.data + m0 * a.row_stride, a.row_stride, a.col_stride};
    const Operand b_cols{b.data + n0 * b.col_stride, b.row_stride, b.col_stride};
    blocked_sgemm_serial(a_rows, b_cols, m1 - m0, n1 - n0, K, alpha, beta, C + m0 * ldc + n0, ldc);
  }
}

#endif  // __AVX2__ && __FMA__

}  // namespace

template <class T>
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda,
          const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
  profiler::add_flops(2.0 * static_cast<double>(M) * static_cast<double>(N) * static_cast<double>(K));
  if (M == 0 || N == 0) return;
  if (K == 0 || alpha == T(0)) {
    scale_matrix(M, N, beta, C, ldc);
    return;
  }
#ifdef ICD_BLOCKED_SGEMM
  if constexpr (std::is_same_v<T, float>) {
    blocked_sgemm(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
#endif
  eigen_gemm(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

template void gemm<float>(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*,
                          int64_t, float, float*, int64_t);
template void gemm<double>(bool, bool, int64_t, int64_t, int64_t, double, const double*, int64_t,
                           const double*, int64_t, double, double*, int64_t);

}  // namespace icd::cpu
