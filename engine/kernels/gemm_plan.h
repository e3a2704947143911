// How the CUDA backend hands row-major matrix products to cuBLAS, which is column-major. Host-only
// arithmetic on shapes and offsets, with no CUDA headers, so the CPU tests check it on every machine
// (tests/test_kernel_bodies.cpp) by running the planned column-major products with plain loops.
//
// The trick: a row-major matrix X [r, c] stored with row stride ld is, read column-major with leading
// dimension ld, the matrix X^T [c, r]. The row-major product C = op(A) op(B), C [M, N], is therefore the
// column-major product
//   C^T = op(B)^T op(A)^T,   [N, M] = [N, K] x [K, M],
// and cuBLAS is called with B as its first operand and A as its second, m = N, n = M, the same k, the
// same transpose flags (op(B)^T is B's storage read column-major when B is not transposed, and its
// transpose when it is) and the same leading dimensions. C's storage read column-major is C^T.
//
// A batch of products whose matrices sit at arbitrary element offsets (broadcast batch dimensions
// repeat a matrix) is cut into runs that one strided-batched call takes: within a run the matrices of A
// and of B are equally spaced (a spacing of 0 repeats one matrix), and C's are consecutive.
#pragma once
#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace icd::kernels {

// The column-major call for the row-major C = op(A) op(B): operand `first` is B, `second` is A.
struct ColumnMajorGemm {
  bool trans_first = false, trans_second = false;  // cuBLAS's transa and transb
  int64_t m = 0, n = 0, k = 0;
  int64_t ld_first = 1, ld_second = 1, ldc = 1;
};

// Checks the row-major arguments the way cuBLAS checks its own (sizes >= 0; each leading dimension at
// least the length of a stored row, and at least 1) and maps them. Throws std::invalid_argument naming
// `op` otherwise.
inline ColumnMajorGemm column_major_gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                                         int64_t lda, int64_t ldb, int64_t ldc, const char* op) {
  auto fail = [op](const std::string& message) {
    throw std::invalid_argument(std::string(op) + " (cuBLAS GEMM): " + message);
  };
  if (M < 0 || N < 0 || K < 0)
    fail("negative size M = " + std::to_string(M) + ", N = " + std::to_string(N) +
         ", K = " + std::to_string(K));
  // Row-major storage of op(A) [M, K]: A itself has rows of K elements, a transposed A rows of M.
  const int64_t a_row = trans_a ? M : K, b_row = trans_b ? K : N;
  if (lda < std::max<int64_t>(a_row, 1))
    fail("lda = " + std::to_string(lda) + " is shorter than a stored row of A (" + std::to_string(a_row) +
         ")");
  if (ldb < std::max<int64_t>(b_row, 1))
    fail("ldb = " + std::to_string(ldb) + " is shorter than a stored row of B (" + std::to_string(b_row) +
         ")");
  if (ldc < std::max<int64_t>(N, 1))
    fail("ldc = " + std::to_string(ldc) + " is shorter than a row of C (" + std::to_string(N) + ")");
  return {trans_b, trans_a, N, M, K, ldb, lda, ldc};
}

// Products [first, first + count) of a batch: product first + j multiplies the A matrix at element
// offset a_offset + j a_stride by the B matrix at b_offset + j b_stride.
struct GemmRun {
  int64_t first = 0, count = 0;
  int64_t a_offset = 0, a_stride = 0;
  int64_t b_offset = 0, b_stride = 0;
};

// Cuts the batch (a_offsets[i], b_offsets[i] of product i; equally long) into maximal runs, greedily
// from the front. A batch whose offsets are equally spaced, such as a contiguous batch, or one with a
// single broadcast operand, is one run.
inline std::vector<GemmRun> plan_gemm_runs(const std::vector<int64_t>& a_offsets,
                                           const std::vector<int64_t>& b_offsets) {
  if (a_offsets.size() != b_offsets.size())
    throw std::invalid_argument("plan_gemm_runs: " + std::to_string(a_offsets.size()) + " A offsets but " +
                                std::to_string(b_offsets.size()) + " B offsets");
  const int64_t count = static_cast<int64_t>(a_offsets.size());
  std::vector<GemmRun> runs;
  for (int64_t first = 0; first < count;) {
    GemmRun run{first, 1, a_offsets[first], 0, b_offsets[first], 0};
    if (first + 1 < count) {
      run.a_stride = a_offsets[first + 1] - a_offsets[first];
      run.b_stride = b_offsets[first + 1] - b_offsets[first];
      while (first + run.count < count &&
             a_offsets[first + run.count] == run.a_offset + run.count * run.a_stride &&
             b_offsets[first + run.count] == run.b_offset + run.count * run.b_stride)
        ++run.count;
    }
    runs.push_back(run);
    first += run.count;
  }
  return runs;
}

}  // namespace icd::kernels
