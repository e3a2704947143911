// Helpers shared by the parts of test_cuda_parity: the device under test and the comparison of a GPU
// result with the CPU's.
#pragma once
#include <algorithm>
#include <cmath>
#include <vector>

#include <doctest/doctest.h>

#include "engine/tensor.h"
#include "engine/transfer.h"

namespace icd::testing {

inline const Device kGpu = Device::cuda(0);

// The tensor's values as doubles, read on the host from either device.
inline std::vector<double> host_values(const Tensor& t) {
  return to_device(t, Device::cpu()).to(DType::f64).to_vector<double>();
}

// The largest |gpu - cpu| over the largest |cpu|; NaN in both at the same place counts as agreement, NaN in
// one only as infinitely far; likewise infinities must match exactly.
inline double scaled_difference(const Tensor& cpu, const Tensor& gpu) {
  const std::vector<double> a = host_values(cpu), b = host_values(gpu);
  REQUIRE(a.size() == b.size());
  double worst = 0, scale = 1e-300;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (std::isnan(a[i]) || std::isnan(b[i])) {
      if (!(std::isnan(a[i]) && std::isnan(b[i]))) return INFINITY;
      continue;
    }
    if (std::isinf(a[i]) || std::isinf(b[i])) {
      if (a[i] != b[i]) return INFINITY;
      continue;
    }
    worst = std::max(worst, std::abs(a[i] - b[i]));
    scale = std::max(scale, std::abs(a[i]));
  }
  return worst / scale;
}

}  // namespace icd::testing
