// GEMM through Eigen: Eigen::Map views our buffers in place (no copies) with an outer stride, and
// Eigen's blocked, vectorised product does the work. A row-major M x K matrix with row stride lda is
// the same memory as a column-major K x M matrix with column stride lda, which is how transposes come free.
#include "engine/cpu/gemm.h"

#include <Eigen/Core>

namespace icd::cpu {

template <class T>
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda,
          const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
  using RowMajor = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using ColMajor = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::ColMajor>;
  using Stride = Eigen::OuterStride<>;
  Eigen::Map<RowMajor, 0, Stride> c(C, M, N, Stride(ldc));
  if (M == 0 || N == 0) return;
  if (K == 0 || alpha == T(0)) {
    if (beta == T(0))
      c.setZero();
    else
      c *= beta;
    return;
  }
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

template void gemm<float>(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*,
                          int64_t, float, float*, int64_t);
template void gemm<double>(bool, bool, int64_t, int64_t, int64_t, double, const double*, int64_t,
                           const double*, int64_t, double, double*, int64_t);

}  // namespace icd::cpu
