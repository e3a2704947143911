// Stochastic gradient descent with momentum, exactly torch.optim.SGD (engine/optim/sgd.cpp).
#pragma once
#include "engine/optim/optimizer.h"

namespace icd {

struct SgdOptions {
  double lr = 0.01;
  double momentum = 0.0;
  double dampening = 0.0;
  double weight_decay = 0.0;  // L2 added to the gradient (coupled), as torch.optim.SGD
  bool nesterov = false;      // requires momentum > 0 and dampening = 0
};

class Sgd : public Optimizer {
 public:
  Sgd(std::vector<Tensor> parameters, SgdOptions options);
  void step() override;
  NamedTensors state() const override;  // "momentum_buffer.i" for each parameter that has one
  void load_state(const NamedTensors& state) override;
  const SgdOptions& options() const { return options_; }

 private:
  SgdOptions options_;
  std::vector<Tensor> momentum_buffers_;  // undefined until parameter i first gets a gradient
};

}  // namespace icd
