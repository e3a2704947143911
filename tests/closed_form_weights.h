// Closed-form weights and tensor summaries for whole-model parity tests (ResNet, RetinaNet), so the
// fixtures need not store millions of weights. tools/make_resnet_fixtures.py evaluates the same formula:
//
//   u_i = 2 * (splitmix64((fnv1a32(name) << 32) + i) >> 11) * 2^-53 - 1     (uniform in [-1, 1), exact
//                                                                          integer arithmetic on both sides)
//   conv / fc weight: u_i * sqrt(6 / fan_in)       norm weight: 1 + 0.2 u_i    bias: 0.05 u_i
//   running_mean: 0.1 u_i                          running_var: 0.75 + 0.25 u_i
//   "input", "projection": u_i
//
// A large tensor is compared through its summary: sum, sum of |x|, and 64 values at evenly spaced flat
// indices (all of them when there are fewer).
#pragma once
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "engine/factory.h"
#include "engine/tensor.h"

namespace icd::testing {

inline uint32_t fnv1a32(const std::string& text) {
  uint32_t h = 0x811C9DC5u;
  for (unsigned char c : text)
    h = (h ^ c) * 0x01000193u;
  return h;
}

inline uint64_t splitmix64(uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// The closed-form value of the tensor `name` (a state-dict name, "input" or "projection"), in f64,
// converted to `dtype` at the end.
inline Tensor closed_form(const std::string& name, const Shape& shape, DType dtype) {
  const int64_t n = shape_numel(shape);
  const uint64_t base = static_cast<uint64_t>(fnv1a32(name)) << 32;
  std::vector<double> v(n);
  for (int64_t i = 0; i < n; ++i)
    v[i] = static_cast<double>(splitmix64(base + static_cast<uint64_t>(i)) >> 11) * 0x1.0p-53 * 2.0 - 1.0;
  const std::string leaf = name.substr(name.rfind('.') + 1);
  double scale = 1, shift = 0;
  if (name == "input" || name == "projection") {
  } else if (leaf == "weight" && shape.size() >= 2) {
    scale = std::sqrt(6.0 / static_cast<double>(n / shape[0]));
  } else if (leaf == "weight") {
    scale = 0.2, shift = 1;
  } else if (leaf == "bias") {
    scale = 0.05;
  } else if (leaf == "running_mean") {
    scale = 0.1;
  } else if (leaf == "running_var") {
    scale = 0.25, shift = 0.75;
  } else {
    throw std::runtime_error("no closed-form weight for " + name);
  }
  for (double& x : v)
    x = shift + scale * x;
  return from_vector(v, shape, {dtype});
}

// The summary the tools write: sum, sum |x|, 64 values at flat indices round(linspace(0, n - 1, 64)).
inline std::vector<double> summary(const Tensor& t) {
  std::vector<double> flat = t.to_vector<double>();
  double sum = 0, sum_abs = 0;
  for (double x : flat)
    sum += x, sum_abs += std::abs(x);
  std::vector<double> out{sum, sum_abs};
  const int64_t n = static_cast<int64_t>(flat.size());
  for (int64_t k = 0; k < std::min<int64_t>(64, n); ++k) {
    // numpy/torch linspace(0, n-1, 64).round(): round half to even
    double position =
        n >= 64 ? static_cast<double>(k) * static_cast<double>(n - 1) / 63.0 : static_cast<double>(k);
    out.push_back(flat[static_cast<std::size_t>(std::nearbyint(position))]);
  }
  return out;
}

// Error of a summary against the reference: the sum relative to sum |x|, and the 64 sampled values
// either element by element (relative to each value, with an absolute floor at 1e-3 of the samples' mean
// magnitude) or as one vector (||ours - ref|| / ||ref||).
// f64 is held to the element-wise form. f32 is held to the vector form: a gradient element that is a
// cancelling sum (a norm layer's bias gradient, say) keeps only a few f32 digits in any implementation;
// torch's own f32 run of the ResNet fixture misses its f64 values by up to 4e-4 element-wise on such
// elements, but by at most 1.5e-6 as vectors.
enum class SummaryMetric { elementwise, vector };

inline double summary_error(const std::vector<double>& ours, const Tensor& expected_summary,
                            SummaryMetric metric) {
  std::vector<double> ref = expected_summary.to_vector<double>();
  REQUIRE(ours.size() == ref.size());
  double worst = std::abs(ours[0] - ref[0]) / ref[1];
  worst = std::max(worst, std::abs(ours[1] - ref[1]) / ref[1]);
  if (metric == SummaryMetric::elementwise) {
    double mean_magnitude = 0;
    for (std::size_t i = 2; i < ref.size(); ++i) mean_magnitude += std::abs(ref[i]) / static_cast<double>(ref.size() - 2);
    const double floor = 1e-3 * mean_magnitude;
    for (std::size_t i = 2; i < ref.size(); ++i)
      worst = std::max(worst, std::abs(ours[i] - ref[i]) / (std::abs(ref[i]) + floor));
  } else {
    double diff = 0, norm = 0;
    for (std::size_t i = 2; i < ref.size(); ++i)
      diff += (ours[i] - ref[i]) * (ours[i] - ref[i]), norm += ref[i] * ref[i];
    worst = std::max(worst, std::sqrt(diff / norm));
  }
  return worst;
}

}  // namespace icd::testing
