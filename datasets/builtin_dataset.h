// The built-in dataset: real objects (Fashion-MNIST garments) pasted onto real photos, written as COCO
// JSON + PNG images. It is what every app trains and evaluates on when no other dataset is given.
//
// Sources (scripts/fetch_dataset_sources.sh puts them under ${ICD_CACHE:-~/.cache/icd}/dataset-sources):
//   fashion-mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte   the IDX files, 60000 train / 10000 test
//   backgrounds/*.{jpg,png}                                         colour photos from Debian packages
//
// Splits share nothing: train images take their objects from Fashion-MNIST's train set and val images
// from its test set, and the photos are split by photo (sorted by name, every fifth one, starting with
// the third, goes to val). Within a split every object instance is used once, in a shuffled order,
// until the set runs out (no preset gets there; a bigger custom build starts the order again).
//
// One image (compose_image):
//   1. Background: a random crop of the photo with the output's aspect ratio, 50-100% of the largest
//      such crop on a side, resampled (triangle filter, antialiased when shrinking) to width x height,
//      flipped horizontally half of the time, then brightness, contrast and saturation jitter.
//   2. Objects, min_objects..max_objects of them: each 28x28 garment is cut to the extent of its
//      alpha > 0.5 (plus one pixel), scaled so that the extent's long side is log-uniform in
//      [min_object_size, max_object_size] (capped at the image's short side), and pasted at a random
//      position wholly inside the image. Its alpha is its intensity on a steep ramp, min(1, v / 32),
//      because dark garments are faint (v 20-60) on Fashion-MNIST's 0 background; its colour is a random
//      texture (plain, stripes, checks or a gradient of two random colours) shaded by the intensity, so
//      the garment's folds and seams stay visible.
//   3. Occlusion is capped: a new object is placed only where it hides at most max_occlusion of every
//      earlier object's mask (counting what was hidden before); after placement_attempts failed
//      positions the object is dropped.
//   4. Each object's mask is the set of pixels where its alpha > 0.5 and no later object's alpha is
//      > 0.5. As in COCO, `bbox` is the exact extent of that visible mask ([x, y, w, h] in whole pixels,
//      the box covering the pixel squares) and `area` is its pixel count.
//
// Output folder (build_builtin_dataset):
//   train.json, val.json   COCO: images (with "background": the photo's name), annotations (with
//                          "source": {"set": "train"|"t10k", "index": i}, the Fashion-MNIST instance),
//                          categories 1..10 = Fashion-MNIST classes 0..9 with their names
//   train/, val/           the images, 000000.png, 000001.png, ...
//   complete.json          written last: the configuration it was built with and the statistics
// The folder is built beside the target under a temporary name and renamed into place, so a reader sees
// either a whole dataset or none; a folder without complete.json, or built with another configuration,
// is rebuilt.
//
// Deterministic: every image draws its random numbers from its own generator seeded by (seed, split,
// index), so the same configuration gives byte-identical JSON and images, whatever the thread count.
#pragma once
#include <array>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "datasets/image_io.h"

namespace icd {

inline constexpr int kFashionMnistClassCount = 10;
// Class names in label order; the COCO category id is label + 1.
extern const std::array<const char*, kFashionMnistClassCount> kFashionMnistClassNames;

// ${ICD_CACHE}, else ${HOME}/.cache/icd.
std::filesystem::path icd_cache_dir();
// icd_cache_dir() / "dataset-sources", where scripts/fetch_dataset_sources.sh writes.
std::filesystem::path default_dataset_sources_dir();
// icd_cache_dir() / "datasets" / ("builtin-" + preset).
std::filesystem::path default_builtin_dataset_dir(const std::string& preset);

// One Fashion-MNIST IDX pair ("train" or "t10k"), all images in memory.
struct FashionMnist {
  static constexpr int kSide = 28;
  std::string split;
  std::vector<uint8_t> pixels;  // count() images of 28 x 28, row-major; 0 is background
  std::vector<uint8_t> labels;  // 0..9

