// The built-in dataset (datasets/builtin_dataset.h): a tiny split built from the cached sources
// (scripts/fetch_dataset_sources.sh) twice, with one and with two threads, must be byte-identical; its
// COCO JSON is well formed (categories, ids, boxes inside the images, sizes that add up), train and val
// share no photo and no Fashion-MNIST instance, and its statistics agree with the JSON. compose_image's
// boxes are the exact extent of each object's visible mask and the occlusion cap holds. A half-built
// folder is rebuilt, a build with another configuration is not reused, a folder holding other files is
// not replaced, and bad input (missing or incomplete sources, truncated IDX files, bad options) gives an
// error naming the culprit.
// Without the cached sources the cases that need them are skipped, loudly.
#include <doctest/doctest.h>
#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include "datasets/builtin_dataset.h"
#include "datasets/image_io.h"
#include "temp_dir.h"

using namespace icd;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// A per-process temporary folder, removed at the end of the test case.

bool sources_available() {
  const fs::path sources = default_dataset_sources_dir();
  if (fs::exists(sources / "fashion-mnist" / ".complete") &&
      fs::exists(sources / "backgrounds" / ".complete")) {
    return true;
  }
  MESSAGE("SKIPPED: the dataset sources are not cached in " << sources.string()
                                                            << "; run scripts/fetch_dataset_sources.sh");
  WARN_MESSAGE(false, "built-in dataset test skipped: no sources in " << sources.string());
  return false;
}

std::string read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE_MESSAGE(in.good(), "cannot open " << path.string());
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

json read_json(const fs::path& path) {
  return json::parse(read_bytes(path));
}

// Every regular file under `root`, by relative path.
std::vector<fs::path> files_under(const fs::path& root) {
  std::vector<fs::path> files;
  for (const auto& entry : fs::recursive_directory_iterator(root)) {
    if (entry.is_regular_file()) files.push_back(fs::relative(entry.path(), root));
  }
  std::sort(files.begin(), files.end());
  return files;
}

BuiltinDatasetConfig tiny_config(const fs::path& output_dir) {
  BuiltinDatasetConfig config = builtin_dataset_preset("tiny");
  config.output_dir = output_dir;
  return config;
}

BuiltinDataset build_with_threads(const BuiltinDatasetConfig& config, int threads) {
  const int before = omp_get_max_threads();
  omp_set_num_threads(threads);
  BuiltinDataset dataset = build_builtin_dataset(config);
  omp_set_num_threads(before);
  return dataset;
}

// Checks one split's COCO JSON against its images and returns the photos and instances it uses.
struct SplitUse {
  std::set<std::string> photos;
  std::set<int64_t> instances;
  std::string instance_set;
};

SplitUse check_split(const fs::path& json_path, const fs::path& images_dir, const CompositionOptions& options,
                     int expected_images) {
  const json coco = read_json(json_path);
  SplitUse use;
  REQUIRE(coco.at("categories").size() == kFashionMnistClassCount);
  for (int i = 0; i < kFashionMnistClassCount; ++i) {
    const auto& category = coco["categories"][static_cast<size_t>(i)];
    CHECK(category["id"] == i + 1);
    CHECK(category["name"] == kFashionMnistClassNames[static_cast<size_t>(i)]);
  }
  REQUIRE(coco.at("images").size() == static_cast<size_t>(expected_images));
  std::set<int64_t> image_ids;
  for (const auto& image : coco["images"]) {
    CHECK(image_ids.insert(image.at("id").get<int64_t>()).second);
    CHECK(image["width"] == options.width);
    CHECK(image["height"] == options.height);
    use.photos.insert(image.at("background").get<std::string>());
    const Image pixels = read_image((images_dir / image.at("file_name").get<std::string>()).string());
    CHECK(pixels.width == options.width);
    CHECK(pixels.height == options.height);
  }
  std::set<int64_t> annotation_ids;
  std::map<int64_t, int> boxes_per_image;
  for (const auto& annotation : coco.at("annotations")) {
    CHECK(annotation_ids.insert(annotation.at("id").get<int64_t>()).second);
    const int64_t image_id = annotation.at("image_id").get<int64_t>();
    CHECK(image_ids.count(image_id) == 1);
    ++boxes_per_image[image_id];
    const int64_t category = annotation.at("category_id").get<int64_t>();
    CHECK(category >= 1);
    CHECK(category <= kFashionMnistClassCount);
    const auto& box = annotation.at("bbox");
    const int x = box[0], y = box[1], w = box[2], h = box[3];
    CHECK(x >= 0);
    CHECK(y >= 0);
    CHECK(w >= 1);
    CHECK(h >= 1);
    CHECK(x + w <= options.width);
    CHECK(y + h <= options.height);
    const int64_t area = annotation.at("area").get<int64_t>();
    CHECK(area >= 1);
    CHECK(area <= int64_t{w} * h);
    CHECK(annotation["iscrowd"] == 0);
    const std::string set = annotation.at("source").at("set").get<std::string>();
    if (use.instance_set.empty()) use.instance_set = set;
    CHECK(set == use.instance_set);
    // Small splits never run out of instances, so none repeats.
    CHECK(use.instances.insert(annotation["source"]["index"].get<int64_t>()).second);
  }
  for (const auto& [image_id, count] : boxes_per_image)
    CHECK(count <= options.max_objects);
  return use;
}

}  // namespace

