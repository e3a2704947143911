#include "models/training_objective.h"

namespace icd {

NamedLosses DetectionObjective::losses(RetinaNet& model, const TrainingBatch& batch, int64_t iteration) {
  RetinaNetOutputs outputs = model.forward(batch.images);
  RetinaNetLosses l = model.losses(outputs, batch.targets);
  return {{"loss_cls", l.classification}, {"loss_box", l.box_regression}};
}

}  // namespace icd
