// The training loop every app shares, and detector evaluation.
//
// One iteration: next batch from the loader -> the objective's losses (the detector's focal and box
// losses, plus the distillation terms for a student) -> one backward pass of their sum -> a NaN/Inf check
// -> the objective's own optimizers (e.g. ICD's AdamW) -> optional per-element gradient clipping -> SGD
// step with the warmup + multi-step learning rate. Every `checkpoint_every` iterations (and at the end)
// the model, the optimizer, the objective's state and the loss normaliser go into one checkpoint written
// atomically; --resume reloads it and continues exactly: same data order (the loader is restarted at the
// same epoch and batch), same optimizer state.
//
// The moment "gradients are ready" is one place (after backward, before the optimizer steps): that is
// where a data-parallel all-reduce slots in without touching models or losses.
#pragma once
#include <memory>
#include <string>
#include <utility>
#include <vector>

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
  int64_t iterations = 1000;
  int batch_size = 4;
  int num_workers = 2;
  double lr = 0.01;
  double momentum = 0.9;
  double weight_decay = 1e-4;
  LinearWarmup warmup{.factor = 0.001, .iters = 100};
  std::vector<int64_t> lr_steps;  // iterations where the learning rate drops by lr_gamma
  double lr_gamma = 0.1;
  double clip_value = 0.0;  // per-element gradient clip for the detector (0: off)
  int64_t checkpoint_every = 500;
  uint64_t seed = 0;
  TransformConfig transform = TransformConfig::train();
  bool resume = false;  // continue from the run folder's last checkpoint, if there is one
  bool skip_unreadable_images = false;  // warn, count and go on instead of stopping at a corrupt image
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

// Runs the model over every image of `dataset` and evaluates its detections with the COCO protocol.
CocoEvalResult evaluate_detector(RetinaNet& model, const CocoDataset& dataset, const EvalOptions& options);

// Checkpoint I/O for a RetinaNet: weights plus metadata "model_config" (JSON), so a checkpoint alone
// rebuilds its model.
void save_retinanet(const std::string& path, RetinaNet& model,
                    const std::map<std::string, std::string>& metadata = {});
std::unique_ptr<RetinaNet> load_retinanet(const std::string& path);

}  // namespace icd::app
