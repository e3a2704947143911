// The feature-imitation baseline ("FitNets", Romero et al. 2015, as used for detectors): the student's FPN
// maps are pushed towards the teacher's everywhere, with no notion of instances.
//
//   L = weight * (1 / n_levels) sum_l MSE(adapter_l(S_l), T_l)
//
// S_l [B, C_s, H_l, W_l] and T_l [B, C_t, H_l, W_l] are the student's and teacher's level-l outputs for the
// same padded batch; adapter_l is a learned 1x1 convolution C_s -> C_t with bias (one per level, or one
// shared by all levels); MSE is the mean over every element, padding included. The teacher maps are constants
// (detached). Parameters: "adapters.<l>.weight/bias", or "adapter.weight/bias" when shared. This is the
// comparison the paper draws: ICD distils the same kind of features, but only where the teacher's
// instance-conditional attention looks, and in a learned per-head value space.
#pragma once
#include <memory>
#include <vector>

#include "engine/random.h"
#include "layers/conv2d.h"
#include "layers/module.h"

namespace icd {

struct FitNetConfig {
  int64_t student_channels = 256;
  int64_t teacher_channels = 256;
  int64_t num_levels = 5;       // p3..p7
  bool shared_adapter = false;  // one 1x1 conv for all levels
  double weight = 1.0;
};

class FitNetDistiller : public Module {
 public:
  FitNetDistiller(const FitNetConfig& config, Generator& gen);
  // student, teacher: num_levels maps each, matching in batch and spatial size.
  Tensor forward(const std::vector<Tensor>& student, const std::vector<Tensor>& teacher);
  const FitNetConfig& config() const { return config_; }

 private:
  FitNetConfig config_;
  std::vector<std::shared_ptr<Conv2d>> adapters_;  // one per level (the same one repeated when shared)
};

}  // namespace icd
