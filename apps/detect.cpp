// detect: runs a RetinaNet checkpoint over images and writes what it finds, as data and as pictures:
//   OUT/detections.json   [{"file", "width", "height", "detections": [{"bbox": [x, y, w, h], "score",
//                          "class", "category"}, ...]}, ...] in original-image pixels, best score first
//   OUT/<image name>.png  the image with every detection at or above --score-threshold drawn: its box,
//                          class name and score, one colour per class
//
// The checkpoint says how to run it (apps/common/detector_usage.h): the class names and the test transform
// (size, normalisation) it was evaluated with; --short-edge/--max-long-edge override the size. Inputs are
// image files or folders (every .png/.jpg/.jpeg/.bmp inside, in name order). An image that cannot be read
// is reported with its path and skipped; the others are still processed and written, and the exit status
// is 1. detections.json is written atomically at the end (engine/atomic_file.h).
//
// Read first: models/retinanet.h (forward, detect), datasets/transforms.h (the test transform),
// datasets/draw.h (the pictures).
//
// Example:
//   ./build/apps/detect --checkpoint runs/teacher-default/checkpoint.safetensors
//       ~/.cache/icd/datasets/builtin-default/val/000001.png --out runs/detect
#include <omp.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "apps/common/device_flag.h"
#include "apps/common/trainer.h"
#include "datasets/draw.h"
#include "datasets/image_io.h"
#include "datasets/transforms.h"
#include "engine/atomic_file.h"
#include "engine/autograd.h"
#include "engine/transfer.h"

