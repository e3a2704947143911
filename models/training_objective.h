// What a training run optimises, as the trainer (apps/common/trainer.h) sees it. The detection objective
// is the detector's own loss; the distillation objectives (distill/icd_objective.h,
// distill/fitnet_objective.h) add a frozen teacher, their own modules and their own optimizer.
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "engine/geometry.h"
#include "models/retinanet.h"

namespace icd {

using NamedLosses = std::vector<std::pair<std::string, Tensor>>;

// One training batch in the model's terms.
struct TrainingBatch {
  Tensor images;                     // [N, 3, H, W], padded to a multiple of 32
  std::vector<TargetBoxes> targets;  // per image, in the pixels of the resized (unpadded) image
  std::vector<ImageSize> sizes;      // per image, the resized size before padding
};

class TrainingObjective {
 public:
  virtual ~TrainingObjective() = default;
  // Named 0-d losses of one batch; the trainer back-propagates their sum once.
  virtual NamedLosses losses(RetinaNet& model, const TrainingBatch& batch, int64_t iteration) = 0;
  // After backward, before the detector's optimizer step: the objective's own optimizers step here.
  virtual void after_backward(int64_t iteration) {}
  // The tensors the objective's own optimizers update (the trainer unscales their gradients under f16
  // loss scaling, and drops them with the detector's when a step is skipped).
  virtual std::vector<Tensor> parameters() const { return {}; }
  // Saved in and restored from checkpoints (the trainer adds a prefix).
  virtual NamedTensors state() const { return {}; }
  virtual void load_state(const NamedTensors& state) {}
  // Numbers about the last batch that are not losses (e.g. how instance-specific ICD's attention is). The
  // trainer asks every few iterations, after the step, and logs them with that step's losses.
  virtual std::vector<std::pair<std::string, double>> diagnostics() { return {}; }
};

// The detector alone: focal loss + box loss.
class DetectionObjective : public TrainingObjective {
 public:
  NamedLosses losses(RetinaNet& model, const TrainingBatch& batch, int64_t iteration) override;
};

}  // namespace icd
