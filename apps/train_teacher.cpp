// train_teacher: trains the RetinaNet teacher that distill_retinanet distils from.
//
// By default: a ResNet-50 FPN RetinaNet whose backbone starts from the ImageNet weights imported by
// apps/import_weights (from random weights, with a message, if they are not there), trained on the
// built-in dataset (built and cached on first use) with the `default` preset, then evaluated on the
// validation split with the COCO protocol. Everything goes to runs/NAME/: config.json, metrics.jsonl,
// checkpoint.safetensors (the model; load it with --teacher in distill_retinanet), eval.json.
//
// Read first: apps/common/trainer.h (the loop), models/retinanet.h (the model), apps/common/experiment.h
// (the presets).
//
//   ./build/apps/train_teacher                          # default preset, runs/teacher-default
//   ./build/apps/train_teacher --preset tiny --run runs/tiny-teacher
//   ./build/apps/train_teacher --resume                 # continue an interrupted run
//   ./build/apps/train_teacher --train-json coco/train.json --val-json coco/val.json --iterations 90000
//   ./build/apps/train_teacher --preset large --device cuda --precision f16   # f16 with loss scaling
#include <omp.h>

#include <CLI/CLI.hpp>
#include <iostream>

#include "apps/common/device_flag.h"
#include "apps/common/experiment.h"
#include "apps/common/run_folder.h"
#include "apps/common/trainer.h"
#include "engine/autocast.h"

using namespace icd;
using namespace icd::app;

int main(int argc, char** argv) {
  CLI::App app{"Train a RetinaNet teacher (ResNet-50 FPN) on the built-in dataset or a COCO dataset"};
  std::string preset_name = "default", run_dir, train_json, val_json, device = "auto", precision = "f32";
  int64_t iterations = 0;
  int threads = omp_get_max_threads();
  bool resume = false, skip_bad_images = false, no_imagenet = false;
  app.add_option("--preset", preset_name, "tiny, default or large")->capture_default_str();
  app.add_option("--run", run_dir, "run folder (default runs/teacher-PRESET)");
  app.add_option("--train-json", train_json, "COCO training annotations (default: the built-in dataset)");
  app.add_option("--val-json", val_json, "COCO validation annotations");
  app.add_option("--iterations", iterations, "override the preset's iteration count");
  app.add_option("--threads", threads, "CPU threads")->capture_default_str();
  app.add_flag("--skip-bad-images", skip_bad_images,
               "skip unreadable images with a warning instead of stopping");
  app.add_flag("--resume", resume, "continue from the run folder's checkpoint");
  app.add_flag("--no-imagenet", no_imagenet, "start the backbone from random weights");
  add_device_flag(app, device);
  add_precision_flag(app, precision);
  CLI11_PARSE(app, argc, argv);
  omp_set_num_threads(threads);
  if (run_dir.empty()) run_dir = "runs/teacher-" + preset_name;

  try {
    const Device where = use_device_flag(device);
    DatasetSplits data = load_datasets(preset_name, train_json, val_json);
    ExperimentPreset preset = experiment_preset(preset_name, data.train->num_classes());
    TrainOptions options = preset.teacher_training;
    if (iterations > 0) options.iterations = iterations;
    options.resume = resume;
    options.skip_unreadable_images = skip_bad_images;
    options.device = where;
    options.precision = parse_precision(precision);
    CocoEvalResult result = run_teacher_training(preset, data, run_dir, options, !no_imagenet);
    print_coco_summary(std::cout, result);
    std::cout << "teacher checkpoint: " << run_dir << "/checkpoint.safetensors\n";
  } catch (const std::exception& e) {
    std::cerr << "train_teacher: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
