#include "apps/common/experiment.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <set>
#include <stdexcept>
#include <utility>

#include "datasets/builtin_dataset.h"
#include "engine/checkpoint.h"

namespace icd::app {
namespace {

// ResNet-50's blocks per stage: what the ImageNet weights hold.
const std::vector<int> kResNet50Blocks = standard_blocks(50);
// resnet50-cut's default: layer3 (C4, 1024 channels) loses half its blocks, 17% of the backbone's
// multiply-adds and 14% of its weights, while C3..C5 keep the teacher's channels.
const std::vector<int> kCutResNet50Blocks{3, 4, 3, 3};

// True when `blocks` has a count per stage and none above ResNet-50's: what its ImageNet weights can fill.
bool within_resnet50(const std::vector<int>& blocks) {
  if (blocks.size() != kResNet50Blocks.size()) return false;
  for (std::size_t stage = 0; stage < blocks.size(); ++stage)
    if (blocks[stage] > kResNet50Blocks[stage]) return false;
  return true;
}

// ResNet-50 in the convention of the imported Keras ImageNet weights (MSRA v1: stride on the first 1x1,
// conv biases, BN eps 1e-3), frozen BN and frozen stem + res2, as detectron2 trains detectors. `blocks`
// empty: the whole ResNet-50; otherwise a cut one that takes the first blocks of each stage.
ResNetConfig imagenet_resnet50_backbone(const std::vector<int>& blocks) {
  return ResNetConfig{.depth = 50,
                      .blocks = blocks,
                      .stride_on_3x3 = false,
                      .conv_bias = true,
                      .norm = NormKind::frozen_batch_norm,
                      .norm_eps = 1e-3,
                      .freeze_at = 2,
                      .num_classes = 0};
}

// The teacher: the whole ImageNet ResNet-50.
RetinaNetConfig teacher_config(int64_t num_classes, int64_t fpn_channels, int64_t head_convs) {
  RetinaNetConfig c;
  c.num_classes = num_classes;
  c.backbone = imagenet_resnet50_backbone({});
  c.fpn_channels = fpn_channels;
  c.head_convs = head_convs;
  return c;
}

// ResNet-18 trained from scratch (no ImageNet weights exist here for it), so its batch norm learns
// (BatchNorm2d, nothing frozen).
ResNetConfig resnet18_from_scratch() {
  return ResNetConfig{.depth = 18, .norm = NormKind::batch_norm, .freeze_at = 0, .num_classes = 0};
}

// The student of every preset: the teacher's FPN width and head, so that the distillation compares like
// with like and the inheriting strategy can copy the FPN outputs and the head, on a ResNet-18 backbone.
// set_student swaps the backbone for a cut ResNet-50 from ImageNet ("resnet50-cut"), whose C3..C5 have the
// teacher's channels, so that inheriting copies the whole FPN (laterals and P6 too).
RetinaNetConfig student_config(int64_t num_classes, int64_t fpn_channels, int64_t head_convs) {
  RetinaNetConfig c = teacher_config(num_classes, fpn_channels, head_convs);
  c.backbone = resnet18_from_scratch();
  return c;
}

// The stage (1..4) and block index of a ResNet tensor name such as "layer3.4.conv1.weight"; nullopt for
// the stem and the classifier.
std::optional<std::pair<int, int>> stage_and_block(const std::string& name) {
  if (name.size() < 8 || !name.starts_with("layer") || name[5] < '1' || name[5] > '4' || name[6] != '.')
    return std::nullopt;
  const std::size_t end = name.find('.', 7);
  if (end == std::string::npos || end == 7) return std::nullopt;
  const std::string index = name.substr(7, end - 7);
  if (!std::all_of(index.begin(), index.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return std::nullopt;
  return std::make_pair(name[5] - '0', std::stoi(index));
}

// Anchor sizes {x, x 2^(1/3), x 2^(2/3)} on P3..P7 with x doubling from `smallest` (detectron2 starts at 32
// for 800-pixel COCO images; the built-in dataset's 256-pixel images hold objects from 11 pixels up).
std::vector<std::vector<double>> anchor_sizes(double smallest) {
  std::vector<std::vector<double>> sizes;
  for (double x = smallest; sizes.size() < 5; x *= 2)
    sizes.push_back({x, x * std::pow(2.0, 1.0 / 3.0), x * std::pow(2.0, 2.0 / 3.0)});
  return sizes;
}

TransformConfig transforms(std::vector<int> train_sizes, int test_size, int max_long_edge, bool train) {
  TransformConfig t = train ? TransformConfig::train() : TransformConfig::test();
  t.short_edge_sizes = train ? train_sizes : std::vector<int>{test_size};
  t.max_long_edge = max_long_edge;
  t.normalize.mean = {103.939f, 116.779f, 123.68f};  // the imported weights' caffe mean (BGR, std 1)
  return t;
}

// The dataset restricted to its first `count` images (in file order) and their annotations.
std::unique_ptr<CocoDataset> first_images(const CocoDataset& dataset, std::size_t count) {
  CocoData data = dataset.data();
  if (data.images.size() > count) data.images.resize(count);
  std::set<int64_t> kept;
  for (const CocoImage& image : data.images)
    kept.insert(image.id);
  std::erase_if(data.annotations, [&](const CocoAnnotation& a) { return !kept.contains(a.image_id); });
  return std::make_unique<CocoDataset>(std::move(data),
                                       dataset.source() + " (first " + std::to_string(count) + " images)",
                                       dataset.image_dir());
}

// What the distillation recipe derives from the students' length.
void fit_recipe_to_length(ExperimentPreset& p) {
  // The reference detaches the student's features for 1000 of 90k iterations; a short schedule keeps a
  // fifth of its iterations for the adapter alone.
  p.distillation.icd_warmup_iterations = std::min<int64_t>(1000, p.student_training.iterations / 5);
  p.distillation.optimizer.iterations = p.student_training.iterations;
}

}  // namespace

void set_iterations(ExperimentPreset& preset, int64_t iterations) {
  preset.teacher_training.iterations = preset.student_training.iterations = iterations;
  fit_recipe_to_length(preset);
}

FakeInstancePrior training_prior(const CocoDataset& train) {
  std::vector<ImageInstances> images;
  for (int64_t i = 0; i < train.num_images(); ++i) {
    DetectionTargets targets = train.targets(i);
    ImageInstances image{.size = {train.image(i).height, train.image(i).width}};
    for (const BoxXYXY& b : targets.boxes)
      image.boxes.push_back({b.x1, b.y1, b.x2, b.y2});
    image.labels = targets.classes;
    images.push_back(std::move(image));
  }
  return FakeInstancePrior::from_annotations(images, train.num_classes());
}

ExperimentPreset experiment_preset(const std::string& name, int64_t num_classes) {
  ExperimentPreset p;
  p.name = name;
  int64_t fpn = 64, head_convs = 2;
  double smallest_anchor = 32;
  bool head_group_norm = false;
  double lr = 0;  // 0: linear scaling from detectron2's
  std::vector<int> train_sizes;
  int test_size = 0, max_long = 0;
  if (name == "tiny") {
    p.dataset = "tiny";
    fpn = 16, head_convs = 1;
    train_sizes = {128}, test_size = 128, max_long = 160;
    p.teacher_training.iterations = 6;
    p.student_training.iterations = 6;
    p.teacher_training.batch_size = p.student_training.batch_size = 2;
    p.teacher_training.checkpoint_every = p.student_training.checkpoint_every = 3;
    p.teacher_training.warmup.iters = p.student_training.warmup.iters = 2;
    p.ap_points = 2;
    p.distillation.decoder_pretraining.iterations = 4;
    p.distillation.decoder_pretraining.steps_per_batch = 2;  // CI runs the feature reuse too
    p.distillation.decoder_pretraining.log_specificity_every = 2;
    p.distillation.decoder_pretraining.validation_images = 3;
  } else if (name == "default") {
    p.dataset = "default";
    // The images are 320x256 with objects from 11 pixels: they train at about their own size, with anchors
    // from 16 pixels on P3 (COCO's 32 is for 800-pixel images) and GroupNorm in the head, which keeps the
    // short schedule's higher learning rate stable.
    train_sizes = {224, 240, 256}, test_size = 256, max_long = 320;
    smallest_anchor = 16, head_group_norm = true;
    // Measured on the 2-core machine (idle): teacher 1.1 s, baseline student 0.55 s, ICD student 1.07 s
    // per iteration of 4 images, evaluation of the 500 validation images 35-55 s. The teacher's 900 and
    // the students' 550 iterations (two seeds each) keep the whole experiment under an hour.
    p.teacher_training.iterations = 900;
    p.student_training.iterations = 550;
    p.teacher_training.batch_size = p.student_training.batch_size = 4;
    p.teacher_training.checkpoint_every = p.student_training.checkpoint_every = 150;
    // Far fewer iterations than detectron2's 90k need a larger step than the linear scaling rule's 0.0025:
    // 0.01 with GroupNorm in the head reached AP 13 after 400 teacher iterations where 0.0025 without it
    // reached 1.1 after 300 (and 0.01 without it diverged).
    lr = 0.01;
    p.teacher_training.warmup.iters = 200;
    p.student_training.warmup.iters = 100;
    // The decoder learns on the frozen teacher before the students run (apps/common/decoder_pretraining.h).
    // Measured (README, "Decoder pretraining"): at 1e-3 the attention turns instance-specific only after
    // about 800 steps (600 left it diffuse); 3e-3 and 1e-2 collapse it onto a few cells. 2000 steps at four
    // per teacher batch took 6 min and reached the specificity of 2000 steps with a batch each (0.4 s a
    // step, 13 min); 6000 steps (about 19 min) go further but do not fit the hour.
    p.distillation.decoder_pretraining.iterations = 2000;
    p.distillation.decoder_pretraining.lr = 1e-3;
    p.distillation.decoder_pretraining.steps_per_batch = 4;
  } else if (name == "large") {
    p.dataset = "large";
    fpn = 256, head_convs = 4;
    train_sizes = {448, 480, 512}, test_size = 512, max_long = 640;
    p.teacher_training.iterations = 20000;
    p.student_training.iterations = 20000;
    p.teacher_training.batch_size = p.student_training.batch_size = 8;
    p.teacher_training.checkpoint_every = p.student_training.checkpoint_every = 1000;
    p.distillation.decoder_pretraining.iterations = 2000;
    p.default_seeds = "1,2";
  } else {
    throw std::invalid_argument("unknown preset \"" + name + "\" (tiny, default, large)");
  }
  for (TrainOptions* t : {&p.teacher_training, &p.student_training}) {
    // detectron2's learning rate, 0.01, is for 16 images per iteration; smaller batches scale it linearly
    // (spec/icd.md section 10.13) unless the preset chose otherwise.
    t->lr = lr > 0 ? lr : 0.01 * t->batch_size / 16.0;
    t->lr_step_fractions = {2.0 / 3.0, 8.0 / 9.0};
  }
  p.teacher = teacher_config(num_classes, fpn, head_convs);
  p.student = student_config(num_classes, fpn, head_convs);
  for (RetinaNetConfig* c : {&p.teacher, &p.student}) {
    c->anchors.sizes = anchor_sizes(smallest_anchor);
    c->head_group_norm = head_group_norm;
  }
  p.teacher_training.transform = transforms(train_sizes, test_size, max_long, true);
  p.student_training.transform = p.teacher_training.transform;
  p.evaluation.transform = transforms(train_sizes, test_size, max_long, false);
  p.teacher_training.test_transform = p.student_training.test_transform = p.evaluation.transform;
  p.student_training.seed = 1;

  DistillationRecipe& d = p.distillation;
  fit_recipe_to_length(p);
  d.decoder_pretraining.batch_size = p.student_training.batch_size;
  d.decoder_pretraining.transform = p.student_training.transform;
  d.decoder_pretraining.test_transform = p.evaluation.transform;
  return p;
}

std::string student_backbone_names() {
  return "resnet18, resnet50-cut";
}

void set_student(ExperimentPreset& preset, const std::string& name, const std::vector<int>& blocks) {
  if (name == "resnet18") {
    if (!blocks.empty())
      throw std::invalid_argument("the resnet18 student takes no block counts (they are for resnet50-cut)");
    preset.student.backbone = resnet18_from_scratch();
    preset.student_backbone = {.name = name, .imagenet = false};
  } else if (name == "resnet50-cut") {
    const std::vector<int>& chosen = blocks.empty() ? kCutResNet50Blocks : blocks;
    const bool positive = std::all_of(chosen.begin(), chosen.end(), [](int b) { return b >= 1; });
    if (!positive || !within_resnet50(chosen))
      throw std::invalid_argument(
          "resnet50-cut: the blocks per stage must be 4 counts, each from 1 to "
          "ResNet-50's " +
          blocks_text(kResNet50Blocks) + " (its ImageNet weights hold no more), got " + blocks_text(chosen));
    preset.student.backbone = imagenet_resnet50_backbone(chosen);
    preset.student_backbone = {.name = name, .imagenet = true};
  } else {
    throw std::invalid_argument("unknown student \"" + name + "\" (" + student_backbone_names() + ")");
  }
}

std::string student_backbone_label(const ExperimentPreset& preset) {
  const ResNetConfig& b = preset.student.backbone;
  std::string label = "R" + std::to_string(b.depth);
  if (!b.blocks.empty()) label += "-";
  for (int count : b.blocks)
    label += std::to_string(count);
  return label;
}

std::string student_folder_tag(const ExperimentPreset& preset) {
  if (preset.student_backbone.name == "resnet18") return "";
  std::string tag = "-" + student_backbone_label(preset);
  std::transform(tag.begin(), tag.end(), tag.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return tag;
}

IcdConfig DistillationRecipe::icd_config(int64_t num_classes, int64_t teacher_channels,
                                         int64_t student_channels) const {
  IcdConfig c{.num_classes = num_classes,
              .hidden_dim = teacher_channels,
              .student_channels = student_channels,
              .num_heads = icd_heads,
              .ffn_dim = 4 * teacher_channels,
              .warmup_iterations = icd_warmup_iterations};
  c.distill.weight = icd_loss_weight;
  return c;
}

nlohmann::json DistillationRecipe::to_json() const {
  const QuerySamplingConfig sampling;
  return {{"student_clip_value", student_clip_value},
          {"distiller_optimizer",
           {{"kind", "AdamW, cosine to 0"},
            {"lr", optimizer.lr},
            {"weight_decay", optimizer.weight_decay},
            {"clip_norm", optimizer.clip_norm},
            {"iterations", optimizer.iterations}}},
          {"icd",
           {{"warmup_iterations", icd_warmup_iterations},
            {"heads", icd_heads},
            {"loss_weight", icd_loss_weight},
            {"neg_pos_ratio", sampling.neg_pos_ratio},
            {"max_labels", sampling.max_labels},
            {"jitter_range", sampling.jitter_range}}},
          {"decoder_pretraining", decoder_pretraining.to_json()},
          {"fgfi", {{"psi", fgfi_psi}, {"weight", fgfi_weight}}}};
}

DatasetSplits load_datasets(const std::string& builtin_preset, const std::string& train_json,
                            const std::string& val_json) {
  DatasetSplits splits;
  if (!train_json.empty() || !val_json.empty()) {
    if (train_json.empty() || val_json.empty())
      throw std::invalid_argument("give both --train-json and --val-json, or neither (the built-in dataset)");
    splits.train = std::make_unique<CocoDataset>(CocoDataset::load(train_json));
    splits.val = std::make_unique<CocoDataset>(CocoDataset::load(val_json));
  } else {
    BuiltinDatasetConfig config = builtin_dataset_preset(builtin_preset);
    std::optional<BuiltinDataset> found = find_builtin_dataset(config);
    BuiltinDataset dataset;
    if (found) {
      dataset = *found;
    } else {
      std::cout << "building the built-in dataset '" << builtin_preset << "' into "
                << config.output_dir.string() << " (once; it is cached)\n";
      dataset = build_builtin_dataset(config, [](const std::string& split, int done, int total) {
        if (done == total || done % 500 == 0)
          std::cout << "  " << split << " " << done << "/" << total << "\n";
      });
    }
    splits.train = std::make_unique<CocoDataset>(
        CocoDataset::load(dataset.train_json.string(), dataset.train_images.string()));
    splits.val = std::make_unique<CocoDataset>(
        CocoDataset::load(dataset.val_json.string(), dataset.val_images.string()));
  }
  std::cout << "train: " << splits.train->summary() << "\nval:   " << splits.val->summary() << "\n";
  splits.val_preview = first_images(*splits.val, 100);
  return splits;
}

void enable_ap_over_time(TrainOptions& options, const ExperimentPreset& preset, const DatasetSplits& data) {
  if (!data.val_preview || preset.ap_points <= 0) return;
  options.eval_every = std::max<int64_t>(1, (options.iterations + preset.ap_points - 1) / preset.ap_points);
  EvalOptions eval = preset.evaluation;
  const CocoDataset* val = data.val_preview.get();
  options.periodic_eval = [eval, val](RetinaNet& model) -> std::vector<std::pair<std::string, double>> {
    const CocoEvalResult result = evaluate_detector(model, *val, eval);
    return {{"val_AP", 100.0 * result.stats[0]}, {"val_AP50", 100.0 * result.stats[1]}};
  };
}

bool imagenet_weights_available(const std::string& path) {
  if (std::filesystem::exists(path)) return true;
  std::cout
      << "ImageNet weights " << path
      << " not found (scripts/fetch_weights.sh then apps/import_weights make them): the backbone trains "
         "from random weights\n";
  return false;
}

void require_imagenet_weights(const std::string& path, const std::string& who) {
  if (std::filesystem::exists(path)) return;
  throw std::runtime_error(who + " starts from the ImageNet ResNet-50, and " + path +
                           " does not exist: run scripts/fetch_weights.sh, then ./build/apps/import_weights "
                           "--out " +
                           path);
}

bool load_imagenet_backbone(RetinaNet& model, const std::string& path) {
  if (!imagenet_weights_available(path)) return false;
  const ResNetConfig& b = model.config().backbone;
  const std::vector<int>& blocks = b.blocks.empty() ? kResNet50Blocks : b.blocks;
  if (b.depth != 50 || b.stride_on_3x3 || !b.conv_bias || !within_resnet50(blocks)) {
    std::cout << "the backbone is not the imported ResNet-50 v1 (depth 50, stride on the 1x1, conv biases, "
                 "at most {3, 4, 6, 3} blocks per stage): it starts from random weights\n";
    return false;
  }
  Checkpoint checkpoint = load_checkpoint(path);
  NamedTensors weights;
  for (const auto& [name, t] : checkpoint.tensors) {
    if (name.starts_with("fc.")) continue;  // the classifier has no place in a detector
    // A cut backbone keeps the first blocks of each stage: ResNet-50's later ones are left out here, and
    // whatever else does not fit (a missing tensor, a stranger such as a deeper network's block, a shape)
    // is an error of the strict load below.
    const std::optional<std::pair<int, int>> where = stage_and_block(name);
    if (where) {
      const auto stage = static_cast<std::size_t>(where->first - 1);
      if (where->second >= blocks[stage] && where->second < kResNet50Blocks[stage]) continue;
    }
    weights.emplace_back(name, t);
  }
  try {
    model.backbone_body().load_state_dict(weights);
  } catch (const std::runtime_error& e) {
    throw std::runtime_error(path + " does not fit the backbone: " + e.what());
  }
  std::cout << "backbone initialised from ImageNet weights " << path << " (blocks per stage "
            << blocks_text(blocks) << " of ResNet-50's " << blocks_text(kResNet50Blocks) << ")\n";
  return true;
}

CocoEvalResult run_teacher_training(const ExperimentPreset& preset, const DatasetSplits& data,
                                    const std::string& run_dir, const TrainOptions& options,
                                    bool use_imagenet) {
  RetinaNetConfig config = preset.teacher;
  // Without ImageNet weights the backbone trains from scratch: frozen batch norm would then be an
  // identity that lets activations grow through 50 layers, so it learns its batch norm instead.
  const bool imagenet = use_imagenet && imagenet_weights_available(preset.imagenet_weights);
  if (!imagenet) {
    config.backbone.norm = NormKind::batch_norm;
    config.backbone.freeze_at = 0;
  }
  RunFolder run(run_dir);
  run.write_config({{"app", "train_teacher"},
                    {"preset", preset.name},
                    {"train", data.train->source()},
                    {"val", data.val->source()},
                    {"iterations", options.iterations},
                    {"batch_size", options.batch_size},
                    {"lr", options.lr},
                    {"imagenet_backbone", imagenet},
                    {"device", options.device.str()},
                    {"precision", dtype_name(options.precision)},
                    {"model", to_json(config)}});
  Generator gen(options.seed);
  RetinaNet model(config, gen);
  if (imagenet) load_imagenet_backbone(model, preset.imagenet_weights);
  std::cout << "teacher: " << model.parameter_count() << " parameters (" << model.trainable_parameter_count()
            << " trainable)\n";
  DetectionObjective objective;
  TrainOptions with_ap = options;
  enable_ap_over_time(with_ap, preset, data);
  train_detector(model, objective, *data.train, with_ap, run);
  EvalOptions eval = preset.evaluation;
  eval.detections_path = run.file("detections.json");
  CocoEvalResult result = evaluate_detector(model, *data.val, eval);
  write_file_atomically(run.file("eval.json"), coco_eval_to_json(result).dump(2) + "\n");
  return result;
}

std::optional<CocoEvalResult> read_eval_json(const std::string& path) {
  if (!std::filesystem::exists(path)) return std::nullopt;
  const nlohmann::json j = read_json_file(path);
  try {
    CocoEvalResult r;
    for (int i = 0; i < 12; ++i)
      r.stats[i] = j.at("stats").at(i).get<double>();
    return r;
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error(path + ": not a COCO evaluation (" + e.what() + ")");
  }
}

std::array<double, 6> ap_row(const CocoEvalResult& result) {
  std::array<double, 6> row{};
  for (int i = 0; i < 6; ++i)
    row[i] = 100.0 * result.stats[i];
  return row;
}

}  // namespace icd::app
