// The arithmetic of the reductions along one dimension (engine/ops/reduce.cpp states the math): max/min
// with their indices, logsumexp, softmax and log_softmax, and their backward. x, made contiguous, is
// seen as [outer, n, inner]; lane (o, i) is the n elements x[o, 0..n-1, i], `inner` apart, and its
// result goes to position o * inner + i of a contiguous [outer, inner] output.
//
// The CPU loops of reduce.cpp walk tiles of lanes and use the element rules here (better, exp_shift).
// The CUDA kernels (engine/cuda/reduce_dim.cu) give each lane `threads` threads: thread t takes the
// elements t, t + threads, ... (the *_of_lane functions with begin = t, step = threads), and the
// threads' partial results combine in a fixed tree. A maximum, an extreme with its first index, and the
// index rules are exact in any order, so those match the CPU bit for bit; sums of exponentials (in
// double) differ from the CPU's order by a few ulps. tests/test_kernel_bodies.cpp runs these on the CPU.
#pragma once
#include <cmath>
#include <cstdint>

#include "engine/hd.h"

namespace icd::kernels {

struct LaneLayout {
  int64_t outer = 1, n = 1, inner = 1;

  ICD_HD int64_t lanes() const { return outer * inner; }
  // Where lane `lane` (= o * inner + i) starts in x.
  ICD_HD int64_t start(int64_t lane) const { return (lane / inner) * n * inner + lane % inner; }
};

// Whether v replaces the extreme found so far: strictly better (so the first of equal values stays),
// or the first NaN (NaN propagates, as in torch).
template <bool kMax, class T>
ICD_HD bool better(T v, T best) {
  if (v != v) return best == best;
  return kMax ? v > best : v < best;
}

// The shift m subtracted before exp. The maximum is taken ignoring NaN (a NaN input still propagates
// through the exponentials); an infinite maximum would turn x - m into NaN, so it shifts by zero instead
// (+inf then gives +inf, and an all -inf lane gives log 0 = -inf, as in torch).
template <class T>
ICD_HD T exp_shift(T maximum) {
  return std::isinf(maximum) ? T(0) : maximum;
}

// ---- max/min with the first index

template <class T>
struct ExtremeAt {
  T value;
  int64_t index;  // -1: no element seen (a thread with no share of a short lane)
};

// The extreme of the lane's elements begin, begin + step, ... below n, in that order.
template <bool kMax, class T>
ICD_HD ExtremeAt<T> extreme_of_lane(const T* lane, int64_t stride, int64_t begin, int64_t n, int64_t step) {
  ExtremeAt<T> best{T(0), -1};
  for (int64_t k = begin; k < n; k += step) {
    const T v = lane[k * stride];
    if (best.index < 0 || better<kMax>(v, best.value)) best = {v, k};
  }
  return best;
}

// Two partial extremes of one lane: the better value, and of equal values (or two NaNs) the earlier
// index. Associative and commutative, so every combining order gives the serial scan's answer.
template <bool kMax, class T>
ICD_HD ExtremeAt<T> combine_extremes(const ExtremeAt<T>& a, const ExtremeAt<T>& b) {
  if (b.index < 0) return a;
  if (a.index < 0) return b;
  if (better<kMax>(b.value, a.value)) return b;
  if (better<kMax>(a.value, b.value)) return a;
  return b.index < a.index ? b : a;
}

// Element e of dx = the adjoint of picking x[o, at[o, i], i]: g[o, i] where k == at[o, i], else 0.
template <class T>
ICD_HD T scatter_along_element(const T* g, const int64_t* at, const LaneLayout& layout, int64_t e) {
  const int64_t i = e % layout.inner, ok = e / layout.inner;
  const int64_t k = ok % layout.n, o = ok / layout.n;
  const int64_t lane = o * layout.inner + i;
  return at[lane] == k ? g[lane] : T(0);
}

// ---- logsumexp, softmax, log_softmax

// The largest of the lane's elements begin, begin + step, ... below n, ignoring NaN; -inf for none.
template <class T>
ICD_HD T max_of_lane(const T* lane, int64_t stride, int64_t begin, int64_t n, int64_t step) {
  T m = -T(INFINITY);
  for (int64_t k = begin; k < n; k += step)
    m = lane[k * stride] > m ? lane[k * stride] : m;
  return m;
}

// sum exp(x - shift) over the same elements, each exponential in T, added in double.
template <class T>
ICD_HD double sum_exp_of_lane(const T* lane, int64_t stride, T shift, int64_t begin, int64_t n,
                              int64_t step) {
  double s = 0.0;
  for (int64_t k = begin; k < n; k += step)
    s += std::exp(lane[k * stride] - shift);
  return s;
}

// logsumexp from the lane's shift and its sum of exp(x - shift).
template <class T>
ICD_HD T logsumexp_of(T shift, double exp_sum) {
  return static_cast<T>(std::log(exp_sum) + shift);
}

// What finishes a softmax lane from its sum of exponentials: 1 / S (softmax) or log S (log_softmax).
template <bool kLog, class T>
ICD_HD T softmax_finish(double exp_sum) {
  return static_cast<T>(kLog ? std::log(exp_sum) : 1.0 / exp_sum);
}

// y over the same elements: exp(x - shift) / S, or (x - shift) - log S.
template <bool kLog, class T>
ICD_HD void softmax_write_lane(const T* x, T* y, int64_t stride, T shift, T finish, int64_t begin, int64_t n,
                               int64_t step) {
  for (int64_t k = begin; k < n; k += step) {
    const T v = x[k * stride];
    if constexpr (kLog)
      y[k * stride] = (v - shift) - finish;
    else
      y[k * stride] = std::exp(v - shift) * finish;
  }
}

// The backward's sum over the same elements, in double: sum g (log_softmax) or sum g y (softmax).
template <bool kLog, class T>
ICD_HD double softmax_backward_sum(const T* g, const T* y, int64_t stride, int64_t begin, int64_t n,
                                   int64_t step) {
  double acc = 0.0;
  for (int64_t k = begin; k < n; k += step)
    acc += kLog ? g[k * stride] : g[k * stride] * y[k * stride];
  return acc;
}

// dx over the same elements from that sum (rounded to T): g - exp(y) total, or y (g - total).
template <bool kLog, class T>
ICD_HD void softmax_backward_write(const T* g, const T* y, T* dx, int64_t stride, T total, int64_t begin,
                                   int64_t n, int64_t step) {
  for (int64_t k = begin; k < n; k += step) {
    const int64_t at = k * stride;
    dx[at] = kLog ? g[at] - std::exp(y[at]) * total : y[at] * (g[at] - total);
  }
}

}  // namespace icd::kernels
