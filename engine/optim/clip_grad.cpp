// Gradient clipping.
//
// By value: g = clamp(g, -c, c) elementwise, per parameter.
// By global norm: treat all gradients as one long vector G. total = ||G||_2 (summed in double over every
// element, so f32 gradients lose nothing). If total > max_norm, scale G by max_norm / (total + 1e-6):
// the direction is kept and the length becomes (just under) max_norm. The 1e-6 keeps the division
// finite when every gradient is zero.
#include "engine/optim/clip_grad.h"

#include <cmath>
#include <stdexcept>
#include <string>

#include "engine/autograd.h"
#include "engine/optim/optimizer.h"

namespace icd {
namespace {

void check_parameter(const Tensor& p, std::size_t i, const char* op) {
  if (!p.defined())
    throw std::invalid_argument(std::string(op) + ": parameter " + std::to_string(i) + " is undefined");
  if (!p.device().is_cpu())
    throw std::invalid_argument(std::string(op) + ": parameter " + std::to_string(i) + " is not on the CPU");
}

}  // namespace

void clip_grad_value(const std::vector<Tensor>& parameters, double clip_value) {
  if (!(clip_value >= 0.0)) throw std::invalid_argument("clip_grad_value: clip_value must be >= 0");
  NoGradGuard no_grad;
  for (std::size_t i = 0; i < parameters.size(); ++i) {
    check_parameter(parameters[i], i, "clip_grad_value");
    const Tensor grad = contiguous_grad(parameters[i]);
    if (!grad.defined()) continue;
    dispatch_floating(grad.dtype(), "clip_grad_value", [&](auto tag) {
      using T = decltype(tag);
      T* g = grad.data<T>();
      const T high = static_cast<T>(clip_value), low = -high;
      const int64_t n = grad.numel();
      for (int64_t j = 0; j < n; ++j)
        g[j] = g[j] < low ? low : (g[j] > high ? high : g[j]);
    });
  }
}

double clip_grad_norm(const std::vector<Tensor>& parameters, double max_norm) {
  if (!(max_norm >= 0.0)) throw std::invalid_argument("clip_grad_norm: max_norm must be >= 0");
  NoGradGuard no_grad;
  std::vector<Tensor> grads;
  double sum_of_squares = 0.0;
  for (std::size_t i = 0; i < parameters.size(); ++i) {
    check_parameter(parameters[i], i, "clip_grad_norm");
    const Tensor grad = contiguous_grad(parameters[i]);
    if (!grad.defined()) continue;
    grads.push_back(grad);
    sum_of_squares += dispatch_floating(grad.dtype(), "clip_grad_norm", [&](auto tag) {
      using T = decltype(tag);
      const T* g = grad.data<T>();
      const int64_t n = grad.numel();
      double s = 0.0;
      for (int64_t j = 0; j < n; ++j)
        s += static_cast<double>(g[j]) * static_cast<double>(g[j]);
      return s;
    });
  }
  const double total = std::sqrt(sum_of_squares);
  const double scale = max_norm / (total + 1e-6);
  if (scale < 1.0) {
    for (const Tensor& grad : grads) {
      dispatch_floating(grad.dtype(), "clip_grad_norm", [&](auto tag) {
        using T = decltype(tag);
        T* g = grad.data<T>();
        const T s = static_cast<T>(scale);
        const int64_t n = grad.numel();
        for (int64_t j = 0; j < n; ++j)
          g[j] *= s;
      });
    }
  }
  return total;
}

}  // namespace icd
