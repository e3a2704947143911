// The teacher-student wiring: training objectives (models/training_objective.h) for a student RetinaNet
// distilled from a frozen teacher, and the inheriting strategy.
//
// IcdObjective, one iteration (spec/icd.md section 0):
//   student forward -> detection losses; teacher backbone + FPN under no-grad on the same padded batch;
//   queries from the ground truth + fake instances -> decoder on the teacher features -> auxiliary losses;
//   distillation loss between the student's and the teacher's LN-normalised per-head value projections,
//   weighted by the teacher's instance attention. The trainer back-propagates
//   loss_cls + loss_box + aux_conf + aux_reg + lambda * distill once; then this objective steps its own
//   AdamW (encoder, decoder, predictor, student adapter) with cosine decay and a global-norm clip, while
//   the trainer steps the student's SGD (section 5).
// FitNetObjective: the baseline of full-feature imitation, MSE between teacher and student FPN maps
// through a learned 1x1 adapter per level.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "distill/attention_specificity.h"
#include "distill/fgfi.h"
#include "distill/fitnet.h"
#include "distill/icd_module.h"
#include "engine/optim/adamw.h"
#include "engine/optim/lr_schedule.h"
#include "models/training_objective.h"

namespace icd {

// The ICD modules' optimizer (section 5): AdamW, cosine from lr to 0 over the run, global L2 clip.
struct DistillerOptimizerConfig {
  double lr = 1e-4;
  double weight_decay = 1e-4;
  double clip_norm = 0.01;
  int64_t iterations = 90000;  // the cosine schedule's length: the student's training length
};

// The ground truth of a batch as the distiller takes it.
std::vector<ImageInstances> image_instances(const TrainingBatch& batch);

// What every distillation objective shares: a frozen teacher, the distiller's module and its own optimizer
// (AdamW with cosine decay and a global-norm clip, stepped after backward), checkpointed as "distiller.*"
// weights and "adamw.*" optimizer state.
class DistillationObjective : public TrainingObjective {
 public:
  void after_backward(int64_t iteration) override;
  std::vector<Tensor> parameters() const override { return optimizer_->parameters(); }
  NamedTensors state() const override;
  void load_state(const NamedTensors& state) override;

 protected:
  // `teacher` must outlive the objective; it is frozen (requires_grad off, eval mode) here. The distiller
  // is moved to the teacher's device and dtype (the student must match) before its optimizer takes it.
  DistillationObjective(RetinaNet& teacher, std::shared_ptr<Module> distiller,
                        const DistillerOptimizerConfig& optimizer);
  RetinaNet& teacher_;

 private:
  std::shared_ptr<Module> module_;
  std::unique_ptr<AdamW> optimizer_;
  std::unique_ptr<WarmupCosineLR> schedule_;
  DistillerOptimizerConfig optimizer_config_;
};

class IcdObjective : public DistillationObjective {
 public:
  IcdObjective(RetinaNet& teacher, const IcdConfig& config, FakeInstancePrior prior,
               const DistillerOptimizerConfig& optimizer, uint64_t seed);
  NamedLosses losses(RetinaNet& student, const TrainingBatch& batch, int64_t iteration) override;
  // "spec", "spec_cross" and "spec_p3".. of the last batch's real queries (distill/attention_specificity.h).
  std::vector<std::pair<std::string, double>> diagnostics() override;
  InstanceConditionalDistiller& distiller() { return *distiller_; }
  // The outputs of the last call to losses() (attention logits, queries), for pictures.
  const IcdOutput& last_output() const { return last_; }

 private:
  IcdObjective(RetinaNet& teacher, std::shared_ptr<InstanceConditionalDistiller> distiller,
               const DistillerOptimizerConfig& optimizer, uint64_t seed);
  std::shared_ptr<InstanceConditionalDistiller> distiller_;
  uint64_t seed_;
  IcdOutput last_;
  std::vector<ImageQueries> last_queries_;
  ImageSize last_padded_size_;
};

class FitNetObjective : public DistillationObjective {
 public:
  FitNetObjective(RetinaNet& teacher, const FitNetConfig& config, const DistillerOptimizerConfig& optimizer,
                  uint64_t seed);
  NamedLosses losses(RetinaNet& student, const TrainingBatch& batch, int64_t iteration) override;

 private:
  FitNetObjective(RetinaNet& teacher, std::shared_ptr<FitNetDistiller> distiller,
                  const DistillerOptimizerConfig& optimizer);
  std::shared_ptr<FitNetDistiller> distiller_;
};

// FgfiObjective: the baseline of fine-grained feature imitation (distill/fgfi.h): FPN maps imitated only at
// the cells whose anchors overlap a ground-truth box well, through a learned convolution per level.
class FgfiObjective : public DistillationObjective {
 public:
  // config.anchors_per_cell must be the student's A (sizes per level x aspect ratios).
  FgfiObjective(RetinaNet& teacher, const FgfiConfig& config, const DistillerOptimizerConfig& optimizer,
                uint64_t seed);
  NamedLosses losses(RetinaNet& student, const TrainingBatch& batch, int64_t iteration) override;

 private:
  FgfiObjective(RetinaNet& teacher, std::shared_ptr<FgfiDistiller> distiller,
                const DistillerOptimizerConfig& optimizer);
  std::shared_ptr<FgfiDistiller> distiller_;
};

// Attention specificity as named numbers: "spec" (own box), "spec_cross" (other boxes; only with pairs),
// "spec_p3", "spec_p4", ... (per level, the first level named p3).
std::vector<std::pair<std::string, double>> specificity_numbers(const AttentionSpecificity& s);

// Loads a pretrained decoder (decoder_state: a distiller's state_dict, e.g. from decoder pretraining) into
// `distiller`: its encoder, decoder and predictor, each checked strictly; the student adapter keeps its own
// initialisation (it depends on the student). Throws naming what mismatched.
void load_pretrained_decoder(InstanceConditionalDistiller& distiller, const NamedTensors& decoder_state);

// The inheriting strategy (section 5): copies every FPN and head tensor of the teacher whose name and
// shape the student shares (the output convs of P3-P5, P6/P7 when their inputs match, the whole head)
// into the student. Returns the names copied.
std::vector<std::string> inherit_from_teacher(RetinaNet& student, const RetinaNet& teacher);

}  // namespace icd
