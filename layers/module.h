// Module: the base of every layer and model. A module owns named parameters (learned tensors, leaves
// that require grad), buffers (state that is saved but not learned, e.g. BatchNorm's running mean) and
// child modules. Names compose with dots, as in torchvision: a parameter "weight" of child "conv1" of
// child "layer1.0" is "layer1.0.conv1.weight", which is what state_dict() keys and checkpoints use.
//
// A module is built at run time from a config struct (no template networks). Parameters are tensor
// handles: an optimizer that updates them in place updates the module, and load_state_dict() copies
// values into the existing tensors, so handles taken earlier stay valid.
#pragma once
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "engine/tensor.h"

namespace icd {

class Module {
 public:
  virtual ~Module() = default;
  Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // Recursively, in registration order (own entries first, then each child's, prefixed by its name).
  NamedTensors named_parameters() const;
  NamedTensors named_buffers() const;
  std::vector<Tensor> parameters() const;  // for an optimizer
  // Parameters that currently require grad (frozen ones are left out).
  std::vector<Tensor> trainable_parameters() const;
  const std::vector<std::pair<std::string, std::shared_ptr<Module>>>& children() const { return children_; }

  // Parameters and buffers by full name. Tensors are shared with the module, not copied.
  NamedTensors state_dict() const;
  // Copies each entry into the tensor of the same name (converting dtype, and moving it to the module's
  // device: a checkpoint read on the host loads into a model on a GPU). Strict: every name must be
  // present on both sides with the same shape; otherwise throws, listing every missing, unexpected and
  // mis-shaped name. Non-strict: loads what matches by name and shape and returns the problems instead.
  std::vector<std::string> load_state_dict(const NamedTensors& state, bool strict = true);

  // Training mode (BatchNorm uses batch statistics, dropout-like behaviour) for this module and all children.
  virtual void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }

  // Freezing: turns requires_grad off (or on) for every parameter of this module and its children.
  void set_requires_grad(bool on);
  int64_t parameter_count() const;
  int64_t trainable_parameter_count() const;

  // Converts every floating parameter and buffer to `dtype`, replacing the old tensors (e.g. f64 for
  // gradient checks). Handles taken before (an optimizer's) keep pointing at the old tensors.
  void to(DType dtype);
  // Moves every parameter and buffer to `device` (engine/transfer.h), keeping which parameters are
  // trainable; as to(DType), handles taken before keep pointing at the old tensors, so build optimizers
  // after moving. Fails, naming the device and the reason, when it cannot be used.
  void to(Device device);
  // Where the module's tensors live: the device of its first parameter (or buffer); the CPU for a module
  // with neither. Module::to keeps them all on one device.
  Device device() const;

 protected:
  // Registers a learned tensor; it becomes a leaf that requires grad. Returns the stored handle.
  Tensor register_parameter(const std::string& name, Tensor value);
  Tensor register_buffer(const std::string& name, Tensor value);
  template <class M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> child) {
    add_child(name, child);
    return child;
  }
  // Reads a registered parameter or buffer of this module (not of children) by its short name.
  Tensor& parameter(const std::string& name);
  Tensor& buffer(const std::string& name);

  bool training_ = true;

 private:
  void add_child(const std::string& name, std::shared_ptr<Module> child);
  void check_new_name(const std::string& name) const;
  void collect(const std::string& prefix, bool parameters, NamedTensors& out) const;
  const Tensor* first_tensor(bool want_parameters) const;

  NamedTensors parameters_;
  NamedTensors buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
};

// A plain container of named children (like torch.nn.ModuleDict): gives parameter names such as
// "extra_blocks.p6.weight" without a class of its own.
class ModuleDict : public Module {
 public:
  template <class M>
  std::shared_ptr<M> add(const std::string& name, std::shared_ptr<M> child) {
    return register_module(name, std::move(child));
  }
};

// A module with one input and one output, the kind Sequential chains.
class UnaryModule : public Module {
 public:
  virtual Tensor forward(const Tensor& x) = 0;
  Tensor operator()(const Tensor& x) { return forward(x); }
};

}  // namespace icd
