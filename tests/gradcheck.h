// Gradient checking in f64 against central differences.
//
// For f: inputs -> output, draw a fixed random projection R of the output's shape and check the
// gradient of the scalar s = sum(f(inputs) * R) two ways:
//   analytic: backward() with R as the output gradient;
//   numeric:  (s(x + eps e_i) - s(x - eps e_i)) / (2 eps) for every element i of every input that
//             requires grad (inputs may be non-contiguous views; the element is perturbed in place).
// They must agree within |analytic - numeric| <= atol + rtol * |numeric|. Then the check runs backward
// again with each .grad pre-filled with random values and requires grad == prefill + analytic: gradients
// accumulate, they never overwrite. Callers pick points away from kinks (ReLU at 0, ties in max).
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "engine/tensor.h"

namespace icd::testing {

struct GradcheckOptions {
  double eps = 1e-6;
  double atol = 1e-7;
  double rtol = 1e-6;
  uint64_t seed = 1234;
};

struct GradcheckResult {
  bool ok = true;
  std::string message;  // the first failure: which input, which element, both values
  double max_abs_error = 0.0;
};

using GradFunction = std::function<Tensor(const std::vector<Tensor>&)>;

GradcheckResult gradcheck(const GradFunction& f, const std::vector<Tensor>& inputs,
                          GradcheckOptions options = {});

// A constant f64 tensor (no grad) holding `values` row-major: the hand-computed cases of every test.
Tensor f64(const std::vector<double>& values, const Shape& shape);

// A random f64 leaf that requires grad, values uniform in [low, high).
Tensor random_leaf(const Shape& shape, uint64_t seed, double low = -1.0, double high = 1.0);

}  // namespace icd::testing

// doctest helper: CHECK that the gradient check passes, printing its message if not.
#define CHECK_GRADCHECK(...)                                            \
  do {                                                                  \
    auto icd_gradcheck_result = ::icd::testing::gradcheck(__VA_ARGS__); \
    INFO(icd_gradcheck_result.message);                                 \
    CHECK(icd_gradcheck_result.ok);                                     \
  } while (0)
