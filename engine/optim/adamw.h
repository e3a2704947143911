// Adam with decoupled weight decay (Loshchilov & Hutter), exactly torch.optim.AdamW without amsgrad
// (engine/optim/adamw.cpp).
#pragma once
#include <cstdint>

#include "engine/optim/optimizer.h"

namespace icd {

struct AdamWOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 1e-2;  // decoupled: p *= 1 - lr * weight_decay, independent of the gradient
};

class AdamW : public Optimizer {
 public:
  AdamW(std::vector<Tensor> parameters, AdamWOptions options);
  void step() override;
  // "exp_avg.i", "exp_avg_sq.i" and "step.i" (a one-element f64 tensor) for each parameter with state.
  NamedTensors state() const override;
  void load_state(const NamedTensors& state) override;
  const AdamWOptions& options() const { return options_; }

 private:
  AdamWOptions options_;
  std::vector<Tensor> exp_avg_, exp_avg_sq_;  // undefined until parameter i first gets a gradient
  std::vector<int64_t> steps_;                // per parameter, like torch's state["step"]
};

}  // namespace icd
