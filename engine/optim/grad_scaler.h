// Dynamic loss scaling for f16 mixed precision (engine/autocast.h), the rule of torch's GradScaler.
//
// f16 holds nothing below 2^-24, and many gradients of a detector's loss are smaller: they would round
// to zero in the f16 backward of convolutions and products. So the loss is multiplied by a large scale S
// before backward (every gradient grows by S, clear of underflow), and the gradients are divided by S
// again before the optimizer sees them. If S was too large, some gradient overflows to inf (or becomes
// NaN): that step is skipped and S halves. After growth_interval finite steps in a row, S doubles again,
// so it stays near the largest scale that does not overflow. One iteration:
//
//   scaler.scale(loss).backward();
//   if (scaler.unscale(parameters)) optimizer.step();  // else: skip, the gradients are dropped
//   scaler.update();
//
// bf16 has f32's exponent range and needs none of this.
#pragma once
#include <cstdint>
#include <vector>

#include "engine/tensor.h"

namespace icd {

struct GradScalerOptions {
  double init_scale = 65536.0;  // 2^16, torch's default
  double growth_factor = 2.0;
  double backoff_factor = 0.5;
  int64_t growth_interval = 2000;
};

class GradScaler {
 public:
  explicit GradScaler(GradScalerOptions options = {});

  // loss * S (differentiable): backward from it gives S times the gradients.
  Tensor scale(const Tensor& loss) const;
  // Divides the .grad of every parameter that has one by S, in place, and returns whether all of them
  // are finite (one check over all of them: a single number comes back from a GPU). When they are not,
  // every .grad is dropped, so that no optimizer applies a step from them.
  bool unscale(const std::vector<Tensor>& parameters);
  // Adjusts S after the step: halves it after a step whose gradients were not finite, doubles it after
  // growth_interval finite steps in a row.
  void update();

  double scale_value() const { return scale_; }
  int64_t skipped_steps() const { return skipped_; }  // in this process, for logging

  // "scale" and "growth_tracker" (f64 scalars), for checkpoints; load_state takes them back.
  NamedTensors state() const;
  void load_state(const NamedTensors& state);

 private:
  GradScalerOptions options_;
  double scale_;
  int64_t growth_tracker_ = 0;  // finite steps since the last change of S
  int64_t skipped_ = 0;
  bool last_finite_ = true;
};

}  // namespace icd
