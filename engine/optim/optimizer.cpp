#include "engine/optim/optimizer.h"

#include <stdexcept>
#include <unordered_set>

#include "engine/autograd.h"

namespace icd {

Optimizer::Optimizer(std::vector<Tensor> parameters, double lr, const char* name)
    : parameters_(std::move(parameters)), lr_(lr), name_(name) {
  std::unordered_set<const TensorImpl*> seen;
  for (std::size_t i = 0; i < parameters_.size(); ++i) {
    const Tensor& p = parameters_[i];
    const std::string where = std::string(name_) + ": parameter " + std::to_string(i);
    if (!p.defined()) throw std::invalid_argument(where + " is undefined");
    if (p.dtype() != DType::f32 && p.dtype() != DType::f64)
      throw std::invalid_argument(where + " has dtype " + dtype_name(p.dtype()) +
                                  "; only f32 and f64 are optimized");
    if (!p.is_leaf()) throw std::invalid_argument(where + " is not a leaf tensor (it has a grad_fn)");
    if (!p.is_contiguous())
      throw std::invalid_argument(where + " " + shape_str(p.shape()) + " is a non-contiguous view");
    if (!seen.insert(p.impl()).second) throw std::invalid_argument(where + " appears more than once");
  }
  set_lr(lr);
}

void Optimizer::set_lr(double lr) {
  if (!(lr >= 0.0)) throw std::invalid_argument(std::string(name_) + ": learning rate must be >= 0");
  lr_ = lr;
}

void Optimizer::zero_grad() {
  for (const Tensor& p : parameters_)
    p.zero_grad();
}

std::pair<std::string, std::size_t> Optimizer::parse_state_name(const std::string& name) const {
  const std::size_t dot = name.rfind('.');
  std::size_t index = parameters_.size();
  if (dot != std::string::npos && dot + 1 < name.size() &&
      name.find_first_not_of("0123456789", dot + 1) == std::string::npos)
    index = std::stoul(name.substr(dot + 1));
  if (index >= parameters_.size())
    throw std::invalid_argument(std::string(name_) + ": state entry '" + name +
                                "' does not name one of the " + std::to_string(parameters_.size()) +
                                " parameters");
  return {name.substr(0, dot), index};
}

void Optimizer::check_state_tensor(const std::string& name, const Tensor& t, const Shape& shape) const {
  if (!t.defined() || t.shape() != shape)
    throw std::invalid_argument(std::string(name_) + ": state entry '" + name + "' has shape " +
                                (t.defined() ? shape_str(t.shape()) : "undefined") + ", expected " +
                                shape_str(shape));
}

Tensor contiguous_grad(const Tensor& parameter) {
  Tensor g = parameter.grad();
  if (!g.defined() || g.is_contiguous()) return g;
  NoGradGuard no_grad;
  Tensor packed = g.contiguous();
  parameter.set_grad(packed);
  return packed;
}

}  // namespace icd
