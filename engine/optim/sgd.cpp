// SGD with momentum, the update of torch.optim.SGD. For each parameter p with gradient g:
//
//   d = g + weight_decay * p                      (L2 regularisation folded into the gradient)
//   b = d                                         on the first step (the buffer starts as a copy of d)
//   b = momentum * b + (1 - dampening) * d        afterwards
//   d = d + momentum * b   (nesterov)   or   d = b   (classic momentum)
//   p = p - lr * d
//
// Without momentum the buffer is skipped and p = p - lr * d.
#include "engine/optim/sgd.h"

#include <stdexcept>

#include "engine/autograd.h"
#include "engine/cpu/strided.h"
#include "engine/cuda_ops.h"
#include "engine/factory.h"
#include "engine/kernels/optimizer_math.h"
#include "engine/transfer.h"

namespace icd {

Sgd::Sgd(std::vector<Tensor> parameters, SgdOptions options)
    : Optimizer(std::move(parameters), options.lr, "SGD"), options_(options) {
  if (!(options_.momentum >= 0.0)) throw std::invalid_argument("SGD: momentum must be >= 0");
  if (!(options_.weight_decay >= 0.0)) throw std::invalid_argument("SGD: weight_decay must be >= 0");
  if (options_.nesterov && (options_.momentum <= 0.0 || options_.dampening != 0.0))
    throw std::invalid_argument("SGD: nesterov momentum requires momentum > 0 and dampening = 0");
  momentum_buffers_.resize(parameters_.size());
}

void Sgd::step() {
  NoGradGuard no_grad;
  const double momentum = options_.momentum;
  for (std::size_t i = 0; i < parameters_.size(); ++i) {
    const Tensor grad = contiguous_grad(parameters_[i]);
    if (!grad.defined()) continue;
    Tensor& param = parameters_[i];
    const bool first = !momentum_buffers_[i].defined();
    if (momentum != 0.0 && first) momentum_buffers_[i] = empty_like(param);
    Tensor* buffer = momentum != 0.0 ? &momentum_buffers_[i] : nullptr;
    const kernels::SgdUpdate<double> update{
        lr_, options_.weight_decay, momentum, 1.0 - options_.dampening, options_.nesterov, first};
    if (param.device().is_cuda()) {
      cuda_ops::sgd_update("SGD", update, param, grad, buffer);
      continue;
    }
    dispatch_floating(param.dtype(), "SGD", [&](auto tag) {
      using T = decltype(tag);
      const kernels::SgdUpdate<T> step = update.as<T>();
      T* values = param.data<T>();
      const T* g = grad.data<T>();
      T* b = buffer ? buffer->data<T>() : nullptr;
      const int64_t n = param.numel();
#pragma omp parallel for schedule(static) if (n >= cpu::kParallelGrain)
      for (int64_t j = 0; j < n; ++j)
        step(values[j], g[j], b ? b + j : nullptr);
    });
  }
}

NamedTensors Sgd::state() const {
  NamedTensors out;
  for (std::size_t i = 0; i < parameters_.size(); ++i)
    if (momentum_buffers_[i].defined())
      out.emplace_back("momentum_buffer." + std::to_string(i), momentum_buffers_[i].clone());
  return out;
}

void Sgd::load_state(const NamedTensors& state) {
  NoGradGuard no_grad;
  std::vector<Tensor> buffers(parameters_.size());
  for (const auto& [name, value] : state) {
    const auto [key, i] = parse_state_name(name);
    if (key != "momentum_buffer") throw std::invalid_argument("SGD: unknown state entry '" + name + "'");
    check_state_tensor(name, value, parameters_[i].shape());
    buffers[i] = to_device(value, parameters_[i].device()).to(parameters_[i].dtype()).contiguous().clone();
  }
  momentum_buffers_ = std::move(buffers);
}

}  // namespace icd
