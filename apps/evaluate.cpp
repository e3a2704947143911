// evaluate: COCO bbox mAP against a ground-truth file, the same 12 numbers pycocotools' COCOeval prints
// (AP, AP50, AP75, APs/m/l, AR1/10/100, ARs/m/l), of either
//   - a detections file (--dt), or
//   - a RetinaNet checkpoint (--checkpoint) that is first run over every image of the ground-truth file:
//     the images are resized by the test transform the checkpoint records (apps/common/detector_usage.h;
//     --short-edge and --max-long-edge override its size), the model's detections are mapped
//     back to the original image sizes and evaluated; --detections-out keeps them as COCO results JSON.
//
// Read first: datasets/coco_eval.h (the rules of the metric and the file layouts),
// tests/fixtures/cocoeval/README.md (the golden cases it is checked against), and for the checkpoint mode
// apps/common/trainer.h (load_retinanet, evaluate_detector).
//
// Examples:
//   ./build/apps/evaluate --gt tests/fixtures/cocoeval/p02_realistic/gt.json
//       --dt tests/fixtures/cocoeval/p02_realistic/dt.json --json runs/eval/p02.json
//   ./build/apps/evaluate --checkpoint runs/teacher-default/checkpoint.safetensors
//       --gt ~/.cache/icd/datasets/builtin-default/val.json --json runs/eval/teacher.json
//       --detections-out runs/eval/teacher-detections.json
//
// --json writes {"stats", "stats_names", "stats_by_name", "per_category", "counts"} (the form of the
// fixtures' expected.json) atomically (engine/atomic_file.h), so a reader never sees half a file.
#include <omp.h>

#include <CLI/CLI.hpp>
#include <filesystem>
#include <iostream>
#include <memory>
#include <stdexcept>
#include <string>

#include "apps/common/device_flag.h"
#include "apps/common/experiment.h"
#include "apps/common/trainer.h"
#include "datasets/coco_dataset.h"
#include "datasets/coco_eval.h"
#include "engine/atomic_file.h"

namespace {

// Writes `json` to `path` atomically, creating the folder first.
void write_json(const nlohmann::json& json, const std::filesystem::path& path) {
  if (path.has_parent_path()) std::filesystem::create_directories(path.parent_path());
  icd::write_file_atomically(path.string(), json.dump(1) + "\n");
}

struct CheckpointOptions {
  std::string checkpoint_path, images_dir, detections_path;
  int short_edge = 0, max_long_edge = 0;  // 0: the checkpoint's test size
  int batch_size = 4, num_workers = 2;
  std::string device = "auto";
};

// Runs the checkpoint's model over the dataset of `gt_path` and evaluates its detections.
icd::CocoEvalResult evaluate_checkpoint(const std::string& gt_path, const CheckpointOptions& options) {
  std::optional<icd::app::DetectorUsage> usage;
  std::unique_ptr<icd::RetinaNet> model = icd::app::load_retinanet(options.checkpoint_path, &usage);
  model->to(icd::app::use_device_flag(options.device));
  const icd::CocoDataset dataset = icd::CocoDataset::load(gt_path, options.images_dir);
  const int64_t num_classes = model->config().num_classes;
  if (dataset.num_classes() != num_classes)
    throw std::runtime_error(options.checkpoint_path + " predicts " + std::to_string(num_classes) +
                             " classes but " + gt_path + " has " + std::to_string(dataset.num_classes()) +
                             " categories");
  std::cout << "model " << options.checkpoint_path << " (ResNet-" << model->config().backbone.depth << ", "
            << num_classes << " classes); " << dataset.summary() << "\n";
  icd::app::EvalOptions eval;
  // The test transform the checkpoint records; older checkpoints get the presets' normalisation and the
  // default preset's size. The flags override the size.
  eval.transform = usage ? usage->test_transform
                         : icd::app::experiment_preset("default", num_classes).evaluation.transform;
  if (options.short_edge > 0) eval.transform.short_edge_sizes = {options.short_edge};
  if (options.max_long_edge > 0) eval.transform.max_long_edge = options.max_long_edge;
  eval.transform.validate();
  eval.batch_size = options.batch_size;
  eval.num_workers = options.num_workers;
  eval.detections_path = options.detections_path;
  const std::filesystem::path detections_path = options.detections_path;
  if (detections_path.has_parent_path()) std::filesystem::create_directories(detections_path.parent_path());
  icd::CocoEvalResult result = icd::app::evaluate_detector(*model, dataset, eval);
  if (!options.detections_path.empty()) std::cout << "wrote " << options.detections_path << "\n";
  return result;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"COCO bbox mAP (pycocotools COCOeval) of detections, or of a checkpoint's detections"};
  std::string gt_path, dt_path, json_path;
  CheckpointOptions checkpoint;
  int threads = omp_get_max_threads();
  app.add_option("--gt", gt_path, "COCO ground-truth JSON (images, annotations, categories)")
      ->required()
      ->check(CLI::ExistingFile);
  auto* dt = app.add_option("--dt", dt_path, "COCO results JSON: [{image_id, category_id, bbox, score}, ...]")
                 ->check(CLI::ExistingFile);
  auto* model = app.add_option("--checkpoint", checkpoint.checkpoint_path,
                               "RetinaNet checkpoint to run over the --gt images instead of --dt")
                    ->check(CLI::ExistingFile);
  dt->excludes(model);
  app.add_option("--json", json_path, "also write the stats and per-category AP to this JSON file");
  app.add_option("--images", checkpoint.images_dir,
                 "folder of the --gt images (default: the JSON file's folder)")
      ->needs(model)
      ->check(CLI::ExistingDirectory);
  app.add_option("--detections-out", checkpoint.detections_path,
                 "write the checkpoint's detections to this COCO results JSON file")
      ->needs(model);
  app.add_option("--short-edge", checkpoint.short_edge,
                 "test size: the images' shortest edge (default: the checkpoint's)")
      ->needs(model)
      ->check(CLI::PositiveNumber);
  app.add_option("--max-long-edge", checkpoint.max_long_edge,
                 "test size: the longest edge at most (default: the checkpoint's)")
      ->needs(model)
      ->check(CLI::PositiveNumber);
  app.add_option("--batch-size", checkpoint.batch_size, "images per forward pass")
      ->needs(model)
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--threads", threads, "CPU threads")->capture_default_str();
  app.add_option("--device", checkpoint.device,
                 "where the checkpoint's model runs: auto (the GPU when there is one), cpu, cuda or cuda:N")
      ->needs(model)
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  if (dt_path.empty() && checkpoint.checkpoint_path.empty()) {
    std::cerr << "error: give --dt (a detections file) or --checkpoint (a model to run)\n";
    return 2;
  }
  omp_set_num_threads(threads);

  try {
    const icd::CocoEvalResult result = dt_path.empty()
                                           ? evaluate_checkpoint(gt_path, checkpoint)
                                           : icd::evaluate_coco_bbox(icd::load_coco_ground_truth(gt_path),
                                                                     icd::load_coco_detections(dt_path));

    const auto& counts = result.counts;
    std::cout << "images " << counts.images << ", categories " << counts.categories << ", gt " << counts.gt
              << " (" << counts.gt_crowd << " crowd), detections " << counts.dt << "\n";
    if (counts.dt_unknown_category > 0) {
      std::cout << "note: " << counts.dt_unknown_category
                << " detection(s) with a category that is not in the ground truth were skipped\n";
    }
    icd::print_coco_summary(std::cout, result);
    if (!json_path.empty()) {
      write_json(icd::coco_eval_to_json(result), json_path);
      std::cout << "wrote " << json_path << "\n";
    }
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
