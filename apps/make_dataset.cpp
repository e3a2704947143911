// make_dataset: builds the built-in dataset, Fashion-MNIST garments pasted onto real photos, as COCO
// JSON + PNG images (train.json, val.json, train/, val/), prints its statistics (images, boxes per
// image, COCO small/medium/large counts, boxes per class) and, with --preview, writes a contact sheet
// of images with their boxes and class names drawn. A complete build with the same configuration is
// reused, not rebuilt (--force rebuilds it).
//
// Read first: datasets/builtin_dataset.h (how an image is composed, the splits, the output folder),
// then scripts/fetch_dataset_sources.sh (where the objects and photos come from; scripts/setup.sh runs
// it once).
//
// Example:
//   ./build/apps/make_dataset --preset default --preview runs/dataset/preview.png
//   ./build/apps/make_dataset --preset tiny --output /tmp/icd-tiny --seed 7 --train-images 40
//
// Presets: tiny (tests, seconds), default (the main job on 2 CPU cores), large (GPU runs). Every flag
// given beside --preset overrides that field of the preset. The default output folder is
// ${ICD_CACHE:-~/.cache/icd}/datasets/builtin-<preset>, outside git.
#include <omp.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>

#include "apps/common/progress.h"
#include "datasets/builtin_dataset.h"

int main(int argc, char** argv) {
  CLI::App app{"Build the built-in dataset (Fashion-MNIST objects on real photos, COCO JSON + PNG)"};
  std::string preset = "default";
  std::optional<std::string> output, sources;
  std::optional<int> train_images, val_images, width, height, min_objects, max_objects;
  std::optional<double> min_size, max_size, max_occlusion;
  std::optional<uint64_t> seed;
  int threads = 0;
  bool force = false;
  std::string preview, preview_split = "train";
  int preview_count = 16, preview_columns = 4;

  app.add_option("--preset", preset, "tiny | default | large")
      ->check(CLI::IsMember({"tiny", "default", "large"}))
      ->capture_default_str();
  app.add_option("--output", output, "dataset folder (default: the cache's datasets/builtin-<preset>)");
  app.add_option("--sources", sources,
                 "folder with fashion-mnist/ and backgrounds/ (default: the cache's dataset-sources)");
  app.add_option("--train-images", train_images, "images in the train split")->check(CLI::PositiveNumber);
  app.add_option("--val-images", val_images, "images in the val split")->check(CLI::PositiveNumber);
  app.add_option("--width", width, "image width in pixels")->check(CLI::Range(16, 8192));
  app.add_option("--height", height, "image height in pixels")->check(CLI::Range(16, 8192));
  app.add_option("--min-objects", min_objects, "fewest objects tried per image")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--max-objects", max_objects, "most objects tried per image")->check(CLI::NonNegativeNumber);
  app.add_option("--min-size", min_size, "smallest object long side, pixels (log-uniform)");
  app.add_option("--max-size", max_size, "largest object long side, pixels (capped at the short side)");
  app.add_option("--max-occlusion", max_occlusion, "largest fraction of an object later objects may hide");
  app.add_option("--seed", seed, "random seed: the same seed gives byte-identical output");
  app.add_option("--threads", threads, "worker threads (0: OpenMP's default)")->check(CLI::NonNegativeNumber);
  app.add_flag("--force", force, "rebuild even when a complete build with this configuration exists");
  app.add_option("--preview", preview, "write a contact sheet (PNG) of images with boxes and class names");
  app.add_option("--preview-split", preview_split, "split shown in the contact sheet")
      ->check(CLI::IsMember({"train", "val"}))
      ->capture_default_str();
  app.add_option("--preview-count", preview_count, "images in the contact sheet")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--preview-columns", preview_columns, "columns of the contact sheet")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  try {
    icd::BuiltinDatasetConfig config = icd::builtin_dataset_preset(preset);
    icd::CompositionOptions& c = config.composition;
    if (output) config.output_dir = *output;
    if (sources) config.sources_dir = *sources;
    if (train_images) config.train_images = *train_images;
    if (val_images) config.val_images = *val_images;
    if (width) c.width = *width;
    if (height) c.height = *height;
    if (min_objects) c.min_objects = *min_objects;
    if (max_objects) c.max_objects = *max_objects;
    if (min_size) c.min_object_size = *min_size;
    if (max_size) c.max_object_size = *max_size;
    if (max_occlusion) c.max_occlusion = *max_occlusion;
    if (seed) config.seed = *seed;
    if (threads > 0) omp_set_num_threads(threads);
    if (force) std::filesystem::remove(config.output_dir / "complete.json");

    std::printf(
        "make_dataset: %s preset, %d train + %d val images of %d x %d, %d-%d objects of %g-%g px, "
        "seed %llu\n  sources %s\n  output  %s\n",
        preset.c_str(), config.train_images, config.val_images, c.width, c.height, c.min_objects,
        c.max_objects, c.min_object_size, c.max_object_size, static_cast<unsigned long long>(config.seed),
        config.sources_dir.c_str(), config.output_dir.c_str());
    std::fflush(stdout);

    std::map<std::string, std::unique_ptr<icd::app::ProgressLine>> lines;
    const auto progress = [&](const std::string& split, int done, int total) {
      auto& line = lines[split];
      if (!line) {
        if (split == "val" && lines.count("train") != 0) lines["train"]->finish();
        line = std::make_unique<icd::app::ProgressLine>("make_dataset " + split, total, 1);
      }
      line->update(done, {});
    };
    const auto start = std::chrono::steady_clock::now();
    const icd::BuiltinDataset dataset = icd::build_builtin_dataset(config, progress);
    if (lines.count("val") != 0) lines["val"]->finish();
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (dataset.reused) {
      std::printf("make_dataset: reusing the complete build in %s (--force rebuilds it)\n",
                  dataset.dir.c_str());
    } else {
      std::printf("make_dataset: built in %.1f s (%d threads)\n", seconds, omp_get_max_threads());
    }
    std::cout << icd::format_split_stats("train", dataset.train)
              << icd::format_split_stats("val", dataset.val);
    std::printf("  %s\n  %s\n", dataset.train_json.c_str(), dataset.val_json.c_str());

    if (!preview.empty()) {
      const bool train = preview_split == "train";
      const icd::Image sheet = icd::make_contact_sheet(train ? dataset.train_json : dataset.val_json,
                                                       train ? dataset.train_images : dataset.val_images,
                                                       preview_count, preview_columns);
      const std::filesystem::path preview_path(preview);
      if (preview_path.has_parent_path()) std::filesystem::create_directories(preview_path.parent_path());
      icd::write_png(preview, sheet);
      std::printf("make_dataset: contact sheet of %s in %s\n", preview_split.c_str(), preview.c_str());
    }
  } catch (const std::exception& error) {
    std::fprintf(stderr, "make_dataset: %s\n", error.what());
    return 1;
  }
  return 0;
}
