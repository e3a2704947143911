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

FrozenBatchNorm2d::FrozenBatchNorm2d(int64_t channels, double eps) : channels_(channels), eps_(eps) {
  register_buffer("weight", ones({channels}));
  register_buffer("bias", zeros({channels}));
  register_buffer("running_mean", zeros({channels}));
  register_buffer("running_var", ones({channels}));
}

Tensor FrozenBatchNorm2d::forward(const Tensor& x) {
  check_input(x, channels_, "FrozenBatchNorm2d");
  Tensor scale = mul(buffer("weight"), pow(add(buffer("running_var"), eps_), -0.5));
  Tensor shift = sub(buffer("bias"), mul(buffer("running_mean"), scale));
  return add(mul(x, scale.reshape({1, channels_, 1, 1})), shift.reshape({1, channels_, 1, 1}));
}

}  // namespace icd