TEST_CASE("a tiny build is byte-identical across runs and thread counts, and well formed") {
  if (!sources_available()) return;
  testing::TempDir temp("build");
  const BuiltinDatasetConfig config_a = tiny_config(temp.path() / "a");
  const BuiltinDatasetConfig config_b = tiny_config(temp.path() / "b");

  const BuiltinDataset a = build_with_threads(config_a, 1);
  const BuiltinDataset b = build_with_threads(config_b, 2);
  CHECK_FALSE(a.reused);
  CHECK_FALSE(b.reused);
  CHECK(fs::exists(a.dir / "complete.json"));
  CHECK_FALSE(fs::exists(temp.path() / "a.partial"));

  const std::vector<fs::path> files_a = files_under(a.dir), files_b = files_under(b.dir);
  REQUIRE(files_a == files_b);
  CHECK(files_a.size() == static_cast<size_t>(config_a.train_images + config_a.val_images + 3));
  for (const fs::path& file : files_a) {
    CHECK_MESSAGE(read_bytes(a.dir / file) == read_bytes(b.dir / file), "differs: " << file.string());
  }

  const CompositionOptions& options = config_a.composition;
  const SplitUse train = check_split(a.train_json, a.train_images, options, config_a.train_images);
  const SplitUse val = check_split(a.val_json, a.val_images, options, config_a.val_images);
  CHECK(train.instance_set == "train");
  CHECK(val.instance_set == "t10k");

  // No photo in both splits, and each split's photos come from its side of the photo split.
  const BackgroundPhotos photos = list_background_photos(config_a.sources_dir / "backgrounds");
  for (const std::string& photo : train.photos) {
    CHECK(val.photos.count(photo) == 0);
    CHECK(std::find(photos.train.begin(), photos.train.end(), photo) != photos.train.end());
  }
  for (const std::string& photo : val.photos) {
    CHECK(std::find(photos.val.begin(), photos.val.end(), photo) != photos.val.end());
  }

  // Statistics: the returned ones, complete.json's and those recomputed from the JSON agree and add up.
  for (const auto& [split_stats, json_path, images] :
       {std::tuple{a.train, a.train_json, config_a.train_images},
        std::tuple{a.val, a.val_json, config_a.val_images}}) {
    const SplitStats recomputed = split_stats_of(json_path);
    CHECK(split_stats.images == images);
    CHECK(recomputed.images == images);
    CHECK(recomputed.boxes == split_stats.boxes);
    CHECK(recomputed.small == split_stats.small);
    CHECK(recomputed.large == split_stats.large);
    CHECK(split_stats.boxes >= split_stats.images);  // the first object of an image always fits
    CHECK(split_stats.small + split_stats.medium + split_stats.large == split_stats.boxes);
    int64_t per_class_total = 0;
    for (int64_t count : split_stats.per_class)
      per_class_total += count;
    CHECK(per_class_total == split_stats.boxes);
    CHECK(split_stats.min_boxes_per_image >= 1);
    CHECK(split_stats.max_boxes_per_image <= options.max_objects);
    CHECK(split_stats.max_box_side <= std::min(options.width, options.height));
    CHECK(split_stats.small > 0);
    CHECK(split_stats.medium > 0);
  }
  const std::string text = format_split_stats("train", a.train);
  CHECK(text.find("12 images") != std::string::npos);
  CHECK(text.find("small") != std::string::npos);

  // The same configuration is found and reused; another one is not.
  const BuiltinDataset again = build_builtin_dataset(config_a);
  CHECK(again.reused);
  CHECK(again.train.boxes == a.train.boxes);
  BuiltinDatasetConfig other_seed = config_a;
  other_seed.seed = 2;
  CHECK_FALSE(find_builtin_dataset(other_seed).has_value());

  // A folder without complete.json (a build that died half-way) is rebuilt, to the same bytes.
  fs::remove(a.dir / "complete.json");
  fs::remove(a.train_images / "000003.png");
  CHECK_FALSE(find_builtin_dataset(config_a).has_value());
  const BuiltinDataset rebuilt = build_builtin_dataset(config_a);
  CHECK_FALSE(rebuilt.reused);
  REQUIRE(files_under(rebuilt.dir) == files_b);
  CHECK(read_bytes(rebuilt.train_images / "000003.png") == read_bytes(b.train_images / "000003.png"));

  // The contact sheet: a grid of images with a 4-pixel white gap.
  const Image sheet = make_contact_sheet(a.val_json, a.val_images, 4, 2);
  CHECK(sheet.width == 2 * (options.width + 4) + 4);
  CHECK(sheet.height == 2 * (options.height + 4) + 4);
  CHECK(sheet.at(0, 0)[0] == 255);
  CHECK_THROWS_AS(make_contact_sheet(a.val_json, a.val_images, 0, 2), std::invalid_argument);
}

