// AdamW, the update of torch.optim.AdamW (amsgrad off). For each parameter p with gradient g, at its
// t-th step (t counts the steps in which p had a gradient):
//
//   p = p * (1 - lr * weight_decay)                       decoupled decay: not part of the gradient
//   m = beta1 * m + (1 - beta1) * g                        first moment   (m, v start at 0)
//   v = beta2 * v + (1 - beta2) * g^2                      second moment
//   p = p - (lr / (1 - beta1^t)) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
//
// The bias corrections undo the zero initialisation of m and v: after t steps of a constant gradient,
// m = (1 - beta1^t) g, so m / (1 - beta1^t) = g.
#include "engine/optim/adamw.h"

#include <cmath>
#include <stdexcept>

#include "engine/autograd.h"
#include "engine/cpu/strided.h"
#include "engine/cuda_ops.h"
#include "engine/factory.h"
#include "engine/kernels/optimizer_math.h"
#include "engine/transfer.h"

namespace icd {

AdamW::AdamW(std::vector<Tensor> parameters, AdamWOptions options)
    : Optimizer(std::move(parameters), options.lr, "AdamW"), options_(options) {
  if (!(options_.beta1 >= 0.0 && options_.beta1 < 1.0) || !(options_.beta2 >= 0.0 && options_.beta2 < 1.0))
    throw std::invalid_argument("AdamW: betas must lie in [0, 1)");
  if (!(options_.eps >= 0.0)) throw std::invalid_argument("AdamW: eps must be >= 0");
  if (!(options_.weight_decay >= 0.0)) throw std::invalid_argument("AdamW: weight_decay must be >= 0");
  exp_avg_.resize(parameters_.size());
  exp_avg_sq_.resize(parameters_.size());
  steps_.assign(parameters_.size(), 0);
}

void AdamW::step() {
  NoGradGuard no_grad;
  const double beta1 = options_.beta1, beta2 = options_.beta2;
  for (std::size_t i = 0; i < parameters_.size(); ++i) {
    const Tensor grad = contiguous_grad(parameters_[i]);
    if (!grad.defined()) continue;
    Tensor& param = parameters_[i];
    if (!exp_avg_[i].defined()) {
      exp_avg_[i] = zeros_like(param);
      exp_avg_sq_[i] = zeros_like(param);
    }
    const int64_t t = ++steps_[i];
    const double step_size = lr_ / (1.0 - std::pow(beta1, static_cast<double>(t)));
    const double bias_correction2_sqrt = std::sqrt(1.0 - std::pow(beta2, static_cast<double>(t)));
    const kernels::AdamWUpdate<double> update{1.0 - lr_ * options_.weight_decay,
                                              beta1,
                                              1.0 - beta1,
                                              beta2,
                                              1.0 - beta2,
                                              options_.eps,
                                              bias_correction2_sqrt,
                                              -step_size};
    if (param.device().is_cuda()) {
      cuda_ops::adamw_update("AdamW", update, param, grad, exp_avg_[i], exp_avg_sq_[i]);
      continue;
    }
    dispatch_floating(param.dtype(), "AdamW", [&](auto tag) {
      using T = decltype(tag);
      const kernels::AdamWUpdate<T> step = update.as<T>();
      T* values = param.data<T>();
      T* m = exp_avg_[i].data<T>();
      T* v = exp_avg_sq_[i].data<T>();
      const T* g = grad.data<T>();
      const int64_t n = param.numel();
#pragma omp parallel for schedule(static) if (n >= cpu::kParallelGrain)
      for (int64_t j = 0; j < n; ++j)
        step(values[j], g[j], m[j], v[j]);
    });
  }
}

NamedTensors AdamW::state() const {
  NamedTensors out;
  for (std::size_t i = 0; i < parameters_.size(); ++i) {
    if (!exp_avg_[i].defined()) continue;
    const std::string index = std::to_string(i);
    out.emplace_back("exp_avg." + index, exp_avg_[i].clone());
    out.emplace_back("exp_avg_sq." + index, exp_avg_sq_[i].clone());
    out.emplace_back("step." + index, scalar_tensor(static_cast<double>(steps_[i]), {DType::f64}));
  }
  return out;
}

void AdamW::load_state(const NamedTensors& state) {
  NoGradGuard no_grad;
  const std::size_t count = parameters_.size();
  std::vector<Tensor> exp_avg(count), exp_avg_sq(count);
  std::vector<int64_t> steps(count, 0);
  std::vector<int> seen(count, 0);  // bit 0: exp_avg, bit 1: exp_avg_sq, bit 2: step
  for (const auto& [name, value] : state) {
    const auto [key, i] = parse_state_name(name);
    Tensor& param = parameters_[i];
    if (key == "exp_avg" || key == "exp_avg_sq") {
      check_state_tensor(name, value, param.shape());
      (key == "exp_avg" ? exp_avg : exp_avg_sq)[i] =
          to_device(value, param.device()).to(param.dtype()).contiguous().clone();
      seen[i] |= key == "exp_avg" ? 1 : 2;
    } else if (key == "step") {
      if (!value.defined() || value.numel() != 1)
        throw std::invalid_argument("AdamW: state entry '" + name + "' must hold one number");
      const double s = value.item();
      if (!(s >= 1.0) || s != std::floor(s))
        throw std::invalid_argument("AdamW: state entry '" + name + "' is not a positive step count");
      steps[i] = static_cast<int64_t>(s);
      seen[i] |= 4;
    } else {
      throw std::invalid_argument("AdamW: unknown state entry '" + name + "'");
    }
  }
  for (std::size_t i = 0; i < count; ++i)
    if (seen[i] != 0 && seen[i] != 7)
      throw std::invalid_argument("AdamW: the state of parameter " + std::to_string(i) +
                                  " needs exp_avg, exp_avg_sq and step together");
  exp_avg_ = std::move(exp_avg);
  exp_avg_sq_ = std::move(exp_avg_sq);
  steps_ = std::move(steps);
}

}  // namespace icd
