// cpu::gemm, the engine's matrix multiply: C = alpha op(A) op(B) + beta C, row-major with leading
// dimensions. f32 runs the blocked AVX2 kernel (engine/cpu/sgemm_kernel.h) on x86, f64 runs Eigen.
// Every result is compared with a naive double-precision product of the same inputs, over shapes that
// straddle each block size of the f32 kernel (the register tile MR x NR, the depth KC, the packed blocks
// MC and NC), all four transpose combinations, leading dimensions wider than the matrices, and the alpha /
// beta cases (beta = 0 must ignore NaNs in C, beta = 1 accumulates, alpha = 0 or K = 0 only scales C).
#include <doctest/doctest.h>
#include <omp.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "engine/cpu/gemm.h"
#include "engine/cpu/sgemm_kernel.h"

using icd::cpu::gemm;
namespace sgemm = icd::cpu::sgemm;

namespace {

struct Problem {
  int64_t M, N, K;
  bool trans_a = false, trans_b = false;
  int64_t pad = 0;  // extra elements per row of A, B and C beyond the matrix width (lda = width + pad)
  double alpha = 1, beta = 0;
};

// Row-major storage of a rows x cols matrix with row stride cols + pad, filled with uniform [-1, 1]
// values (the padding too: the GEMM must not read it into the result).
template <class T>
struct Stored {
  int64_t rows, cols, ld;
  std::vector<T> data;
  Stored(int64_t rows_, int64_t cols_, int64_t pad, std::mt19937& rng)
      : rows(rows_), cols(cols_), ld(cols_ + pad), data(std::max<int64_t>(1, rows_ * (cols_ + pad))) {
    std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
    for (T& v : data)
      v = T(uniform(rng));
  }
  T at(int64_t r, int64_t c) const { return data[r * ld + c]; }
};

// The result of one GEMM and how far it is from the double-precision reference.
struct Outcome {
  double worst_error = 0;    // max over C of |c - ref| / bound, bound = |alpha| sum_k |a b| + |beta c0|
  bool padding_kept = true;  // the elements of C beyond its N columns are untouched
  bool finite = true;
};

// Runs p with C prefilled by random values, or by NaN when c_nan, and compares with the reference.
// `in_parallel_region` calls the GEMM from inside an OpenMP parallel region (its single-threaded path).
template <class T>
Outcome run(const Problem& p, std::mt19937& rng, bool c_nan = false, bool in_parallel_region = false,
            std::vector<T>* result = nullptr) {
  const Stored<T> a = p.trans_a ? Stored<T>(p.K, p.M, p.pad, rng) : Stored<T>(p.M, p.K, p.pad, rng);
  const Stored<T> b = p.trans_b ? Stored<T>(p.N, p.K, p.pad, rng) : Stored<T>(p.K, p.N, p.pad, rng);
  Stored<T> c(p.M, p.N, p.pad, rng);
  if (c_nan) std::fill(c.data.begin(), c.data.end(), std::numeric_limits<T>::quiet_NaN());
  const std::vector<T> c0 = c.data;
  auto op_a = [&](int64_t i, int64_t k) { return double(p.trans_a ? a.at(k, i) : a.at(i, k)); };
  auto op_b = [&](int64_t k, int64_t j) { return double(p.trans_b ? b.at(j, k) : b.at(k, j)); };
  auto call = [&] {
    gemm<T>(p.trans_a, p.trans_b, p.M, p.N, p.K, T(p.alpha), a.data.data(), a.ld, b.data.data(), b.ld,
            T(p.beta), c.data.data(), c.ld);
  };
  if (in_parallel_region) {
#pragma omp parallel num_threads(2)
    {
#pragma omp single
      call();
    }
  } else {
    call();
  }
  Outcome out;
  for (int64_t i = 0; i < p.M; ++i) {
    for (int64_t j = 0; j < p.N; ++j) {
      double sum = 0, magnitude = 0;
      for (int64_t k = 0; k < p.K; ++k) {
        sum += op_a(i, k) * op_b(k, j);
        magnitude += std::abs(op_a(i, k) * op_b(k, j));
      }
      const double old = c0[i * c.ld + j];
      const double expected = p.alpha * sum + (p.beta == 0 ? 0.0 : p.beta * old);
      const double bound = std::abs(p.alpha) * magnitude + (p.beta == 0 ? 0.0 : std::abs(p.beta * old));
      const double actual = c.data[i * c.ld + j];
      if (!std::isfinite(actual)) out.finite = false;
      const double error = std::abs(actual - expected);
      if (error > 0) out.worst_error = std::max(out.worst_error, bound > 0 ? error / bound : INFINITY);
    }
    for (int64_t j = p.N; j < c.ld; ++j) {
      const T now = c.data[i * c.ld + j], before = c0[i * c.ld + j];
      if (!(now == before || (std::isnan(now) && std::isnan(before)))) out.padding_kept = false;
    }
  }
  if (result) *result = c.data;
  return out;
}

// f32 rounding of a K-term dot product is far below this relative to sum_k |a b| for these sizes.
constexpr double kF32Tolerance = 1e-5;

void check_f32(const Problem& p, std::mt19937& rng) {
  INFO("M=", p.M, " N=", p.N, " K=", p.K, " trans_a=", p.trans_a, " trans_b=", p.trans_b, " pad=", p.pad,
       " alpha=", p.alpha, " beta=", p.beta);
  const Outcome out = run<float>(p, rng);
  CHECK(out.finite);
  CHECK(out.padding_kept);
  CHECK(out.worst_error <= kF32Tolerance);
}

// Dimensions on both sides of every block size of the f32 kernel.
constexpr int64_t MR = sgemm::kMR, NR = sgemm::kNR, KC = sgemm::kKC, MC = sgemm::kMC, NC = sgemm::kNC;

}  // namespace