namespace {

namespace fs = std::filesystem;

bool is_image_file(const fs::path& path) {
  std::string ext = path.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  return ext == ".png" || ext == ".jpg" || ext == ".jpeg" || ext == ".bmp";
}

// The files named, with folders replaced by the image files inside them (sorted by name).
std::vector<fs::path> expand_inputs(const std::vector<std::string>& inputs) {
  std::vector<fs::path> files;
  for (const std::string& input : inputs) {
    if (!fs::is_directory(input)) {
      files.emplace_back(input);
      continue;
    }
    std::vector<fs::path> inside;
    for (const auto& entry : fs::directory_iterator(input))
      if (entry.is_regular_file() && is_image_file(entry.path())) inside.push_back(entry.path());
    std::sort(inside.begin(), inside.end());
    if (inside.empty()) std::cerr << "warning: no images in folder " << input << "\n";
    files.insert(files.end(), inside.begin(), inside.end());
  }
  return files;
}

std::string score_label(const std::string& name, double score) {
  char text[32];
  std::snprintf(text, sizeof text, " %.2f", score);
  return name + text;
}

// The detections of one image (boxes in its original pixels) drawn onto a copy of it.
icd::Image draw_detections(const icd::Image& image, const nlohmann::json& detections, double threshold) {
  icd::Image picture = image;
  // Lowest score first, so the best boxes and labels end up on top.
  for (auto it = detections.rbegin(); it != detections.rend(); ++it) {
    const double score = (*it)["score"].get<double>();
    if (score < threshold) continue;
    const auto& bbox = (*it)["bbox"];
    const int x0 = static_cast<int>(bbox[0].get<double>());
    const int y0 = static_cast<int>(bbox[1].get<double>());
    const int x1 = static_cast<int>(bbox[0].get<double>() + bbox[2].get<double>());
    const int y1 = static_cast<int>(bbox[1].get<double>() + bbox[3].get<double>());
    const icd::Rgb colour = icd::palette_colour((*it)["class"].get<int>());
    icd::draw_rectangle(picture, x0, y0, x1, y1, colour, 2);
    icd::draw_label(picture, x0, y0 - icd::text_height() - 2,
                    score_label((*it)["category"].get<std::string>(), score), colour, icd::Rgb{0, 0, 0});
  }
  return picture;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Run a RetinaNet checkpoint over images: detections JSON and pictures with the boxes drawn"};
  std::string checkpoint_path, out_dir = "runs/detect", device = "auto";
  std::vector<std::string> inputs;
  double score_threshold = 0.3;
  int short_edge = 0, max_long_edge = 0;
  int threads = omp_get_max_threads();
  app.add_option("--checkpoint", checkpoint_path, "RetinaNet checkpoint (train_teacher, distill_retinanet)")
      ->required()
      ->check(CLI::ExistingFile);
  app.add_option("inputs", inputs, "image files or folders of images")->required();
  app.add_option("--out", out_dir, "output folder")->capture_default_str();
  app.add_option("--score-threshold", score_threshold, "draw detections scoring at least this")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  app.add_option("--short-edge", short_edge, "test size: shortest edge (default: the checkpoint's)")
      ->check(CLI::PositiveNumber);
  app.add_option("--max-long-edge", max_long_edge,
                 "test size: longest edge at most (default: the checkpoint's)")
      ->check(CLI::PositiveNumber);
  app.add_option("--threads", threads, "CPU threads")->capture_default_str();
  icd::app::add_device_flag(app, device);
  CLI11_PARSE(app, argc, argv);
  omp_set_num_threads(threads);

  try {
    std::optional<icd::app::DetectorUsage> usage;
    std::unique_ptr<icd::RetinaNet> model = icd::app::load_retinanet(checkpoint_path, &usage);
    const icd::Device where = icd::app::use_device_flag(device);
    model->to(where);
    const int64_t num_classes = model->config().num_classes;
    if (!usage) {
      std::cout << "note: " << checkpoint_path
                << " records no class names or test size: using class indices and 256/320\n";
      usage.emplace();
      for (int64_t c = 0; c < num_classes; ++c)
        usage->class_names.push_back("class " + std::to_string(c));
      usage->test_transform.short_edge_sizes = {256};
      usage->test_transform.max_long_edge = 320;
    }
    if (static_cast<int64_t>(usage->class_names.size()) != num_classes)
      throw std::runtime_error(checkpoint_path + " names " + std::to_string(usage->class_names.size()) +
                               " classes but its model predicts " + std::to_string(num_classes));
    icd::TransformConfig transform = usage->test_transform;
    if (short_edge > 0) transform.short_edge_sizes = {short_edge};
    if (max_long_edge > 0) transform.max_long_edge = max_long_edge;
    transform.flip_probability = 0.0;
    transform.validate();

    const std::vector<fs::path> files = expand_inputs(inputs);
    fs::create_directories(out_dir);
    model->eval();
    icd::NoGradGuard no_grad;
    icd::Generator unused_rng(0);  // the test transform draws nothing random (one size, no flip)
    nlohmann::json results = nlohmann::json::array();
    int failed = 0, drawn = 0;
    for (const fs::path& file : files) {
      icd::Image image;
      try {
        image = icd::read_image(file.string());
      } catch (const std::exception& e) {
        std::cerr << "error: skipping " << file.string() << ": " << e.what() << "\n";
        ++failed;
        continue;
      }
      icd::TransformedSample sample = icd::apply_transforms(image, {}, transform, unused_rng);
      const icd::ImageSizes sizes{sample.info.size.height, sample.info.size.width, image.height, image.width};
      std::vector<icd::TransformedSample> one;
      one.push_back(std::move(sample));
      const icd::DetectionBatch batch = icd::collate(std::move(one), transform.size_divisibility);
      const icd::Detections d =
          model->detect(model->forward(icd::to_device(batch.images, where)), {sizes}).at(0);
      const std::vector<double> boxes = d.boxes.to_vector<double>(), scores = d.scores.to_vector<double>();
      const std::vector<int64_t> labels = d.labels.to_vector<int64_t>();
      nlohmann::json detections = nlohmann::json::array();
      for (std::size_t k = 0; k < scores.size(); ++k) {
        const double x1 = boxes[4 * k], y1 = boxes[4 * k + 1], x2 = boxes[4 * k + 2], y2 = boxes[4 * k + 3];
        detections.push_back({{"bbox", {x1, y1, x2 - x1, y2 - y1}},
                              {"score", scores[k]},
                              {"class", labels[k]},
                              {"category", usage->class_names.at(static_cast<std::size_t>(labels[k]))}});
      }
      const fs::path picture = fs::path(out_dir) / (file.stem().string() + ".png");
      icd::write_png(picture.string(), draw_detections(image, detections, score_threshold));
      const auto shown =
          std::count_if(scores.begin(), scores.end(), [&](double s) { return s >= score_threshold; });
      std::cout << file.string() << ": " << scores.size() << " detections, " << shown
                << " drawn >= " << score_threshold << " -> " << picture.string() << "\n";
      ++drawn;
      results.push_back({{"file", file.string()},
                         {"width", image.width},
                         {"height", image.height},
                         {"detections", std::move(detections)}});
    }
    const std::string json_path = (fs::path(out_dir) / "detections.json").string();
    icd::write_file_atomically(json_path, results.dump(1) + "\n");
    std::cout << "wrote " << json_path << " (" << drawn << " images";
    if (failed > 0) std::cout << ", " << failed << " unreadable, skipped";
    std::cout << ")\n";
    return failed > 0 ? 1 : 0;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
}
