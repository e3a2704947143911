// evaluate: COCO bbox mAP of a detections file against a ground-truth file, the same 12 numbers
// pycocotools' COCOeval prints (AP, AP50, AP75, APs/m/l, AR1/10/100, ARs/m/l).
//
// Read first: datasets/coco_eval.h (the rules of the metric and the file layouts) and
// tests/fixtures/cocoeval/README.md (the golden cases it is checked against).
//
// Example:
//   ./build/apps/evaluate --gt tests/fixtures/cocoeval/p02_realistic/gt.json
//       --dt tests/fixtures/cocoeval/p02_realistic/dt.json --json runs/eval/p02.json
//
// --json writes {"stats", "stats_names", "stats_by_name", "per_category", "counts"} (the form of the
// fixtures' expected.json) to a temporary file first and renames it, so a reader never sees half a file.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>

#include "datasets/coco_eval.h"

namespace {

void write_json_atomically(const nlohmann::json& json, const std::filesystem::path& path) {
  if (path.has_parent_path()) std::filesystem::create_directories(path.parent_path());
  std::filesystem::path temporary = path;
  temporary += ".tmp";
  {
    std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
    if (!out) throw std::runtime_error("evaluate: cannot write " + temporary.string());
    out << json.dump(1) << '\n';
    out.flush();
    if (!out) throw std::runtime_error("evaluate: failed writing " + temporary.string());
  }
  std::filesystem::rename(temporary, path);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"COCO bbox mAP (pycocotools COCOeval) of detections against ground truth"};
  std::string gt_path, dt_path, json_path;
  app.add_option("--gt", gt_path, "COCO ground-truth JSON (images, annotations, categories)")
      ->required()
      ->check(CLI::ExistingFile);
  app.add_option("--dt", dt_path, "COCO results JSON: [{image_id, category_id, bbox, score}, ...]")
      ->required()
      ->check(CLI::ExistingFile);
  app.add_option("--json", json_path, "also write the stats and per-category AP to this JSON file");
  CLI11_PARSE(app, argc, argv);

  try {
    const icd::CocoGroundTruth ground_truth = icd::load_coco_ground_truth(gt_path);
    const icd::CocoDetections detections = icd::load_coco_detections(dt_path);
    const icd::CocoEvalResult result = icd::evaluate_coco_bbox(ground_truth, detections);

    const auto& counts = result.counts;
    std::cout << "images " << counts.images << ", categories " << counts.categories << ", gt " << counts.gt
              << " (" << counts.gt_crowd << " crowd), detections " << counts.dt << "\n";
    if (counts.dt_unknown_category > 0) {
      std::cout << "note: " << counts.dt_unknown_category
                << " detection(s) with a category that is not in the ground truth were skipped\n";
    }
    icd::print_coco_summary(std::cout, result);
    if (!json_path.empty()) {
      write_json_atomically(icd::coco_eval_to_json(result), json_path);
      std::cout << "wrote " << json_path << "\n";
    }
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
