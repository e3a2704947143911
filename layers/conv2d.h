// Conv2d layer: parameters "weight" [out, in/groups, kH, kW] and optional "bias" [out] around the
// conv2d op (engine/ops/conv.h). Default init as torch: kaiming_uniform(a = sqrt(5)) for the weight,
// U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for the bias.
#pragma once
#include "engine/ops/conv.h"
#include "engine/random.h"
#include "layers/module.h"

namespace icd {

struct Conv2dConfig {
  int64_t in_channels = 0, out_channels = 0;
  int64_t kernel_h = 1, kernel_w = 1;
  Conv2dOptions options;
  bool bias = true;
};

class Conv2d : public UnaryModule {
 public:
  Conv2d(const Conv2dConfig& config, Generator& gen);
  // Square kernel, stride, padding: the common case.
  Conv2d(int64_t in, int64_t out, int64_t kernel, Generator& gen, int64_t stride = 1, int64_t padding = 0,
         bool bias = true, int64_t groups = 1);
  Tensor forward(const Tensor& x) override;
  Tensor& weight() { return parameter("weight"); }
  Tensor bias();  // undefined when the layer has no bias
  const Conv2dConfig& config() const { return config_; }

 private:
  Conv2dConfig config_;
};

}  // namespace icd