  int count() const { return static_cast<int>(labels.size()); }
  const uint8_t* image(int index) const { return pixels.data() + static_cast<size_t>(index) * kSide * kSide; }
};

// Reads <directory>/<split>-images-idx3-ubyte and <split>-labels-idx1-ubyte. Throws std::runtime_error
// naming the file when it is missing, truncated or not the IDX layout expected.
FashionMnist load_fashion_mnist(const std::filesystem::path& directory, const std::string& split);

// The photos in a backgrounds folder (*.jpg, *.jpeg, *.png; sorted by name), split for train and val.
struct BackgroundPhotos {
  std::vector<std::string> train;
  std::vector<std::string> val;
};
// Throws std::runtime_error naming the folder when it is missing or holds fewer than 3 photos.
BackgroundPhotos list_background_photos(const std::filesystem::path& directory);

struct CompositionOptions {
  int width = 320;
  int height = 256;
  int min_objects = 1;
  int max_objects = 12;
  double min_object_size = 16;   // long side of an object's extent, pixels (log-uniform)
  double max_object_size = 192;  // capped at min(width, height)
  double max_occlusion = 0.4;    // the largest fraction of an object's mask later objects may hide
  int placement_attempts = 30;
};

// One Fashion-MNIST instance to paste.
struct ObjectSource {
  const uint8_t* pixels = nullptr;  // 28 x 28
  int label = 0;                    // 0..9
  int index = 0;                    // its index in the Fashion-MNIST split, recorded in the annotation
};

struct ComposedObject {
  int label = 0;
  int source_index = 0;
  int x = 0, y = 0, width = 0, height = 0;  // extent of the visible mask (pixels)
  int64_t area = 0;                         // pixels in the visible mask
  int64_t full_area = 0;                    // pixels in the mask before later objects hid any of it
};

struct ComposedImage {
  Image image;
  std::vector<ComposedObject> objects;  // placed objects, in pasting order (dropped ones are absent)
  // Per pixel (row-major), the index into `objects` whose visible mask holds it, or -1.
  std::vector<int16_t> owner;
};

// Composes one image from a photo and the objects to paste (steps 1-4 above); all randomness comes
// from `seed`. Throws std::invalid_argument for inconsistent options or an empty photo.
ComposedImage compose_image(const Image& photo, std::span<const ObjectSource> objects,
                            const CompositionOptions& options, uint64_t seed);

struct BuiltinDatasetConfig {
  std::filesystem::path sources_dir;  // holds fashion-mnist/ and backgrounds/
  std::filesystem::path output_dir;
  int train_images = 4000;
  int val_images = 500;
  CompositionOptions composition;
  uint64_t seed = 1;
};

// "tiny" (tests: 12 train / 6 val images of 160 x 128, under a second), "default" (the main job on 2 CPU
// cores: 4000 / 500 of 320 x 256, about 750 MB of PNG), "large" (GPU runs: 9000 / 1000 of 640 x 512,
// objects up to 384 px, about 6 GB; sized so that no Fashion-MNIST instance is used twice).
// sources_dir and output_dir are the defaults above. Throws std::invalid_argument for other names.
BuiltinDatasetConfig builtin_dataset_preset(const std::string& name);

struct SplitStats {
  int64_t images = 0;
  int64_t boxes = 0;
  int64_t min_boxes_per_image = 0;
  int64_t max_boxes_per_image = 0;
  int64_t small = 0, medium = 0, large = 0;    // COCO: area < 32^2, < 96^2, the rest
  int64_t min_box_side = 0, max_box_side = 0;  // over max(w, h) of every box
  std::array<int64_t, kFashionMnistClassCount> per_class{};
  double boxes_per_image() const { return images > 0 ? static_cast<double>(boxes) / images : 0.0; }
};

struct BuiltinDataset {
  std::filesystem::path dir;
  std::filesystem::path train_json, val_json;
  std::filesystem::path train_images, val_images;  // folders the JSON file names are relative to
  SplitStats train, val;
  bool reused = false;  // true when a complete build with the same configuration was already there
};

// Called while building, from one thread at a time: split ("train"/"val"), images done, images in it.
using BuildProgress = std::function<void(const std::string& split, int done, int total)>;

// The dataset at config.output_dir when complete.json there matches the configuration, else nothing.
std::optional<BuiltinDataset> find_builtin_dataset(const BuiltinDatasetConfig& config);

// Returns the complete dataset, building it first unless find_builtin_dataset finds it. Throws
// std::runtime_error naming the missing or broken source (and the script that fetches the sources).
BuiltinDataset build_builtin_dataset(const BuiltinDatasetConfig& config, const BuildProgress& progress = {});

// Statistics of one COCO file written by the builder.
SplitStats split_stats_of(const std::filesystem::path& coco_json);
// Several lines: images, boxes per image, COCO small/medium/large, per-class counts.
std::string format_split_stats(const std::string& split, const SplitStats& stats);

// A contact sheet of the first `count` images of a split (columns x rows), each with its boxes and class
// names drawn.
Image make_contact_sheet(const std::filesystem::path& coco_json, const std::filesystem::path& images_dir,
                         int count, int columns);

}  // namespace icd