TEST_CASE("compose_image: boxes are the exact extent of the visible masks, occlusion is capped") {
  if (!sources_available()) return;
  const FashionMnist objects = load_fashion_mnist(default_dataset_sources_dir() / "fashion-mnist", "t10k");
  const BackgroundPhotos photos = list_background_photos(default_dataset_sources_dir() / "backgrounds");
  const Image photo = read_image((default_dataset_sources_dir() / "backgrounds" / photos.train[0]).string());

  CompositionOptions options;
  options.width = 192;
  options.height = 160;
  options.max_object_size = 128;
  options.max_occlusion = 0.3;
  int placed = 0, hidden_somewhat = 0;
  for (uint64_t seed = 0; seed < 6; ++seed) {
    std::vector<ObjectSource> sources;
    for (int k = 0; k < 12; ++k) {
      const int index = static_cast<int>(seed) * 12 + k;
      sources.push_back({objects.image(index), objects.labels[static_cast<size_t>(index)], index});
    }
    const ComposedImage composed = compose_image(photo, sources, options, seed);
    REQUIRE(composed.image.width == options.width);
    REQUIRE(composed.image.height == options.height);
    REQUIRE(composed.owner.size() == static_cast<size_t>(options.width) * options.height);
    CHECK(!composed.objects.empty());
    CHECK(composed.objects.size() <= sources.size());

    // Recompute every extent and area from the owner map, independently of compose_image's bookkeeping.
    const size_t n = composed.objects.size();
    std::vector<int> x0(n, options.width), x1(n, -1), y0(n, options.height), y1(n, -1);
    std::vector<int64_t> area(n, 0);
    int bad_owners = 0;
    for (int y = 0; y < options.height; ++y) {
      for (int x = 0; x < options.width; ++x) {
        const int owner = composed.owner[static_cast<size_t>(y) * options.width + x];
        if (owner < -1 || owner >= static_cast<int>(n)) ++bad_owners;
        if (owner < 0 || owner >= static_cast<int>(n)) continue;
        const auto k = static_cast<size_t>(owner);
        ++area[k];
        x0[k] = std::min(x0[k], x), x1[k] = std::max(x1[k], x);
        y0[k] = std::min(y0[k], y), y1[k] = std::max(y1[k], y);
      }
    }
    REQUIRE(bad_owners == 0);
    int previous_source = -1;
    for (size_t k = 0; k < n; ++k) {
      const ComposedObject& object = composed.objects[k];
      CHECK(object.x == x0[k]);
      CHECK(object.y == y0[k]);
      CHECK(object.width == x1[k] - x0[k] + 1);
      CHECK(object.height == y1[k] - y0[k] + 1);
      CHECK(object.area == area[k]);
      CHECK(object.area <= object.full_area);
      CHECK(static_cast<double>(object.full_area - object.area) <= options.max_occlusion * object.full_area);
      if (object.area < object.full_area) ++hidden_somewhat;
      CHECK(object.label == objects.labels[static_cast<size_t>(object.source_index)]);
      CHECK(object.source_index > previous_source);  // pasting order is the order given
      previous_source = object.source_index;
    }
    placed += static_cast<int>(n);

    const ComposedImage again = compose_image(photo, sources, options, seed);
    CHECK(again.image.pixels == composed.image.pixels);
    CHECK(again.owner == composed.owner);
  }
  CHECK(placed > 30);
  CHECK(hidden_somewhat > 0);  // the cap was exercised, not merely never reached

  // On a flat photo every mask pixel is changed by its object, and the box lies within what it changed.
  const Image flat(300, 240, 90);
  std::vector<ObjectSource> one = {{objects.image(5), objects.labels[5], 5}};
  const ComposedImage single = compose_image(flat, one, options, 11);
  REQUIRE(single.objects.size() == 1);
  const ComposedObject& object = single.objects[0];
  CHECK(object.area == object.full_area);
  // The faint rim (0 < alpha <= 0.5) reaches at most two source pixels beyond the mask (the one-pixel
  // margin plus the filter's reach); a garment's extent spans at least 14 of its 28 source pixels.
  const int rim = 2 + 2 * (std::max(object.width, object.height) + 13) / 14;
  // A flat photo stays one colour through crop, resampling and jitter: read it where the object is not.
  const uint8_t* background = nullptr;
  for (const auto& [x, y] :
       {std::pair{0, 0}, std::pair{options.width - 1, 0}, std::pair{0, options.height - 1},
        std::pair{options.width - 1, options.height - 1}}) {
    if (x < object.x - rim || x >= object.x + object.width + rim || y < object.y - rim ||
        y >= object.y + object.height + rim) {
      background = single.image.at(x, y);
      break;
    }
  }
  REQUIRE(background != nullptr);
  int unchanged_mask_pixels = 0;
  int changed_x0 = options.width, changed_x1 = -1, changed_y0 = options.height, changed_y1 = -1;
  for (int y = 0; y < options.height; ++y) {
    for (int x = 0; x < options.width; ++x) {
      const uint8_t* pixel = single.image.at(x, y);
      const bool changed =
          pixel[0] != background[0] || pixel[1] != background[1] || pixel[2] != background[2];
      if (single.owner[static_cast<size_t>(y) * options.width + x] == 0 && !changed) ++unchanged_mask_pixels;
      if (!changed) continue;
      changed_x0 = std::min(changed_x0, x), changed_x1 = std::max(changed_x1, x);
      changed_y0 = std::min(changed_y0, y), changed_y1 = std::max(changed_y1, y);
    }
  }
  CHECK(unchanged_mask_pixels == 0);
  CHECK(changed_x0 <= object.x);
  CHECK(changed_y0 <= object.y);
  CHECK(changed_x1 >= object.x + object.width - 1);
  CHECK(changed_y1 >= object.y + object.height - 1);
  CHECK(object.x - changed_x0 <= rim);
  CHECK(changed_x1 - (object.x + object.width - 1) <= rim);
  CHECK(object.y - changed_y0 <= rim);
  CHECK(changed_y1 - (object.y + object.height - 1) <= rim);

  // Different seeds give different images.
  const ComposedImage other = compose_image(flat, one, options, 12);
  CHECK(other.image.pixels != single.image.pixels);
}

