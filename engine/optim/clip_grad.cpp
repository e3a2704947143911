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
#include "engine/cuda_ops.h"
#include "engine/kernels/optimizer_math.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/reduce.h"
#include "engine/optim/optimizer.h"
#include "engine/transfer.h"

namespace icd {
namespace {

void check_parameter(const Tensor& p, std::size_t i, const char* op) {
  if (!p.defined())
    throw std::invalid_argument(std::string(op) + ": parameter " + std::to_string(i) + " is undefined");
}

}  // namespace

void clip_grad_value(const std::vector<Tensor>& parameters, double clip_value) {
  if (!(clip_value >= 0.0)) throw std::invalid_argument("clip_grad_value: clip_value must be >= 0");
  NoGradGuard no_grad;
  for (std::size_t i = 0; i < parameters.size(); ++i) {
    check_parameter(parameters[i], i, "clip_grad_value");
    const Tensor grad = contiguous_grad(parameters[i]);
    if (!grad.defined()) continue;
    if (grad.device().is_cuda()) {
      Tensor writable = grad;
      cuda_ops::clip_by_value("clip_grad_value", writable, clip_value);
      continue;
    }
    dispatch_floating(grad.dtype(), "clip_grad_value", [&](auto tag) {
      using T = decltype(tag);
      T* g = grad.data<T>();
      const T high = static_cast<T>(clip_value), low = -high;
      const int64_t n = grad.numel();
      for (int64_t j = 0; j < n; ++j)
        g[j] = kernels::clip_to(g[j], low, high);
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
    if (grad.device().is_cuda()) {  // the device sums in f64 as below; one number comes back to the host
      const Tensor g = grad.to(DType::f64);
      sum_of_squares += to_device(sum(mul(g, g)), Device::cpu()).item();
      continue;
    }
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
      if (grad.device().is_cuda()) {
        Tensor writable = grad;
        mul_(writable, scale);
        continue;
      }
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
