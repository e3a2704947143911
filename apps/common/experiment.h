// The experiment presets shared by train_teacher and distill_retinanet: which built-in dataset, which
// teacher and student, how long each trains, at which image size. `tiny` checks that every stage runs
// (CI); `default` is the main job on a 2-core CPU (about an hour end to end); `large` is for a GPU.
#pragma once
#include <memory>
#include <optional>
#include <string>

#include "apps/common/decoder_pretraining.h"
#include "apps/common/trainer.h"
#include "distill/objectives.h"
#include "models/retinanet.h"

namespace icd::app {

// How the students are distilled: what every arm shares, and each distiller's hyperparameters. Defaults are
// the reference implementation's (spec/icd.md section 5) unless a preset says why not.
struct DistillationRecipe {
  // Per-element clip of the student's gradients, the same in every arm (the reference clips its distilled
  // students only; clipping all of them keeps the comparison about the distillation).
  double student_clip_value = 1.0;
  // AdamW of the distillers' own modules (ICD's encoder/decoder/predictor/adapter, FitNet's and FGFI's
  // adapters): lr, weight decay, global-norm clip; cosine to 0 over the student's iterations.
  DistillerOptimizerConfig optimizer;
  int64_t icd_warmup_iterations = 1000;  // BYPASS_DISTILL: student features detached before this
  int64_t icd_heads = 8;
  double icd_loss_weight = 8.0;                   // lambda
  DecoderPretrainingOptions decoder_pretraining;  // iterations 0: the decoder learns jointly only
  double fgfi_psi = 0.5;                          // FGFI: anchors above psi x a box's best IoU imitate
  double fgfi_weight = 0.01;                      // FGFI: lambda

  IcdConfig icd_config(int64_t num_classes, int64_t teacher_channels, int64_t student_channels) const;
  nlohmann::json to_json() const;
};

struct ExperimentPreset {
  std::string name;
  std::string dataset;  // built-in dataset preset (datasets/builtin_dataset.h)
  RetinaNetConfig teacher;
  RetinaNetConfig student;
  TrainOptions teacher_training;
  TrainOptions student_training;
  EvalOptions evaluation;
  DistillationRecipe distillation;
  std::string default_arms = "none,inherit,icd,icd-no-inherit";  // distill_retinanet --methods
  std::string default_seeds = "1";
  int ap_points = 4;  // evaluations on DatasetSplits::val_preview during each training run (AP over time)
  std::string imagenet_weights = "runs/weights/resnet50_imagenet.safetensors";  // apps/import_weights' output
};

// "tiny", "default" or "large"; throws naming the choices otherwise.
ExperimentPreset experiment_preset(const std::string& name, int64_t num_classes);

struct DatasetSplits {
  std::unique_ptr<CocoDataset> train, val;
  std::unique_ptr<CocoDataset> val_preview;  // the first 100 images of val, for AP over time in training
};

// AP over time: `options` evaluates the model on data.val_preview preset.ap_points times during training
// (the last at the end) and logs AP and AP50 (percent) as "val_AP" and "val_AP50".
void enable_ap_over_time(TrainOptions& options, const ExperimentPreset& preset, const DatasetSplits& data);

// The training and validation sets: the given COCO JSON files, or (when both are empty) the built-in
// dataset of `builtin_preset`, built into the cache first if it is not there yet.
DatasetSplits load_datasets(const std::string& builtin_preset, const std::string& train_json,
                            const std::string& val_json);

// True when the imported ImageNet ResNet-50 exists at `path`; says what to run otherwise.
bool imagenet_weights_available(const std::string& path);

// Loads the ImageNet ResNet-50 (apps/import_weights) into the teacher's backbone when the file exists and
// the backbone is a ResNet-50 in the same convention; returns false (and says why) otherwise.
bool load_imagenet_backbone(RetinaNet& model, const std::string& path);

// Trains the teacher of `preset` into run_dir (resuming if asked), evaluates it on the validation split,
// writes eval.json there, and returns the result. Starts from the ImageNet backbone when it is available.
CocoEvalResult run_teacher_training(const ExperimentPreset& preset, const DatasetSplits& data,
                                    const std::string& run_dir, const TrainOptions& options,
                                    bool use_imagenet);

// The fake-instance prior of ICD from a training set's own annotations (spec/icd.md: our data is not COCO).
FakeInstancePrior training_prior(const CocoDataset& train);

// Sets the teacher's and the students' iterations, and what the distillation recipe derives from the
// students' (the distillers' cosine length and ICD's warm-up).
void set_iterations(ExperimentPreset& preset, int64_t iterations);

// The row of the results table: AP, AP50, AP75, APs, APm, APl (COCO percent).
std::array<double, 6> ap_row(const CocoEvalResult& result);

// An eval.json written with coco_eval_to_json, read back (its 12 stats); nullopt when the file does not
// exist; throws naming the file when it is not such a file.
std::optional<CocoEvalResult> read_eval_json(const std::string& path);

}  // namespace icd::app
