#include "layers/sequential.h"

#include "engine/ops/elementwise.h"

namespace icd {

Sequential::Sequential(std::vector<std::shared_ptr<UnaryModule>> layers) {
  for (auto& layer : layers)
    push_back(std::move(layer));
}

void Sequential::push_back(std::shared_ptr<UnaryModule> layer) {
  register_module(std::to_string(layers_.size()), layer);
  layers_.push_back(std::move(layer));
}

Tensor Sequential::forward(const Tensor& x) {
  Tensor y = x;
  for (auto& layer : layers_)
    y = layer->forward(y);
  return y;
}

Tensor ReLU::forward(const Tensor& x) {
  return relu(x);
}

}  // namespace icd
