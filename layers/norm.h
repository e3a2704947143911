// GroupNorm and LayerNorm layers around engine/ops/norm.h, with torch's parameter names and defaults
// (weight = 1, bias = 0; LayerNorm without affine parameters when elementwise_affine is false).
#pragma once
#include "layers/module.h"

namespace icd {

class GroupNorm : public UnaryModule {
 public:
  GroupNorm(int64_t num_groups, int64_t channels, double eps = 1e-5, bool affine = true);
  Tensor forward(const Tensor& x) override;

 private:
  int64_t num_groups_, channels_;
  double eps_;
  bool affine_;
};

class LayerNorm : public UnaryModule {
 public:
  explicit LayerNorm(Shape normalized_shape, double eps = 1e-5, bool elementwise_affine = true);
  Tensor forward(const Tensor& x) override;

 private:
  Shape normalized_shape_;
  double eps_;
  bool affine_;
};

}  // namespace icd
