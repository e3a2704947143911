// Linear layer: y = x W^T + b with "weight" [out, in] and optional "bias" [out], torch's layout and
// default init (kaiming_uniform(a = sqrt(5)) for W, U(-1/sqrt(in), 1/sqrt(in)) for b).
#pragma once
#include "engine/random.h"
#include "layers/module.h"

namespace icd {

class Linear : public UnaryModule {
 public:
  Linear(int64_t in_features, int64_t out_features, Generator& gen, bool bias = true);
  Tensor forward(const Tensor& x) override;  // x: [..., in] -> [..., out]
  Tensor& weight() { return parameter("weight"); }
  Tensor bias();  // undefined when the layer has no bias

 private:
  bool has_bias_;
};

}  // namespace icd
