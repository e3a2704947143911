#include "engine/optim/grad_scaler.h"

#include <cmath>
#include <stdexcept>
#include <string>

#include "engine/autograd.h"
#include "engine/factory.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/reduce.h"
#include "engine/transfer.h"

namespace icd {

GradScaler::GradScaler(GradScalerOptions options) : options_(options), scale_(options.init_scale) {
  if (!(options_.init_scale > 0) || !std::isfinite(options_.init_scale))
    throw std::invalid_argument("GradScaler: init_scale must be positive and finite");
  if (!(options_.growth_factor > 1.0)) throw std::invalid_argument("GradScaler: growth_factor must be > 1");
  if (!(options_.backoff_factor > 0.0 && options_.backoff_factor < 1.0))
    throw std::invalid_argument("GradScaler: backoff_factor must be in (0, 1)");
  if (options_.growth_interval <= 0) throw std::invalid_argument("GradScaler: growth_interval must be > 0");
}

Tensor GradScaler::scale(const Tensor& loss) const {
  return mul(loss, scale_);
}

bool GradScaler::unscale(const std::vector<Tensor>& parameters) {
  NoGradGuard no_grad;
  // 0 * g is 0 for every finite g and NaN for inf or NaN, so the sum of 0 * g over all gradients is 0
  // exactly when every gradient is finite: one reduction per tensor and one number read back.
  double poison = 0.0;
  Tensor total;
  for (const Tensor& p : parameters) {
    Tensor g = p.grad();
    if (!g.defined()) continue;
    mul_(g, 1.0 / scale_);
    Tensor zero_if_finite = sum(mul(g, 0.0));
    total = total.defined() ? add(total, zero_if_finite) : zero_if_finite;
  }
  if (total.defined()) poison = to_device(total, Device::cpu()).item();
  last_finite_ = poison == 0.0;
  if (!last_finite_) {
    ++skipped_;
    for (const Tensor& p : parameters)
      p.zero_grad();
  }
  return last_finite_;
}

void GradScaler::update() {
  if (!last_finite_) {
    scale_ *= options_.backoff_factor;
    growth_tracker_ = 0;
  } else if (++growth_tracker_ == options_.growth_interval) {
    // torch keeps the scale where it is if growing would overflow the f32 it lives in.
    if (std::isfinite(scale_ * options_.growth_factor)) scale_ *= options_.growth_factor;
    growth_tracker_ = 0;
  }
  last_finite_ = true;
}

NamedTensors GradScaler::state() const {
  return {{"scale", scalar_tensor(scale_, {DType::f64})},
          {"growth_tracker", scalar_tensor(static_cast<double>(growth_tracker_), {DType::f64})}};
}

void GradScaler::load_state(const NamedTensors& state) {
  double scale = -1, tracker = -1;
  for (const auto& [name, value] : state) {
    if (!value.defined() || value.numel() != 1)
      throw std::invalid_argument("GradScaler: state entry '" + name + "' must hold one number");
    if (name == "scale")
      scale = value.item();
    else if (name == "growth_tracker")
      tracker = value.item();
    else
      throw std::invalid_argument("GradScaler: unknown state entry '" + name + "'");
  }
  if (!(scale > 0) || !std::isfinite(scale))
    throw std::invalid_argument("GradScaler: the state needs a positive finite 'scale'");
  if (!(tracker >= 0) || tracker != std::floor(tracker))
    throw std::invalid_argument("GradScaler: the state needs a non-negative whole 'growth_tracker'");
  scale_ = scale;
  growth_tracker_ = static_cast<int64_t>(tracker);
  last_finite_ = true;
}

}  // namespace icd
