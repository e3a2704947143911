// Sequential: children applied in order, named "0", "1", ... as in torch.nn.Sequential, and ReLU, the
// parameter-free activation that appears in Sequentials.
#pragma once
#include <memory>
#include <vector>

#include "layers/module.h"

namespace icd {

class Sequential : public UnaryModule {
 public:
  Sequential() = default;
  explicit Sequential(std::vector<std::shared_ptr<UnaryModule>> layers);
  void push_back(std::shared_ptr<UnaryModule> layer);
  Tensor forward(const Tensor& x) override;
  std::size_t size() const { return layers_.size(); }
  UnaryModule& operator[](std::size_t i) { return *layers_.at(i); }

 private:
  std::vector<std::shared_ptr<UnaryModule>> layers_;
};

class ReLU : public UnaryModule {
 public:
  Tensor forward(const Tensor& x) override;
};

}  // namespace icd
