#include "distill/mlp.h"

#include <stdexcept>
#include <string>

#include "engine/ops/elementwise.h"

namespace icd {

Mlp::Mlp(int64_t in_features, int64_t hidden_features, int64_t out_features, int64_t num_layers,
         Generator& gen)
    : in_features_(in_features), out_features_(out_features) {
  if (num_layers < 1)
    throw std::invalid_argument("Mlp: num_layers must be at least 1, got " + std::to_string(num_layers));
  auto layers = register_module("layers", std::make_shared<ModuleDict>());
  for (int64_t i = 0; i < num_layers; ++i) {
    int64_t in = i == 0 ? in_features : hidden_features;
    int64_t out = i + 1 == num_layers ? out_features : hidden_features;
    layers_.push_back(layers->add(std::to_string(i), std::make_shared<Linear>(in, out, gen)));
  }
}

Tensor Mlp::forward(const Tensor& x) {
  if (x.dim() < 1 || x.size(-1) != in_features_)
    throw std::invalid_argument("Mlp: expected [..., " + std::to_string(in_features_) + "] input, got " +
                                shape_str(x.shape()));
  Tensor y = x;
  for (std::size_t i = 0; i < layers_.size(); ++i) {
    y = layers_[i]->forward(y);
    if (i + 1 < layers_.size()) y = relu(y);
  }
  return y;
}

}  // namespace icd
