// The experiment presets shared by train_teacher and distill_retinanet: which built-in dataset, which
// teacher and student, how long each trains, at which image size. `tiny` checks that every stage runs
// (CI); `default` is the main job on a 2-core CPU (about an hour end to end); `large` is for a GPU.
// Every preset's student is a ResNet-18 from scratch; set_student picks another backbone for it.
#pragma once
#include <memory>
#include <optional>
#include <string>
#include <vector>

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

// Which backbone the student has, by name (set_student), and where its weights start.
struct StudentBackbone {
  std::string name = "resnet18";
  bool imagenet = false;  // the backbone starts from ExperimentPreset::imagenet_weights, not the seed
};

struct ExperimentPreset {
  std::string name;
  std::string dataset;  // built-in dataset preset (datasets/builtin_dataset.h)
  RetinaNetConfig teacher;
  RetinaNetConfig student;
  StudentBackbone student_backbone;
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

// The student backbones set_student knows, for messages: "resnet18, resnet50-cut".
std::string student_backbone_names();

// Gives the preset's student another backbone; its FPN, head, anchors and training stay the preset's.
//   resnet18      ResNet-18 from the seed's random weights, learnable batch norm, nothing frozen (the
//                 presets' own); `blocks` must be empty
//   resnet50-cut  ResNet-50 in the teacher's conventions (v1, conv biases, frozen BN eps 1e-3, freeze_at 2)
//                 with `blocks` per stage (empty: {3, 4, 3, 3}; each at most ResNet-50's {3, 4, 6, 3}),
//                 initialised from the first blocks of each stage of the ImageNet ResNet-50
// Throws std::invalid_argument naming the choices (or what is wrong with `blocks`).
void set_student(ExperimentPreset& preset, const std::string& name, const std::vector<int>& blocks = {});

// A short name of the student's backbone for tables: "R18", "R50-3433".
std::string student_backbone_label(const ExperimentPreset& preset);
// What the names of the students' folders and tables add for a student other than the presets' resnet18:
// "" for it, "-r50-3433" for resnet50-cut {3, 4, 3, 3}. Both students then share one teacher, and neither
// replaces the other's runs or table.
std::string student_folder_tag(const ExperimentPreset& preset);

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

// For a model that cannot do without the ImageNet ResNet-50 (the resnet50-cut student): throws, saying how
// to make the file, when `path` does not exist.
void require_imagenet_weights(const std::string& path, const std::string& who);

// Loads the ImageNet ResNet-50 (apps/import_weights) into a model's backbone when the file exists and the
// backbone is a ResNet-50 in the same convention, whole or cut (at most {3, 4, 6, 3} blocks per stage: a
// cut one takes the first blocks of each stage); returns false (and says why) otherwise. Throws naming the
// file and the tensors when the file does not fit the backbone.
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
