// A multi-layer perceptron as DETR and the ICD code define it: Linear layers with a ReLU between each pair
// and none after the last. ICD uses two of them (spec/icd.md sections 1 and 3):
//   instance encoder  (K + 266) -> C -> C -> C      (distill/instance_encoder.h)
//   predictor         C -> C -> C -> 5              (distill/auxiliary_task.h)
// Parameters are named "layers.0.weight", "layers.0.bias", "layers.1.weight", ... (torch's MLP module),
// initialised as torch.nn.Linear (layers/linear.h).
#pragma once
#include <memory>
#include <vector>

#include "engine/random.h"
#include "layers/linear.h"
#include "layers/module.h"

namespace icd {

class Mlp : public UnaryModule {
 public:
  // num_layers >= 1 Linear layers: in -> hidden -> ... -> hidden -> out.
  Mlp(int64_t in_features, int64_t hidden_features, int64_t out_features, int64_t num_layers, Generator& gen);
  Tensor forward(const Tensor& x) override;  // [..., in] -> [..., out]
  int64_t in_features() const { return in_features_; }
  int64_t out_features() const { return out_features_; }

 private:
  int64_t in_features_, out_features_;
  std::vector<std::shared_ptr<Linear>> layers_;
};

}  // namespace icd
