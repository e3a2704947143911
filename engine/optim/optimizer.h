// The optimizer interface: a list of parameters (leaf tensors that require grad) and one learning rate.
//
// step() reads each parameter's accumulated .grad and updates the parameter in place, under NoGradGuard;
// parameters whose .grad is undefined (unused in this iteration's graph) are skipped entirely, their
// state included, as in torch. zero_grad() drops every .grad (torch's set_to_none=True), so the next
// backward starts from nothing.
//
// The state of an optimizer (momentum buffers, Adam moments, step counts) is exposed as named tensors,
// so a checkpoint can save it and a resumed run continue exactly where it stopped.
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "engine/tensor.h"

namespace icd {

class Optimizer {
 public:
  // Every parameter must be a defined, contiguous f32/f64 leaf (on the CPU or a CUDA device, where the
  // update runs as one fused kernel per tensor); the error names the offending index.
  Optimizer(std::vector<Tensor> parameters, double lr, const char* name);
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  virtual void step() = 0;
  void zero_grad();

  double lr() const { return lr_; }
  void set_lr(double lr);  // learning-rate schedules call this before each step
  const std::vector<Tensor>& parameters() const { return parameters_; }

  // Named copies of the optimizer's state (parameter i's entries end in ".i"); load_state takes the same
  // list back, from any device (entries move to their parameter's, e.g. a checkpoint read on the host
  // into a model on a GPU), and checks that every name and shape matches.
  virtual NamedTensors state() const = 0;
  virtual void load_state(const NamedTensors& state) = 0;

 protected:
  // Splits "exp_avg.3" into ("exp_avg", 3); throws unless the index names a parameter.
  std::pair<std::string, std::size_t> parse_state_name(const std::string& name) const;
  // Throws naming the entry unless t is defined and has `shape`.
  void check_state_tensor(const std::string& name, const Tensor& t, const Shape& shape) const;

  std::vector<Tensor> parameters_;
  double lr_;
  const char* name_;  // "SGD", "AdamW": for error messages
};

// The parameter's .grad, made row-major in place if it was a strided view (so kernels can loop over it
// and in-place clipping writes through); undefined if the parameter has no gradient.
Tensor contiguous_grad(const Tensor& parameter);

}  // namespace icd
