#include "layers/batch_norm.h"

#include <stdexcept>

#include "engine/factory.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/norm.h"

namespace icd {
namespace {
void check_input(const Tensor& x, int64_t channels, const char* layer) {
  if (x.dim() != 4 || x.size(1) != channels)
    throw std::invalid_argument(std::string(layer) + ": expected input [N, " + std::to_string(channels) +
                                ", H, W], got " + shape_str(x.shape()));
}

ChannelAffine affine_of(const Tensor& weight, const Tensor& bias, const Tensor& running_mean,
                        const Tensor& running_var, double eps) {
  Tensor scale = mul(weight, pow(add(running_var, eps), -0.5));
  return {scale, sub(bias, mul(running_mean, scale))};
}
}  // namespace

BatchNorm2d::BatchNorm2d(int64_t channels, double eps, double momentum)
    : channels_(channels), eps_(eps), momentum_(momentum) {
  register_parameter("weight", ones({channels}));
  register_parameter("bias", zeros({channels}));
  register_buffer("running_mean", zeros({channels}));
  register_buffer("running_var", ones({channels}));
  register_buffer("num_batches_tracked", zeros({}, {DType::i64}));
}

Tensor BatchNorm2d::forward(const Tensor& x) {
  check_input(x, channels_, "BatchNorm2d");
  if (is_training()) {
    Tensor& count = buffer("num_batches_tracked");
    ++*count.data<int64_t>();
  }
  return batch_norm(x, parameter("weight"), parameter("bias"), buffer("running_mean"), buffer("running_var"),
                    is_training(), momentum_, eps_);
}

std::optional<ChannelAffine> BatchNorm2d::eval_affine() {
  if (is_training()) return std::nullopt;
  return affine_of(parameter("weight"), parameter("bias"), buffer("running_mean"), buffer("running_var"),
                   eps_);
}

FrozenBatchNorm2d::FrozenBatchNorm2d(int64_t channels, double eps) : channels_(channels), eps_(eps) {
  register_buffer("weight", ones({channels}));
  register_buffer("bias", zeros({channels}));
  register_buffer("running_mean", zeros({channels}));
  register_buffer("running_var", ones({channels}));
}

Tensor FrozenBatchNorm2d::forward(const Tensor& x) {
  check_input(x, channels_, "FrozenBatchNorm2d");
  const ChannelAffine map = affine();
  return add(mul(x, map.scale.reshape({1, channels_, 1, 1})), map.shift.reshape({1, channels_, 1, 1}));
}

ChannelAffine FrozenBatchNorm2d::affine() {
  return affine_of(buffer("weight"), buffer("bias"), buffer("running_mean"), buffer("running_var"), eps_);
}

}  // namespace icd