TEST_CASE("gemm f32: tiny and prime shapes, all transposes, padded leading dimensions") {
  // Row counts cover every remainder modulo MR and column counts both halves of NR (edge tiles).
  std::mt19937 rng(1);
  const std::vector<std::vector<int64_t>> shapes = {{1, 1, 1},   {1, 7, 3},    {5, 1, 9},  {2, 3, 1},
                                                    {7, 13, 17}, {11, 29, 31}, {3, 37, 2}, {41, 5, 43},
                                                    {4, 8, 5},   {10, 24, 9},  {9, 9, 3},  {16, 40, 11}};
  for (const auto& s : shapes)
    for (int combo = 0; combo < 4; ++combo)
      for (int64_t pad : {0, 3})
        check_f32({s[0], s[1], s[2], combo % 2 == 1, combo / 2 == 1, pad, 1.0, 0.0}, rng);
}

TEST_CASE("gemm f32: shapes straddling the register tile and the cache blocks") {
  std::mt19937 rng(2);
  const std::vector<std::vector<int64_t>> shapes = {
      {MR - 1, NR - 1, 8},  {MR, NR, 8},      {MR + 1, NR + 1, 8},      {2 * MR + 1, 3 * NR - 1, 5},
      {MR, NR, KC - 1},     {MR, NR, KC},     {MR + 1, NR + 1, KC + 1}, {7, 9, 2 * KC + 3},
      {MC - 1, NR + 3, 33}, {MC, 2 * NR, 20}, {MC + 1, NR - 3, 21},     {2 * MC + 5, 19, KC + 7},
      {3, NC - 1, 4},       {2, NC + 1, 3},   {5, 2 * NC + 17, 2},      {MC + MR + 1, NR + 1, KC + 1}};
  int index = 0;
  for (const auto& s : shapes)
    for (int combo = 0; combo < 4; ++combo, ++index) {
      // Rotate through alpha / beta cases so each shape meets several of them.
      const double alphas[] = {1.0, -0.75, 2.0, 1.0};
      const double betas[] = {0.0, 1.0, -0.5, 0.25};
      check_f32({s[0], s[1], s[2], combo % 2 == 1, combo / 2 == 1, index % 3 == 0 ? 0 : 5, alphas[index % 4],
                 betas[(index / 4 + combo) % 4]},
                rng);
    }
}

TEST_CASE("gemm f32: a large product 300 x 257 x 513, all transposes") {
  std::mt19937 rng(3);
  for (int combo = 0; combo < 4; ++combo)
    check_f32({300, 257, 513, combo % 2 == 1, combo / 2 == 1, combo == 3 ? 7 : 0, combo == 1 ? 0.5 : 1.0,
               combo == 2 ? 1.0 : 0.0},
              rng);
}

