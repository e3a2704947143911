// The key topk (engine/ops/topk.h) ranks a value by, the same on the CPU and in the GPU's radix sort:
// -0 becomes +0 (they compare equal, so they must tie) and every NaN becomes the one positive quiet NaN,
// which ranks above +inf. A radix sort orders raw bits: without this it would put -0 below +0, a NaN with
// its sign bit set below -inf, and NaNs of different payloads in payload order rather than (tied) in
// index order as the CPU does.
#pragma once
#include <cmath>

#include "engine/hd.h"

namespace icd::kernels {

template <class T>
ICD_HD T topk_key(T x) {
  if (x != x) return static_cast<T>(NAN);  // one bit pattern for every NaN, whatever its sign and payload
  return x == T(0) ? T(0) : x;
}

// Whether key a at index i ranks before key b at index j: NaN first, then larger values, then (ties)
// the smaller index, the order a stable descending sort gives.
template <class T>
ICD_HD bool topk_before(T a, int64_t i, T b, int64_t j) {
  const bool a_nan = a != a, b_nan = b != b;
  if (a_nan != b_nan) return a_nan;
  if (!a_nan && a != b) return a > b;
  return i < j;
}

}  // namespace icd::kernels
