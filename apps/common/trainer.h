// The training loop every app shares, and detector evaluation.
//
// One iteration: next batch from the loader -> the objective's losses (the detector's focal and box
// losses, plus the distillation terms for a student; under autocast when mixed precision is on) -> a
// NaN/Inf check -> one backward pass of their sum (scaled, with f16) -> the objective's own optimizers
// (e.g. ICD's AdamW) -> optional per-element gradient clipping -> SGD step with the warmup + multi-step
// learning rate. Every `checkpoint_every` iterations (and at the end)
// the model, the optimizer, the objective's state and the loss normaliser go into one checkpoint written
// atomically; --resume reloads it and continues exactly: same data order (the loader is restarted at the
// same epoch and batch), same optimizer state.
//
// The moment "gradients are ready" is one place (after backward, before the optimizer steps): that is
// where a data-parallel all-reduce slots in without touching models or losses.
#pragma once
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "apps/common/detector_usage.h"
#include "apps/common/run_folder.h"
#include "datasets/coco_dataset.h"
#include "datasets/coco_eval.h"
#include "datasets/loader.h"
#include "engine/optim/lr_schedule.h"
#include "models/retinanet.h"
#include "models/training_objective.h"

namespace icd::app {

// The batch in the model's terms: image tensor, ground truth as tensors, true image sizes.
TrainingBatch training_batch(const DetectionBatch& batch);

struct TrainOptions {
  // Where the model trains: train_detector moves it there first (before its optimizer takes the
  // parameters) and each batch's images follow; the ground truth stays on the host, where anchors are
  // matched.
  Device device = Device::cpu();
  // Mixed precision (engine/autocast.h): f32 (off), bf16, or f16 with dynamic loss scaling
  // (engine/optim/grad_scaler.h; a step whose gradients overflow is skipped). Convolutions and matrix
  // products compute on 16-bit values; weights, optimizers and everything else stay f32.
  DType precision = DType::f32;
  int64_t iterations = 1000;
  int batch_size = 4;
  int num_workers = 2;
  double lr = 0.01;
  double momentum = 0.9;
  double weight_decay = 1e-4;
  LinearWarmup warmup{.factor = 0.001, .iters = 100};
  // Where the learning rate drops by lr_gamma, as fractions of `iterations` (so that overriding the
  // length keeps the schedule's shape): detectron2's 1x schedule drops at 2/3 and 8/9.
  std::vector<double> lr_step_fractions;
  double lr_gamma = 0.1;
  double clip_value = 0.0;  // per-element gradient clip for the detector (0: off)
  int64_t checkpoint_every = 500;
  // The objective's diagnostics (TrainingObjective::diagnostics) join the step's record every this many
  // iterations and at the last one (0: never).
  int64_t diagnostics_every = 10;
  uint64_t seed = 0;
  TransformConfig transform = TransformConfig::train();
  bool resume = false;                  // continue from the run folder's last checkpoint, if there is one
  bool skip_unreadable_images = false;  // warn, count and go on instead of stopping at a corrupt image
  // AP over time: every `eval_every` iterations (and at the end) `periodic_eval` is called on the model
  // and the numbers it returns go to metrics.jsonl as one record {"step", name: value, ...} and into the
  // run's ap.png. 0 or no function: off.
  int64_t eval_every = 0;
  std::function<std::vector<std::pair<std::string, double>>(RetinaNet&)> periodic_eval;
  // How the model is meant to be evaluated, recorded in its checkpoints with the class names
  // (apps/common/detector_usage.h) so that apps/detect needs nothing else.
  TransformConfig test_transform = TransformConfig::test();
};

struct TrainResult {
  int64_t iterations = 0;  // done in this call
  double seconds = 0.0;
};

// Trains `model` on `train_set` for options.iterations, writing run.file("checkpoint.safetensors").
TrainResult train_detector(RetinaNet& model, TrainingObjective& objective, const CocoDataset& train_set,
                           const TrainOptions& options, RunFolder& run);

struct EvalOptions {
  TransformConfig transform = TransformConfig::test();
  int batch_size = 4;
  int num_workers = 2;
  std::string detections_path;  // if set, the detections are written there as COCO results JSON
};

// Runs the model over every image of `dataset` (on the model's device) and evaluates its detections with
// the COCO protocol.
CocoEvalResult evaluate_detector(RetinaNet& model, const CocoDataset& dataset, const EvalOptions& options);

// Checkpoint I/O for a RetinaNet: weights plus metadata "model_config" (JSON), so a checkpoint alone
// rebuilds its model.
void save_retinanet(const std::string& path, RetinaNet& model,
                    const std::map<std::string, std::string>& metadata = {});
// `usage`, when given, receives the class names and test transform the checkpoint records (nullopt for a
// checkpoint written without them).
std::unique_ptr<RetinaNet> load_retinanet(const std::string& path,
                                          std::optional<DetectorUsage>* usage = nullptr);

}  // namespace icd::app
