#include "apps/common/trainer.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <sstream>
#include <stdexcept>

#include "apps/common/plot.h"
#include "apps/common/progress.h"
#include "engine/autocast.h"
#include "engine/autograd.h"
#include "engine/checkpoint.h"
#include "engine/factory.h"
#include "engine/ops/elementwise.h"
#include "engine/optim/clip_grad.h"
#include "engine/optim/grad_scaler.h"
#include "engine/optim/sgd.h"
#include "engine/transfer.h"

namespace icd::app {
namespace {

constexpr const char* kOptimizerPrefix = "optimizer.";
constexpr const char* kObjectivePrefix = "objective.";
constexpr const char* kScalerPrefix = "grad_scaler.";

NamedTensors with_prefix(const NamedTensors& tensors, const std::string& prefix) {
  NamedTensors out;
  for (const auto& [name, t] : tensors)
    out.emplace_back(prefix + name, t);
  return out;
}

// The entries of `all` whose name starts with `prefix`, with the prefix removed.
NamedTensors strip_prefix(const NamedTensors& all, const std::string& prefix) {
  NamedTensors out;
  for (const auto& [name, t] : all)
    if (name.starts_with(prefix)) out.emplace_back(name.substr(prefix.size()), t);
  return out;
}

bool has_prefix(const std::string& name) {
  return name.starts_with(kOptimizerPrefix) || name.starts_with(kObjectivePrefix) ||
         name.starts_with(kScalerPrefix);
}

std::string describe_losses(const std::vector<std::pair<std::string, double>>& values) {
  std::ostringstream out;
  for (const auto& [name, v] : values)
    out << " " << name << "=" << v;
  return out.str();
}

}  // namespace

TrainingBatch training_batch(const DetectionBatch& batch) {
  TrainingBatch out{.images = batch.images};
  for (const SampleInfo& sample : batch.samples) {
    const auto& boxes = sample.targets.boxes;
    std::vector<double> corners;
    for (const BoxXYXY& b : boxes)
      corners.insert(corners.end(), {b.x1, b.y1, b.x2, b.y2});
    const auto n = static_cast<int64_t>(boxes.size());
    out.targets.push_back(
        {from_vector(corners, {n, 4}, {batch.images.dtype()}), from_vector(sample.targets.classes, {n})});
    out.sizes.push_back({sample.size.height, sample.size.width});
  }
  return out;
}

void save_retinanet(const std::string& path, RetinaNet& model,
                    const std::map<std::string, std::string>& metadata) {
  std::map<std::string, std::string> meta = metadata;
  meta["model_config"] = to_json(model.config()).dump();
  save_checkpoint(path, model.state_dict(), meta);
}

std::unique_ptr<RetinaNet> load_retinanet(const std::string& path, std::optional<DetectorUsage>* usage) {
  Checkpoint checkpoint = load_checkpoint(path);
  if (usage) *usage = read_usage(checkpoint.metadata, path);
  auto it = checkpoint.metadata.find("model_config");
  if (it == checkpoint.metadata.end())
    throw std::runtime_error("checkpoint " + path + " has no model_config: not a RetinaNet checkpoint");
  RetinaNetConfig config;
  try {
    config = retinanet_config_from_json(nlohmann::json::parse(it->second));
  } catch (const std::exception& e) {
    throw std::runtime_error("checkpoint " + path + ": bad model_config: " + e.what());
  }
  Generator gen(0);
  auto model = std::make_unique<RetinaNet>(config, gen);
  NamedTensors weights;
  for (const auto& [name, t] : checkpoint.tensors)
    if (!has_prefix(name)) weights.emplace_back(name, t);
  try {
    model->load_state_dict(weights);
  } catch (const std::exception& e) {
    throw std::runtime_error("checkpoint " + path + ": " + e.what());
  }
  if (auto n = checkpoint.metadata.find("loss_normalizer"); n != checkpoint.metadata.end())
    model->loss().set_normalizer(std::stod(n->second));
  return model;
}

TrainResult train_detector(RetinaNet& model, TrainingObjective& objective, const CocoDataset& train_set,
                           const TrainOptions& options, RunFolder& run) {
  if (options.iterations <= 0) throw std::invalid_argument("train: iterations must be positive");
  LoaderConfig loader_config{.batch_size = options.batch_size,
                             .num_workers = options.num_workers,
                             .shuffle = true,
                             .drop_last = true,
                             .only_images_with_targets = true,
                             .skip_unreadable_images = options.skip_unreadable_images,
                             .pin_memory = options.device.is_cuda(),
                             .seed = options.seed,
                             .transform = options.transform};
  DetectionLoader loader(train_set, loader_config);
  const int64_t batches_per_epoch = loader.batches_per_epoch();
  if (batches_per_epoch == 0)
    throw std::invalid_argument("train: the dataset " + train_set.source() +
                                " has fewer images with boxes than one batch (" +
                                std::to_string(options.batch_size) + ")");

  if (model.device() != options.device) model.to(options.device);
  model.train();
  Sgd optimizer(
      model.trainable_parameters(),
      SgdOptions{.lr = options.lr, .momentum = options.momentum, .weight_decay = options.weight_decay});
  std::vector<int64_t> milestones;
  for (double fraction : options.lr_step_fractions)
    milestones.push_back(std::llround(fraction * static_cast<double>(options.iterations)));
  WarmupMultiStepLR schedule(MultiStepOptions{.base_lr = options.lr,
                                              .max_iter = options.iterations,
                                              .milestones = milestones,
                                              .gamma = options.lr_gamma,
                                              .warmup = options.warmup});
  const std::string checkpoint_path = run.file("checkpoint.safetensors");
  if (options.precision != DType::f32 && options.precision != DType::bf16 && options.precision != DType::f16)
    throw std::invalid_argument(std::string("train: precision must be f32, bf16 or f16, got ") +
                                dtype_name(options.precision));
  // f16 needs loss scaling; bf16 has f32's range.
  std::optional<GradScaler> scaler;
  if (options.precision == DType::f16) scaler.emplace();
  std::vector<Tensor> scaled_parameters = optimizer.parameters();
  for (const Tensor& p : objective.parameters())
    scaled_parameters.push_back(p);

  int64_t start = 0;
  if (options.resume && std::filesystem::exists(checkpoint_path)) {
    Checkpoint c = load_checkpoint(checkpoint_path);
    NamedTensors weights;
    for (const auto& [name, t] : c.tensors)
      if (!has_prefix(name)) weights.emplace_back(name, t);
    model.load_state_dict(weights);
    optimizer.load_state(strip_prefix(c.tensors, kOptimizerPrefix));
    objective.load_state(strip_prefix(c.tensors, kObjectivePrefix));
    model.loss().set_normalizer(std::stod(c.metadata.at("loss_normalizer")));
    if (scaler) {
      const NamedTensors scaler_state = strip_prefix(c.tensors, kScalerPrefix);
      if (!scaler_state.empty())
        scaler->load_state(scaler_state);  // else: a run resumed into f16 starts fresh
    }
    start = std::stoll(c.metadata.at("iteration"));
    std::cout << "resuming " << run.path() << " from iteration " << start << "\n";
  }
  // A fresh start in a used folder drops the old run's records, as a resumed one drops those it redoes.
  run.truncate_metrics_after(start);

  DetectorUsage usage{.test_transform = options.test_transform};
  for (int c = 0; c < train_set.num_classes(); ++c)
    usage.class_names.push_back(train_set.class_name(c));
  auto save = [&](int64_t iteration) {
    NamedTensors all = model.state_dict();
    for (auto& e : with_prefix(optimizer.state(), kOptimizerPrefix))
      all.push_back(e);
    for (auto& e : with_prefix(objective.state(), kObjectivePrefix))
      all.push_back(e);
    if (scaler)
      for (auto& e : with_prefix(scaler->state(), kScalerPrefix))
        all.push_back(e);
    std::ostringstream normalizer;
    normalizer.precision(17);
    normalizer << model.loss().normalizer();
    std::map<std::string, std::string> metadata = usage_metadata(usage);
    metadata["model_config"] = to_json(model.config()).dump();
    metadata["iteration"] = std::to_string(iteration);
    metadata["loss_normalizer"] = normalizer.str();
    save_checkpoint(checkpoint_path, all, metadata);
  };

  ProgressLine progress("train " + run.path(), options.iterations, options.batch_size, start);
  int64_t epoch = start / batches_per_epoch;
  std::vector<std::string> loss_names{"loss"};  // the plotted series
  const bool evaluating = options.eval_every > 0 && options.periodic_eval;
  loader.start_epoch(epoch, start % batches_per_epoch);
  for (int64_t iteration = start; iteration < options.iterations; ++iteration) {
    std::optional<DetectionBatch> batch = loader.next();
    if (!batch) {
      loader.start_epoch(++epoch);
      batch = loader.next();
      if (!batch) throw std::runtime_error("train: the loader delivered an empty epoch");
    }
    const double lr = schedule.lr(iteration);
    optimizer.set_lr(lr);
    optimizer.zero_grad();

    TrainingBatch inputs = training_batch(*batch);
    inputs.images = to_device(inputs.images, options.device);
    NamedLosses losses;
    {
      AutocastGuard autocast(options.precision);
      losses = objective.losses(model, inputs, iteration);
    }
    if (loss_names.size() == 1)
      for (const auto& [name, loss] : losses)
        loss_names.push_back(name);
    Tensor total;
    std::vector<std::pair<std::string, double>> values;
    for (const auto& [name, loss] : losses) {
      total = total.defined() ? add(total, loss) : loss;
      values.emplace_back(name, loss.item());
    }
    const double total_value = total.item();
    if (!std::isfinite(total_value))
      throw std::runtime_error("train: the loss is " + std::to_string(total_value) + " at iteration " +
                               std::to_string(iteration) + " (" + describe_losses(values) +
                               "); stopping. The last good checkpoint is " + checkpoint_path);
    if (scaler)
      scaler->scale(total).backward();
    else
      total.backward();
    // Gradients are ready: the one place where a data-parallel all-reduce would go.
    // With f16 they are unscaled here; if any overflowed, this step is skipped (and the scale lowered).
    const bool step = !scaler || scaler->unscale(scaled_parameters);
    if (step) {
      objective.after_backward(iteration);
      if (options.clip_value > 0) clip_grad_value(optimizer.parameters(), options.clip_value);
      optimizer.step();
    }

    nlohmann::json record{{"step", iteration + 1},
                          {"lr", lr},
                          {"loss", total_value},
                          {"epoch", epoch},
                          {"seconds", progress.seconds_elapsed()}};
    if (scaler) {
      record["loss_scale"] = scaler->scale_value();
      if (!step) record["skipped"] = true;
      scaler->update();
    }
    for (const auto& [name, v] : values)
      record[name] = v;
    const bool last = iteration + 1 == options.iterations;
    if (options.diagnostics_every > 0 && ((iteration + 1) % options.diagnostics_every == 0 || last))
      for (const auto& [name, v] : objective.diagnostics())
        record[name] = v;
    run.log_metrics(record);
    values.insert(values.begin(), {"loss", total_value});
    progress.update(iteration + 1, values);
    if (evaluating && ((iteration + 1) % options.eval_every == 0 || last)) {
      std::vector<std::pair<std::string, double>> numbers = options.periodic_eval(model);
      model.train();
      nlohmann::json eval_record{{"step", iteration + 1}};
      for (const auto& [name, v] : numbers)
        eval_record[name] = v;
      run.log_metrics(eval_record);
    }
    if ((iteration + 1) % options.checkpoint_every == 0 || last) save(iteration + 1);
  }
  progress.finish();
  const std::vector<nlohmann::json> metrics = run.read_metrics();
  plot_metrics(metrics, loss_names, "training losses (moving average of 10 steps)", run.file("losses.png"));
  if (evaluating) {
    // The names the evaluations logged (also those of a run resumed after its last evaluation).
    std::vector<std::string> eval_names;
    for (const nlohmann::json& record : metrics)
      if (!record.contains("loss"))
        for (const auto& [name, value] : record.items())
          if (name != "step" && std::find(eval_names.begin(), eval_names.end(), name) == eval_names.end())
            eval_names.push_back(name);
    plot_metrics(metrics, eval_names, "validation AP over training", run.file("ap.png"), 1);
  }
  if (scaler && scaler->skipped_steps() > 0)
    std::cout << "f16: skipped " << scaler->skipped_steps()
              << " step(s) whose gradients overflowed; loss scale now " << scaler->scale_value() << "\n";
  if (const LoaderStats stats = loader.stats(); stats.images_skipped > 0)
    std::cout << "skipped " << stats.images_skipped << " unreadable image(s) (" << stats.skipped_images.size()
              << " distinct)\n";
  return {options.iterations - start, progress.seconds_elapsed()};
}

CocoEvalResult evaluate_detector(RetinaNet& model, const CocoDataset& dataset, const EvalOptions& options) {
  LoaderConfig loader_config{.batch_size = options.batch_size,
                             .num_workers = options.num_workers,
                             .shuffle = false,
                             .pin_memory = model.device().is_cuda(),
                             .transform = options.transform};
  DetectionLoader loader(dataset, loader_config);
  model.eval();
  NoGradGuard no_grad;
  CocoDetections detections{.source = dataset.source() + " (detections)"};
  nlohmann::json results = nlohmann::json::array();
  loader.start_epoch(0);
  ProgressLine progress("evaluate " + dataset.source(), loader.batches_per_epoch(), options.batch_size);
  int64_t done = 0;
  while (std::optional<DetectionBatch> batch = loader.next()) {
    RetinaNetOutputs outputs = model.forward(to_device(batch->images, model.device()));
    std::vector<ImageSizes> sizes;
    for (const SampleInfo& s : batch->samples)
      sizes.push_back({s.size.height, s.size.width, s.original_size.height, s.original_size.width});
    std::vector<Detections> per_image = model.detect(outputs, sizes);
    for (std::size_t i = 0; i < per_image.size(); ++i) {
      const Detections& d = per_image[i];
      std::vector<double> boxes = d.boxes.to_vector<double>(), scores = d.scores.to_vector<double>();
      std::vector<int64_t> labels = d.labels.to_vector<int64_t>();
      for (std::size_t k = 0; k < scores.size(); ++k) {
        CocoDetection det{.image_id = batch->samples[i].image_id,
                          .category_id = dataset.category_of_class(static_cast<int>(labels[k])),
                          .bbox = {boxes[4 * k], boxes[4 * k + 1], boxes[4 * k + 2] - boxes[4 * k],
                                   boxes[4 * k + 3] - boxes[4 * k + 1]},
                          .score = scores[k]};
        detections.entries.push_back(det);
        results.push_back({{"image_id", det.image_id},
                           {"category_id", det.category_id},
                           {"bbox", {det.bbox.x, det.bbox.y, det.bbox.width, det.bbox.height}},
                           {"score", det.score}});
      }
    }
    progress.update(++done, {});
  }
  progress.finish();
  if (!options.detections_path.empty()) write_file_atomically(options.detections_path, results.dump() + "\n");
  return evaluate_coco_bbox(to_coco_ground_truth(dataset.data(), dataset.source()), detections);
}

}  // namespace icd::app
