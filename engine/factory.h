// Ways to make a tensor. Random factories draw from an explicit Generator so every run is repeatable.
#pragma once
#include <vector>

#include "engine/random.h"
#include "engine/tensor.h"

namespace icd {

Tensor empty(const Shape& shape, TensorOptions options = {});
Tensor zeros(const Shape& shape, TensorOptions options = {});
Tensor ones(const Shape& shape, TensorOptions options = {});
Tensor full(const Shape& shape, double value, TensorOptions options = {});
Tensor zeros_like(const Tensor& t);
Tensor ones_like(const Tensor& t);
Tensor empty_like(const Tensor& t);  // same shape, dtype and device; row-major
// [start, start + step, ...) up to but excluding end, as in numpy.arange.
Tensor arange(double start, double end, double step = 1.0, TensorOptions options = {});
Tensor arange(int64_t n, TensorOptions options = {});
// Copies `values` (row-major) into a new tensor of `shape`; sizes must agree.
Tensor from_vector(const std::vector<double>& values, const Shape& shape, TensorOptions options = {});
Tensor from_vector(const std::vector<float>& values, const Shape& shape, TensorOptions options = {});
Tensor from_vector(const std::vector<int64_t>& values, const Shape& shape);  // an i64 index tensor
Tensor scalar_tensor(double value, TensorOptions options = {});

Tensor randn(const Shape& shape, Generator& gen, TensorOptions options = {});  // N(0, 1)
Tensor rand(const Shape& shape, Generator& gen, TensorOptions options = {});   // U[0, 1)
Tensor uniform(const Shape& shape, double low, double high, Generator& gen, TensorOptions options = {});
Tensor normal(const Shape& shape, double mean, double stddev, Generator& gen, TensorOptions options = {});

}  // namespace icd
