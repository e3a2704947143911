#include "gradcheck.h"

#include <cmath>
#include <sstream>
#include <stdexcept>

#include "engine/autograd.h"
#include "engine/cpu/strided.h"
#include "engine/factory.h"

namespace icd::testing {
namespace {

double projected(const Tensor& out, const std::vector<double>& projection) {
  std::vector<double> values = out.to_vector<double>();
  double s = 0.0;
  for (std::size_t i = 0; i < values.size(); ++i)
    s += values[i] * projection[i];
  return s;
}

std::vector<int64_t> element_offsets(const Tensor& t) {
  std::vector<int64_t> offsets;
  cpu::for_each_offset(t.shape(), t.strides(), [&](int64_t off) { offsets.push_back(off); });
  return offsets;
}

}  // namespace

Tensor f64(const std::vector<double>& values, const Shape& shape) { return from_vector(values, shape, {DType::f64}); }

Tensor random_leaf(const Shape& shape, uint64_t seed, double low, double high) {
  Generator gen(seed);
  Tensor t = uniform(shape, low, high, gen, {DType::f64});
  t.set_requires_grad(true);
  return t;
}

GradcheckResult gradcheck(const GradFunction& f, const std::vector<Tensor>& inputs,
                          GradcheckOptions options) {
  GradcheckResult result;
  for (std::size_t k = 0; k < inputs.size(); ++k)
    if (inputs[k].defined() && inputs[k].dtype() != DType::f64)
      throw std::invalid_argument("gradcheck: input " + std::to_string(k) + " is not f64");

  for (const Tensor& x : inputs)
    if (x.defined() && x.requires_grad()) x.zero_grad();
  Tensor out = f(inputs);
  if (out.dtype() != DType::f64) throw std::invalid_argument("gradcheck: output is not f64");
  Generator gen(options.seed);
  Tensor projection = randn(out.shape(), gen, {DType::f64});
  std::vector<double> r = projection.to_vector<double>();
  if (!out.requires_grad()) {
    result.ok = false;
    result.message = "the output does not require grad: no graph was recorded";
    return result;
  }
  out.backward(projection);

  std::vector<std::vector<double>> analytic(inputs.size());
  for (std::size_t k = 0; k < inputs.size(); ++k) {
    const Tensor& x = inputs[k];
    if (!x.defined() || !x.requires_grad()) continue;
    Tensor g = x.grad();
    analytic[k] = g.defined() ? g.to_vector<double>() : std::vector<double>(x.numel(), 0.0);
  }

  {
    NoGradGuard no_grad;
    for (std::size_t k = 0; k < inputs.size() && result.ok; ++k) {
      const Tensor& x = inputs[k];
      if (!x.defined() || !x.requires_grad()) continue;
      double* base = static_cast<double*>(x.impl()->storage->data()) + x.offset();
      std::vector<int64_t> offsets = element_offsets(x);
      for (std::size_t i = 0; i < offsets.size(); ++i) {
        double& element = base[offsets[i]];
        const double saved = element;
        element = saved + options.eps;
        const double plus = projected(f(inputs), r);
        element = saved - options.eps;
        const double minus = projected(f(inputs), r);
        element = saved;
        const double numeric = (plus - minus) / (2 * options.eps);
        const double error = std::abs(analytic[k][i] - numeric);
        result.max_abs_error = std::max(result.max_abs_error, error);
        if (error > options.atol + options.rtol * std::abs(numeric)) {
          std::ostringstream msg;
          msg.precision(12);
          msg << "input " << k << " element " << i << ": analytic " << analytic[k][i] << " vs numeric "
              << numeric << " (|diff| " << error << ")";
          result.ok = false;
          result.message = msg.str();
          break;
        }
      }
    }
  }
  if (!result.ok) return result;

  // Accumulation: a second backward must add to a pre-filled .grad, not overwrite it.
  std::vector<std::vector<double>> prefill(inputs.size());
  for (std::size_t k = 0; k < inputs.size(); ++k) {
    const Tensor& x = inputs[k];
    if (!x.defined() || !x.requires_grad()) continue;
    Tensor g0 = randn(x.shape(), gen, {DType::f64});
    prefill[k] = g0.to_vector<double>();
    x.set_grad(g0);
  }
  f(inputs).backward(projection);
  for (std::size_t k = 0; k < inputs.size() && result.ok; ++k) {
    const Tensor& x = inputs[k];
    if (!x.defined() || !x.requires_grad()) continue;
    std::vector<double> total = x.grad().to_vector<double>();
    for (std::size_t i = 0; i < total.size(); ++i) {
      const double expected = prefill[k][i] + analytic[k][i];
      if (std::abs(total[i] - expected) > 1e-12 * (1 + std::abs(expected))) {
        std::ostringstream msg;
        msg.precision(12);
        msg << "input " << k << " element " << i
            << ": backward overwrote or mis-accumulated .grad: " << total[i] << " instead of " << expected;
        result.ok = false;
        result.message = msg.str();
        break;
      }
    }
  }
  for (const Tensor& x : inputs)
    if (x.defined() && x.requires_grad()) x.zero_grad();
  return result;
}

}  // namespace icd::testing
