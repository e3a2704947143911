#include "layers/norm.h"

#include <stdexcept>

#include "engine/factory.h"
#include "engine/ops/norm.h"

namespace icd {

GroupNorm::GroupNorm(int64_t num_groups, int64_t channels, double eps, bool affine)
    : num_groups_(num_groups), channels_(channels), eps_(eps), affine_(affine) {
  if (num_groups <= 0 || channels % num_groups)
    throw std::invalid_argument("GroupNorm: " + std::to_string(channels) + " channels do not split into " +
                                std::to_string(num_groups) + " groups");
  if (affine) {
    register_parameter("weight", ones({channels}));
    register_parameter("bias", zeros({channels}));
  }
}

Tensor GroupNorm::forward(const Tensor& x) {
  if (affine_) return group_norm(x, num_groups_, parameter("weight"), parameter("bias"), eps_);
  return group_norm(x, num_groups_, Tensor(), Tensor(), eps_);
}

LayerNorm::LayerNorm(Shape normalized_shape, double eps, bool elementwise_affine)
    : normalized_shape_(std::move(normalized_shape)), eps_(eps), affine_(elementwise_affine) {
  if (affine_) {
    register_parameter("weight", ones(normalized_shape_));
    register_parameter("bias", zeros(normalized_shape_));
  }
}

Tensor LayerNorm::forward(const Tensor& x) {
  if (affine_) return layer_norm(x, normalized_shape_, parameter("weight"), parameter("bias"), eps_);
  return layer_norm(x, normalized_shape_, Tensor(), Tensor(), eps_);
}

}  // namespace icd
