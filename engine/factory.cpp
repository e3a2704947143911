#include "engine/factory.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "engine/ops/elementwise.h"
#include "engine/transfer.h"

namespace icd {
namespace {

void check_shape(const Shape& shape, const char* op) {
  for (int64_t s : shape)
    if (s < 0) throw std::invalid_argument(std::string(op) + ": negative size in shape " + shape_str(shape));
}

// Values computed on the host; for another device they are made on the CPU and copied there.
template <class Fill>
Tensor filled(const Shape& shape, TensorOptions options, const char* op, Fill fill) {
  if (!options.device.is_cpu())
    return to_device(filled(shape, {options.dtype, Device::cpu()}, op, fill), options.device);
  Tensor t = empty(shape, options);
  dispatch_all(options.dtype, op, [&](auto tag) {
    using T = decltype(tag);
    T* p = t.data<T>();
    for (int64_t i = 0, n = t.numel(); i < n; ++i)
      p[i] = static_cast<T>(fill(i));
  });
  return t;
}

}  // namespace

Tensor empty(const Shape& shape, TensorOptions options) {
  check_shape(shape, "empty");
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<Storage>(shape_numel(shape) * dtype_size(options.dtype), options.device,
                                            options.pinned);
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = options.dtype;
  return Tensor(std::move(impl));
}

Tensor full(const Shape& shape, double value, TensorOptions options) {
  if (options.device.is_cuda()) {  // filled on the device: no host buffer, no transfer
    Tensor t = empty(shape, options);
    fill_(t, value);
    return t;
  }
  return filled(shape, options, "full", [value](int64_t) { return value; });
}
Tensor zeros(const Shape& shape, TensorOptions options) {
  return full(shape, 0.0, options);
}
Tensor ones(const Shape& shape, TensorOptions options) {
  return full(shape, 1.0, options);
}
Tensor zeros_like(const Tensor& t) {
  return zeros(t.shape(), t.options());
}
Tensor ones_like(const Tensor& t) {
  return ones(t.shape(), t.options());
}
Tensor empty_like(const Tensor& t) {
  return empty(t.shape(), t.options());
}
Tensor scalar_tensor(double value, TensorOptions options) {
  return full({}, value, options);
}

Tensor arange(double start, double end, double step, TensorOptions options) {
  if (step == 0) throw std::invalid_argument("arange: step must not be zero");
  int64_t n = std::max<int64_t>(0, static_cast<int64_t>(std::ceil((end - start) / step)));
  return filled({n}, options, "arange", [&](int64_t i) { return start + step * static_cast<double>(i); });
}
Tensor arange(int64_t n, TensorOptions options) {
  return arange(0.0, static_cast<double>(n), 1.0, options);
}

template <class V>
static Tensor from_values(const std::vector<V>& values, const Shape& shape, TensorOptions options) {
  if (static_cast<int64_t>(values.size()) != shape_numel(shape))
    throw std::invalid_argument("from_vector: " + std::to_string(values.size()) + " values for shape " +
                                shape_str(shape));
  return filled(shape, options, "from_vector", [&](int64_t i) { return values[i]; });
}
Tensor from_vector(const std::vector<double>& values, const Shape& shape, TensorOptions options) {
  return from_values(values, shape, options);
}
Tensor from_vector(const std::vector<float>& values, const Shape& shape, TensorOptions options) {
  return from_values(values, shape, options);
}
Tensor from_vector(const std::vector<int64_t>& values, const Shape& shape) {
  return from_values(values, shape, {DType::i64});
}

Tensor randn(const Shape& shape, Generator& gen, TensorOptions options) {
  return filled(shape, options, "randn", [&](int64_t) { return gen.normal(); });
}
Tensor rand(const Shape& shape, Generator& gen, TensorOptions options) {
  return filled(shape, options, "rand", [&](int64_t) { return gen.uniform(); });
}
Tensor uniform(const Shape& shape, double low, double high, Generator& gen, TensorOptions options) {
  return filled(shape, options, "uniform", [&](int64_t) { return gen.uniform(low, high); });
}
Tensor normal(const Shape& shape, double mean, double stddev, Generator& gen, TensorOptions options) {
  return filled(shape, options, "normal", [&](int64_t) { return mean + stddev * gen.normal(); });
}

}  // namespace icd