TEST_CASE("Fashion-MNIST IDX files: the full sets, and damaged files named in the error") {
  if (!sources_available()) return;
  const fs::path directory = default_dataset_sources_dir() / "fashion-mnist";
  const FashionMnist train = load_fashion_mnist(directory, "train");
  CHECK(train.count() == 60000);
  CHECK(train.pixels.size() == size_t{60000} * 28 * 28);
  std::array<int, kFashionMnistClassCount> per_class{};
  for (uint8_t label : train.labels)
    ++per_class[label];
  for (int count : per_class)
    CHECK(count == 6000);
  const FashionMnist test = load_fashion_mnist(directory, "t10k");
  CHECK(test.count() == 10000);

  testing::TempDir temp("idx");
  const std::string labels = read_bytes(directory / "t10k-labels-idx1-ubyte");
  const std::string images = read_bytes(directory / "t10k-images-idx3-ubyte");
  std::ofstream(temp.path() / "t10k-labels-idx1-ubyte", std::ios::binary) << labels;
  std::ofstream(temp.path() / "t10k-images-idx3-ubyte", std::ios::binary)
      << images.substr(0, images.size() - 100);
  try {
    load_fashion_mnist(temp.path(), "t10k");
    FAIL("a truncated image file was accepted");
  } catch (const std::runtime_error& error) {
    const std::string message = error.what();
    CHECK(message.find("t10k-images-idx3-ubyte") != std::string::npos);
    CHECK(message.find("truncated") != std::string::npos);
  }
  std::ofstream(temp.path() / "t10k-labels-idx1-ubyte", std::ios::binary | std::ios::trunc)
      << images.substr(0, 64);
  try {
    load_fashion_mnist(temp.path(), "t10k");
    FAIL("an image file was accepted as labels");
  } catch (const std::runtime_error& error) {
    CHECK(std::string(error.what()).find("not an IDX label file") != std::string::npos);
  }
}

