#include "layers/module.h"

#include <map>
#include <sstream>
#include <stdexcept>

#include "engine/autograd.h"
#include "engine/ops/elementwise.h"
#include "engine/transfer.h"

namespace icd {

void Module::check_new_name(const std::string& name) const {
  if (name.empty() || name.find('.') != std::string::npos)
    throw std::invalid_argument("Module: invalid name '" + name + "' (non-empty, no dots)");
  auto taken = [&](const auto& list) {
    for (const auto& [n, v] : list)
      if (n == name) return true;
    return false;
  };
  if (taken(parameters_) || taken(buffers_) || taken(children_))
    throw std::invalid_argument("Module: name '" + name + "' is already registered");
}

Tensor Module::register_parameter(const std::string& name, Tensor value) {
  check_new_name(name);
  if (!value.is_leaf()) value = value.detach();
  value.set_requires_grad(true);
  parameters_.emplace_back(name, value);
  return value;
}

Tensor Module::register_buffer(const std::string& name, Tensor value) {
  check_new_name(name);
  buffers_.emplace_back(name, value.detach());
  return buffers_.back().second;
}

void Module::add_child(const std::string& name, std::shared_ptr<Module> child) {
  check_new_name(name);
  if (!child) throw std::invalid_argument("Module: child '" + name + "' is null");
  children_.emplace_back(name, std::move(child));
}

Tensor& Module::parameter(const std::string& name) {
  for (auto& [n, t] : parameters_)
    if (n == name) return t;
  throw std::out_of_range("Module: no parameter '" + name + "'");
}

Tensor& Module::buffer(const std::string& name) {
  for (auto& [n, t] : buffers_)
    if (n == name) return t;
  throw std::out_of_range("Module: no buffer '" + name + "'");
}

void Module::collect(const std::string& prefix, bool want_parameters, NamedTensors& out) const {
  for (const auto& [name, t] : want_parameters ? parameters_ : buffers_)
    out.emplace_back(prefix + name, t);
  for (const auto& [name, child] : children_)
    child->collect(prefix + name + ".", want_parameters, out);
}

NamedTensors Module::named_parameters() const {
  NamedTensors out;
  collect("", true, out);
  return out;
}

NamedTensors Module::named_buffers() const {
  NamedTensors out;
  collect("", false, out);
  return out;
}

std::vector<Tensor> Module::parameters() const {
  std::vector<Tensor> out;
  for (auto& [name, t] : named_parameters())
    out.push_back(t);
  return out;
}

std::vector<Tensor> Module::trainable_parameters() const {
  std::vector<Tensor> out;
  for (auto& [name, t] : named_parameters())
    if (t.requires_grad()) out.push_back(t);
  return out;
}

NamedTensors Module::state_dict() const {
  NamedTensors out = named_parameters();
  collect("", false, out);
  return out;
}

std::vector<std::string> Module::load_state_dict(const NamedTensors& state, bool strict) {
  std::map<std::string, Tensor> given(state.begin(), state.end());
  std::vector<std::string> problems;
  NamedTensors own = state_dict();
  std::map<std::string, bool> known;
  NoGradGuard no_grad;
  for (auto& [name, target] : own) {
    known[name] = true;
    auto it = given.find(name);
    if (it == given.end()) {
      problems.push_back("missing: " + name);
      continue;
    }
    if (it->second.shape() != target.shape()) {
      problems.push_back("shape mismatch: " + name + " is " + shape_str(target.shape()) + " in the model, " +
                         shape_str(it->second.shape()) + " in the state");
      continue;
    }
    if (!strict) copy_(target, to_device(it->second, target.device()));
  }
  for (const auto& [name, t] : state)
    if (!known.count(name)) problems.push_back("unexpected: " + name);
  if (strict) {
    if (!problems.empty()) {
      std::ostringstream msg;
      msg << "load_state_dict: " << problems.size() << " problem(s):";
      for (const auto& p : problems)
        msg << "\n  " << p;
      throw std::runtime_error(msg.str());
    }
    for (auto& [name, target] : own)
      copy_(target, to_device(given.at(name), target.device()));  // all checked: nothing half-loaded
  }
  return problems;
}

void Module::train(bool on) {
  training_ = on;
  for (auto& [name, child] : children_)
    child->train(on);
}

void Module::set_requires_grad(bool on) {
  for (auto& [name, t] : parameters_)
    t.set_requires_grad(on);
  for (auto& [name, child] : children_)
    child->set_requires_grad(on);
}

int64_t Module::parameter_count() const {
  int64_t n = 0;
  for (auto& [name, t] : named_parameters())
    n += t.numel();
  return n;
}

int64_t Module::trainable_parameter_count() const {
  int64_t n = 0;
  for (auto& [name, t] : named_parameters())
    if (t.requires_grad()) n += t.numel();
  return n;
}

void Module::to(DType dtype) {
  for (auto& [name, t] : parameters_) {
    bool trainable = t.requires_grad();
    t = t.detach().to(dtype);
    t.set_requires_grad(trainable);
  }
  for (auto& [name, t] : buffers_)
    if (t.dtype() != DType::i64) t = t.to(dtype);  // counters stay integers
  for (auto& [name, child] : children_)
    child->to(dtype);
}

void Module::to(Device device) {
  // Every copy is made before any tensor is replaced: a failure part way (no GPU, out of memory) leaves
  // the module as it was.
  std::vector<std::pair<Tensor*, Tensor>> moved;
  std::vector<Module*> pending{this};
  while (!pending.empty()) {
    Module* module = pending.back();
    pending.pop_back();
    for (auto& [name, t] : module->parameters_) {
      Tensor copy = to_device(t.detach(), device);
      if (t.requires_grad()) copy.set_requires_grad(true);
      moved.emplace_back(&t, copy);
    }
    for (auto& [name, t] : module->buffers_)
      moved.emplace_back(&t, to_device(t, device));
    for (auto& [name, child] : module->children_)
      pending.push_back(child.get());
  }
  for (auto& [slot, copy] : moved)
    *slot = copy;
}

// The first parameter (or buffer) in registration order, as named_parameters() lists them, without
// building the list: device() runs every training iteration.
const Tensor* Module::first_tensor(bool want_parameters) const {
  const NamedTensors& own = want_parameters ? parameters_ : buffers_;
  if (!own.empty()) return &own.front().second;
  for (const auto& [name, child] : children_)
    if (const Tensor* t = child->first_tensor(want_parameters)) return t;
  return nullptr;
}

Device Module::device() const {
  const Tensor* t = first_tensor(true);
  if (!t) t = first_tensor(false);
  return t ? t->device() : Device::cpu();
}

}  // namespace icd
