// General matrix multiply on the CPU, row-major:
//   C = alpha * op(A) * op(B) + beta * C,   op(X) = X or X^T,  op(A): M x K,  op(B): K x N,  C: M x N.
// lda/ldb/ldc are row strides in elements (the distance between consecutive rows as stored), so a
// sub-matrix or a transposed view is passed without copying. beta = 0 ignores C's old contents
// (NaNs included). Threads: OpenMP, up to omp_get_max_threads() for a large product called outside a
// parallel region; called inside one (a per-thread task), it runs on the calling thread. f32 results do not
// depend on the thread count (every element is summed in the same order).
#pragma once
#include <cstdint>

namespace icd::cpu {

template <class T>
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda,
          const T* B, int64_t ldb, T beta, T* C, int64_t ldc);

}  // namespace icd::cpu