TEST_CASE("bad input: missing or incomplete sources, too few photos, bad options") {
  testing::TempDir temp("bad");
  BuiltinDatasetConfig config = builtin_dataset_preset("tiny");
  config.output_dir = temp.path() / "out";

  config.sources_dir = temp.path() / "no_such_sources";
  try {
    build_builtin_dataset(config);
    FAIL("a missing source folder was accepted");
  } catch (const std::runtime_error& error) {
    const std::string message = error.what();
    CHECK(message.find("no_such_sources") != std::string::npos);
    CHECK(message.find("fetch_dataset_sources.sh") != std::string::npos);
  }
  CHECK_FALSE(fs::exists(config.output_dir));

  // An output folder holding anything else is not replaced (a mistyped --output must not delete files).
  if (sources_available()) {
    BuiltinDatasetConfig into_other = builtin_dataset_preset("tiny");
    into_other.output_dir = temp.path() / "somebodys_folder";
    fs::create_directories(into_other.output_dir);
    std::ofstream(into_other.output_dir / "thesis.tex") << "precious";
    CHECK_THROWS_WITH_AS(build_builtin_dataset(into_other), doctest::Contains("thesis.tex"),
                         std::runtime_error);
    CHECK(fs::exists(into_other.output_dir / "thesis.tex"));
  }

  // Folders present but not marked complete (a fetch that died half-way).
  config.sources_dir = temp.path() / "sources";
  fs::create_directories(config.sources_dir / "fashion-mnist");
  fs::create_directories(config.sources_dir / "backgrounds");
  try {
    build_builtin_dataset(config);
    FAIL("incomplete sources were accepted");
  } catch (const std::runtime_error& error) {
    const std::string message = error.what();
    CHECK(message.find("fashion-mnist") != std::string::npos);
    CHECK(message.find("incomplete") != std::string::npos);
  }

  CHECK_THROWS_WITH_AS(load_fashion_mnist(temp.path() / "sources" / "fashion-mnist", "train"),
                       doctest::Contains("train-images-idx3-ubyte"), std::runtime_error);
  CHECK_THROWS_AS(load_fashion_mnist(temp.path(), "validation"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(list_background_photos(temp.path() / "none"), doctest::Contains("none"),
                       std::runtime_error);
  write_png((config.sources_dir / "backgrounds" / "a.png").string(), Image(20, 20, 128));
  write_png((config.sources_dir / "backgrounds" / "b.png").string(), Image(20, 20, 60));
  CHECK_THROWS_WITH_AS(list_background_photos(config.sources_dir / "backgrounds"),
                       doctest::Contains("need at least 3"), std::runtime_error);
  write_image((config.sources_dir / "backgrounds" / "c.jpg").string(), Image(20, 20, 30));
  std::ofstream(config.sources_dir / "backgrounds" / "notes.txt") << "not a photo";
  const BackgroundPhotos three = list_background_photos(config.sources_dir / "backgrounds");
  CHECK(three.train == std::vector<std::string>{"a.png", "b.png"});
  CHECK(three.val == std::vector<std::string>{"c.jpg"});

  BuiltinDatasetConfig no_val = builtin_dataset_preset("tiny");
  no_val.val_images = 0;
  CHECK_THROWS_AS(build_builtin_dataset(no_val), std::invalid_argument);
  CHECK_THROWS_AS(builtin_dataset_preset("huge"), std::invalid_argument);

  const Image photo(64, 64, 100);
  CompositionOptions options;
  options.width = 8;
  CHECK_THROWS_AS(compose_image(photo, {}, options, 0), std::invalid_argument);
  options = CompositionOptions{};
  options.max_occlusion = 1.0;
  CHECK_THROWS_AS(compose_image(photo, {}, options, 0), std::invalid_argument);
  options = CompositionOptions{};
  options.min_object_size = 50;
  options.max_object_size = 20;
  CHECK_THROWS_AS(compose_image(photo, {}, options, 0), std::invalid_argument);
  CHECK_THROWS_AS(compose_image(Image(), {}, CompositionOptions{}, 0), std::invalid_argument);
  std::vector<uint8_t> blank(28 * 28, 200);
  const std::vector<ObjectSource> bad_label = {{blank.data(), 10, 0}};
  CHECK_THROWS_AS(compose_image(photo, bad_label, CompositionOptions{}, 0), std::invalid_argument);
}