TEST_CASE("gemm f32: beta = 0 ignores NaN in C, beta = 1 accumulates") {
  std::mt19937 rng(4);
  for (int combo = 0; combo < 4; ++combo) {
    // Full tiles, edge tiles and several K blocks, each with C full of NaN (padding included).
    const Problem p{MC + 7, 2 * NR + 5, KC + 9, combo % 2 == 1, combo / 2 == 1, 2, 1.5, 0.0};
    const Outcome out = run<float>(p, rng, /*c_nan=*/true);
    CHECK(out.finite);
    CHECK(out.padding_kept);  // the NaNs beyond the N columns are still there
    CHECK(out.worst_error <= kF32Tolerance);
  }
  // beta = 1: C + A B, by hand.
  const std::vector<float> a = {1, 2, 3, 4}, b = {5, 6, 7, 8};  // 2 x 2 each
  std::vector<float> c = {1, 1, 1, 1};
  gemm<float>(false, false, 2, 2, 2, 1.0f, a.data(), 2, b.data(), 2, 1.0f, c.data(), 2);
  CHECK(c == std::vector<float>{20, 23, 44, 51});
  gemm<float>(true, false, 2, 2, 2, 1.0f, a.data(), 2, b.data(), 2, 0.0f, c.data(), 2);  // A^T B
  CHECK(c == std::vector<float>{26, 30, 38, 44});
  gemm<float>(false, true, 2, 2, 2, -1.0f, a.data(), 2, b.data(), 2, 2.0f, c.data(), 2);  // 2C - A B^T
  CHECK(c == std::vector<float>{52 - 17, 60 - 23, 76 - 39, 88 - 53});
}

TEST_CASE("gemm: alpha = 0 or K = 0 scales C by beta, an empty C is left alone") {
  for (const float alpha : {0.0f, 1.0f}) {
    const int64_t K = alpha == 0.0f ? 3 : 0;
    const std::vector<float> a(6, std::numeric_limits<float>::quiet_NaN()), b = a;
    std::vector<float> c = {1, 2, 3, 4};
    gemm<float>(false, false, 2, 2, K, alpha, a.data(), K, b.data(), 2, 0.5f, c.data(), 2);
    CHECK(c == std::vector<float>{0.5f, 1, 1.5f, 2});
    std::fill(c.begin(), c.end(), std::numeric_limits<float>::quiet_NaN());
    gemm<float>(false, false, 2, 2, K, alpha, a.data(), K, b.data(), 2, 0.0f, c.data(), 2);
    CHECK(c == std::vector<float>{0, 0, 0, 0});
  }
  std::vector<float> c = {7};
  gemm<float>(false, false, 0, 1, 4, 1.0f, nullptr, 4, nullptr, 1, 0.0f, c.data(), 1);
  gemm<float>(false, false, 1, 0, 4, 1.0f, nullptr, 4, nullptr, 0, 0.0f, c.data(), 0);
  CHECK(c[0] == 7);
}

TEST_CASE("gemm f32: threaded and single-threaded (inside a parallel region) give identical results") {
  // Large enough to be split between threads when called outside a parallel region. The threads cut C on
  // tile boundaries and K is blocked the same way, so every element is summed in the same order.
  for (int combo = 0; combo < 4; ++combo) {
    const Problem p{2 * MC + 13, 3 * NR + 7, KC + 45, combo % 2 == 1, combo / 2 == 1, 1, 1.0, 0.5};
    std::mt19937 rng_threaded(5), rng_serial(5);
    std::vector<float> threaded, serial;
    const Outcome out = run<float>(p, rng_threaded, false, false, &threaded);
    CHECK(out.worst_error <= kF32Tolerance);
    run<float>(p, rng_serial, false, true, &serial);
    CHECK(threaded == serial);
  }
}

TEST_CASE("gemm f64 (Eigen): all transposes, padded leading dimensions, alpha and beta") {
  std::mt19937 rng(6);
  for (int combo = 0; combo < 4; ++combo) {
    const Problem p{23, 19, 37, combo % 2 == 1, combo / 2 == 1, 3, -1.25, combo % 2 == 0 ? 0.0 : 0.5};
    INFO("trans_a=", p.trans_a, " trans_b=", p.trans_b);
    const Outcome out = run<double>(p, rng, /*c_nan=*/combo == 0);
    CHECK(out.finite);
    CHECK(out.padding_kept);
    CHECK(out.worst_error <= 1e-14);
  }
}
