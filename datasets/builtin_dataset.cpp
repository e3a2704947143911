#include "datasets/builtin_dataset.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <numbers>
#include <sstream>
#include <stdexcept>

#include "datasets/draw.h"

namespace icd {

const std::array<const char*, kFashionMnistClassCount> kFashionMnistClassNames = {
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"};

namespace {

namespace fs = std::filesystem;
using ordered_json = nlohmann::ordered_json;

// Bumped whenever a change to the builder changes its output, so cached builds are rebuilt.
constexpr int kBuilderVersion = 2;
constexpr const char* kFetchHint = "run scripts/fetch_dataset_sources.sh (scripts/setup.sh calls it)";

// ---------------------------------------------------------------------------------------------------
// Random numbers: SplitMix64, with our own conversions to ranges, because the standard distributions
// are allowed to differ between library implementations and the dataset must not.

uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// A seed for a sub-stream, e.g. derive_seed(derive_seed(seed, split), image_index).
uint64_t derive_seed(uint64_t seed, uint64_t salt) {
  uint64_t state = seed ^ (salt * 0xD1B54A32D192ED03ull);
  splitmix64(state);
  return splitmix64(state);
}

class Random {
 public:
  explicit Random(uint64_t seed) : state_(seed) {}
  uint64_t next() { return splitmix64(state_); }
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }  // [0, 1)
  double uniform(double low, double high) { return low + (high - low) * uniform(); }
  // Uniform in [low, high], both inclusive (Lemire's multiply-shift; the bias is below 2^-32).
  int uniform_int(int low, int high) {
    const uint64_t range = static_cast<uint64_t>(high - low) + 1;
    return low + static_cast<int>((static_cast<unsigned __int128>(next()) * range) >> 64);
  }
  bool coin() { return (next() >> 63) != 0; }

 private:
  uint64_t state_;
};

// ---------------------------------------------------------------------------------------------------
// Fashion-MNIST IDX files: big-endian int32 magic (0x00000801 labels, 0x00000803 images), the sizes,
// then unsigned bytes.

std::vector<uint8_t> read_file_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("builtin dataset: cannot open " + path.string() + "; " + kFetchHint);
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  in.seekg(0, std::ios::beg);
  std::vector<uint8_t> bytes(static_cast<size_t>(std::max<std::streamoff>(size, 0)));
  in.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  if (!in) throw std::runtime_error("builtin dataset: failed reading " + path.string());
  return bytes;
}

uint32_t read_big_endian(const std::vector<uint8_t>& bytes, size_t offset) {
  return (uint32_t{bytes[offset]} << 24) | (uint32_t{bytes[offset + 1]} << 16) |
         (uint32_t{bytes[offset + 2]} << 8) | uint32_t{bytes[offset + 3]};
}

// ---------------------------------------------------------------------------------------------------
// Resampling with a separable triangle filter: bilinear when enlarging, and when shrinking by s a
// triangle s pixels wide on each side, which averages every source pixel instead of skipping some
// (the antialiasing of PIL's BILINEAR). Samples beyond the source edge repeat the edge.

struct FilterTaps {
  std::vector<int> offsets;  // output i uses indices/weights [offsets[i], offsets[i + 1])
  std::vector<int> indices;
  std::vector<float> weights;
};

// Output pixel i covers source coordinates start + [i, i + 1) * extent / out_size (pixel j of the
// source covers [j, j + 1)).
FilterTaps make_filter_taps(double start, double extent, int source_size, int out_size) {
  FilterTaps taps;
  taps.offsets.reserve(static_cast<size_t>(out_size) + 1);
  taps.offsets.push_back(0);
  const double scale = extent / out_size;
  const double radius = std::max(1.0, scale);
  for (int i = 0; i < out_size; ++i) {
    const double center = start + (i + 0.5) * scale;
    const int first = static_cast<int>(std::floor(center - radius - 0.5));
    const int last = static_cast<int>(std::ceil(center + radius - 0.5));
    const size_t begin = taps.weights.size();
    double total = 0;
    for (int j = first; j <= last; ++j) {
      const double weight = 1.0 - std::abs(j + 0.5 - center) / radius;
      if (weight <= 0) continue;
      taps.indices.push_back(std::clamp(j, 0, source_size - 1));
      taps.weights.push_back(static_cast<float>(weight));
      total += weight;
    }
    for (size_t k = begin; k < taps.weights.size(); ++k) {
      taps.weights[k] = static_cast<float>(taps.weights[k] / total);
    }
    taps.offsets.push_back(static_cast<int>(taps.weights.size()));
  }
  return taps;
}

// Resamples the rectangle (x0, y0, width, height) of an interleaved image with `channels` channels to
// out_width x out_height floats.
template <typename T>
std::vector<float> resample(const T* source, int source_width, int source_height, int channels, double x0,
                            double y0, double width, double height, int out_width, int out_height) {
  const FilterTaps columns = make_filter_taps(x0, width, source_width, out_width);
  const FilterTaps rows = make_filter_taps(y0, height, source_height, out_height);
  const auto [lowest_row, highest_row] = std::minmax_element(rows.indices.begin(), rows.indices.end());
  const int row_begin = *lowest_row;
  const int row_count = *highest_row - row_begin + 1;
  const size_t out_row_size = static_cast<size_t>(out_width) * channels;

  std::vector<float> horizontal(static_cast<size_t>(row_count) * out_row_size, 0.0f);
  for (int r = 0; r < row_count; ++r) {
    const T* source_row = source + static_cast<size_t>(row_begin + r) * source_width * channels;
    float* out_row = horizontal.data() + static_cast<size_t>(r) * out_row_size;
    for (int x = 0; x < out_width; ++x) {
      for (int k = columns.offsets[x]; k < columns.offsets[x + 1]; ++k) {
        const T* pixel = source_row + static_cast<size_t>(columns.indices[k]) * channels;
        const float weight = columns.weights[k];
        for (int c = 0; c < channels; ++c)
          out_row[x * channels + c] += weight * static_cast<float>(pixel[c]);
      }
    }
  }

  std::vector<float> out(static_cast<size_t>(out_height) * out_row_size, 0.0f);
  for (int y = 0; y < out_height; ++y) {
    float* out_row = out.data() + static_cast<size_t>(y) * out_row_size;
    for (int k = rows.offsets[y]; k < rows.offsets[y + 1]; ++k) {
      const float* in_row =
          horizontal.data() + static_cast<size_t>(rows.indices[k] - row_begin) * out_row_size;
      const float weight = rows.weights[k];
      for (size_t i = 0; i < out_row_size; ++i)
        out_row[i] += weight * in_row[i];
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------
// Composition.

// Alpha of a Fashion-MNIST intensity v in [0, 255]. Its background is 0 and a dark garment's body is
// as faint as 20-60, so the ramp is steep: opaque from v = 32 up, a soft rim below. (With alpha = v / 255
// a black coat would be a ghost whose mask is a few bright seams.) alpha > 0.5 exactly when v > 16;
// at that threshold 96% of the garments are one connected piece.
float alpha_of_intensity(float v) {
  return std::min(1.0f, v * (1.0f / 32.0f));
}
constexpr int kMaskIntensity = 17;  // the smallest 8-bit intensity with alpha > 0.5

// Intensity that maps to full brightness when shading: the 90th percentile of the garment's mask, so a
// dark garment with a few bright seams is not shaded almost black.
float shading_reference(const uint8_t* pixels) {
  std::vector<uint8_t> mask_values;
  for (int i = 0; i < FashionMnist::kSide * FashionMnist::kSide; ++i) {
    if (pixels[i] >= kMaskIntensity) mask_values.push_back(pixels[i]);
  }
  if (mask_values.empty()) return 255.0f;
  const auto nth = mask_values.begin() + static_cast<std::ptrdiff_t>(mask_values.size() * 9 / 10);
  std::nth_element(mask_values.begin(), nth, mask_values.end());
  return static_cast<float>(*nth);
}

struct Colour {
  float r = 0, g = 0, b = 0;
};

Colour random_colour(Random& random) {
  // HSV with a saturated, not too dark value, converted to RGB in [0, 255].
  const double hue = random.uniform() * 6.0;
  const double saturation = random.uniform(0.45, 1.0);
  const double value = random.uniform(0.55, 1.0);
  const int sector = std::min(static_cast<int>(hue), 5);
  const double fraction = hue - sector;
  const double p = value * (1 - saturation), q = value * (1 - saturation * fraction);
  const double t = value * (1 - saturation * (1 - fraction));
  double r = 0, g = 0, b = 0;
  switch (sector) {
    case 0:
      r = value, g = t, b = p;
      break;
    case 1:
      r = q, g = value, b = p;
      break;
    case 2:
      r = p, g = value, b = t;
      break;
    case 3:
      r = p, g = q, b = value;
      break;
    case 4:
      r = t, g = p, b = value;
      break;
    default:
      r = value, g = p, b = q;
      break;
  }
  return {static_cast<float>(r * 255), static_cast<float>(g * 255), static_cast<float>(b * 255)};
}

// The colour of an object before shading: plain, stripes, checks or a linear gradient.
struct Texture {
  enum class Kind { plain, stripes, checks, gradient } kind = Kind::plain;
  Colour first, second;
  double cos_angle = 1, sin_angle = 0;
  double period = 4;
  double centre_x = 0, centre_y = 0, span = 1;

  Colour at(int x, int y) const {
    switch (kind) {
      case Kind::plain:
        return first;
      case Kind::stripes: {
        const double t = (x * cos_angle + y * sin_angle) / period;
        return t - std::floor(t) < 0.5 ? first : second;
      }
      case Kind::checks: {
        const auto cell = static_cast<int64_t>(std::floor(x / period) + std::floor(y / period));
        return (cell & 1) == 0 ? first : second;
      }
      case Kind::gradient: {
        const double along = ((x - centre_x) * cos_angle + (y - centre_y) * sin_angle) / span + 0.5;
        const auto t = static_cast<float>(std::clamp(along, 0.0, 1.0));
        return {first.r + t * (second.r - first.r), first.g + t * (second.g - first.g),
                first.b + t * (second.b - first.b)};
      }
    }
    return first;
  }
};

Texture random_texture(Random& random, int sprite_width, int sprite_height) {
  Texture texture;
  const double pick = random.uniform();
  texture.kind = pick < 0.35   ? Texture::Kind::plain
                 : pick < 0.6  ? Texture::Kind::stripes
                 : pick < 0.75 ? Texture::Kind::checks
                               : Texture::Kind::gradient;
  texture.first = random_colour(random);
  texture.second = random_colour(random);
  const double angle = random.uniform(0.0, std::numbers::pi);
  texture.cos_angle = std::cos(angle);
  texture.sin_angle = std::sin(angle);
  const int long_side = std::max(sprite_width, sprite_height);
  texture.period = random.uniform(2.0, std::max(3.0, long_side / 4.0));
  texture.centre_x = sprite_width / 2.0;
  texture.centre_y = sprite_height / 2.0;
  texture.span = std::max(1, long_side);
  return texture;
}

// A garment scaled for pasting: per pixel its alpha and its colour (texture shaded by the intensity).
struct Sprite {
  int width = 0, height = 0;
  std::vector<float> alpha;
  std::vector<Colour> colour;
  int64_t mask_pixels = 0;  // pixels with alpha > 0.5
};

// Empty (width 0) when the garment has no pixel with alpha > 0.5.
Sprite make_sprite(const uint8_t* pixels, double long_side, const CompositionOptions& options,
                   Random& random) {
  constexpr int side = FashionMnist::kSide;
  int x_min = side, x_max = -1, y_min = side, y_max = -1;
  for (int y = 0; y < side; ++y) {
    for (int x = 0; x < side; ++x) {
      if (pixels[y * side + x] < kMaskIntensity) continue;
      x_min = std::min(x_min, x), x_max = std::max(x_max, x);
      y_min = std::min(y_min, y), y_max = std::max(y_max, y);
    }
  }
  Sprite sprite;
  if (x_max < 0) return sprite;
  // One pixel of margin keeps the faint rim that fades the garment into the background.
  const int crop_x0 = std::max(0, x_min - 1), crop_x1 = std::min(side - 1, x_max + 1);
  const int crop_y0 = std::max(0, y_min - 1), crop_y1 = std::min(side - 1, y_max + 1);
  const int crop_width = crop_x1 - crop_x0 + 1, crop_height = crop_y1 - crop_y0 + 1;
  double scale = long_side / std::max(x_max - x_min + 1, y_max - y_min + 1);
  scale = std::min({scale, static_cast<double>(options.width) / crop_width,
                    static_cast<double>(options.height) / crop_height});
  sprite.width = std::clamp(static_cast<int>(std::lround(crop_width * scale)), 1, options.width);
  sprite.height = std::clamp(static_cast<int>(std::lround(crop_height * scale)), 1, options.height);

  const std::vector<float> intensity =
      resample(pixels, side, side, 1, crop_x0, crop_y0, crop_width, crop_height, sprite.width, sprite.height);
  const float reference = shading_reference(pixels);
  const Texture texture = random_texture(random, sprite.width, sprite.height);
  const size_t count = intensity.size();
  sprite.alpha.resize(count);
  sprite.colour.resize(count);
  for (int y = 0; y < sprite.height; ++y) {
    for (int x = 0; x < sprite.width; ++x) {
      const size_t i = static_cast<size_t>(y) * sprite.width + x;
      sprite.alpha[i] = alpha_of_intensity(intensity[i]);
      if (sprite.alpha[i] > 0.5f) ++sprite.mask_pixels;
      const float shade = 0.35f + 0.65f * std::min(1.0f, intensity[i] / reference);
      const Colour base = texture.at(x, y);
      sprite.colour[i] = {base.r * shade, base.g * shade, base.b * shade};
    }
  }
  if (sprite.mask_pixels == 0) sprite.width = 0;
  return sprite;
}

void check_options(const CompositionOptions& options) {
  auto fail = [](const std::string& what) { throw std::invalid_argument("compose_image: " + what); };
  if (options.width < 16 || options.height < 16 || options.width > 8192 || options.height > 8192) {
    fail("width x height must be within 16..8192, got " + std::to_string(options.width) + " x " +
         std::to_string(options.height));
  }
  if (options.min_objects < 0 || options.max_objects < options.min_objects || options.max_objects > 1000) {
    fail("need 0 <= min_objects <= max_objects <= 1000, got " + std::to_string(options.min_objects) + ".." +
         std::to_string(options.max_objects));
  }
  if (!(options.min_object_size >= 2) || !(options.max_object_size >= options.min_object_size)) {
    fail("need 2 <= min_object_size <= max_object_size, got " + std::to_string(options.min_object_size) +
         ".." + std::to_string(options.max_object_size));
  }
  if (!(options.max_occlusion >= 0 && options.max_occlusion < 1)) {
    fail("max_occlusion must be in [0, 1), got " + std::to_string(options.max_occlusion));
  }
  if (options.placement_attempts < 1) fail("placement_attempts must be at least 1");
}

// ---------------------------------------------------------------------------------------------------
// Building.

struct ImagePlan {
  int photo = 0;             // index into the split's photos
  int64_t first_object = 0;  // position in the split's object order
  int object_count = 0;
  uint64_t compose_seed = 0;
};

uint64_t split_salt(const std::string& split) {
  return split == "train" ? 1 : 2;
}

std::vector<ImagePlan> plan_split(const BuiltinDatasetConfig& config, const std::string& split, int images,
                                  int photo_count) {
  const uint64_t split_seed = derive_seed(config.seed, split_salt(split));
  std::vector<ImagePlan> plans(static_cast<size_t>(images));
  int64_t next_object = 0;
  for (int i = 0; i < images; ++i) {
    Random random(derive_seed(split_seed, 2 * static_cast<uint64_t>(i)));
    ImagePlan& plan = plans[static_cast<size_t>(i)];
    plan.photo = random.uniform_int(0, photo_count - 1);
    plan.object_count = random.uniform_int(config.composition.min_objects, config.composition.max_objects);
    plan.first_object = next_object;
    plan.compose_seed = derive_seed(split_seed, 2 * static_cast<uint64_t>(i) + 1);
    next_object += plan.object_count;
  }
  return plans;
}

// The split's objects in a shuffled order (Fisher-Yates with our generator).
std::vector<int> object_order(const BuiltinDatasetConfig& config, const std::string& split, int count) {
  std::vector<int> order(static_cast<size_t>(count));
  for (int i = 0; i < count; ++i)
    order[static_cast<size_t>(i)] = i;
  Random random(derive_seed(derive_seed(config.seed, split_salt(split)), 0xFA5410Full));
  for (int i = count - 1; i > 0; --i)
    std::swap(order[static_cast<size_t>(i)], order[static_cast<size_t>(random.uniform_int(0, i))]);
  return order;
}

std::string image_file_name(int64_t image_id) {
  char name[32];
  std::snprintf(name, sizeof(name), "%06lld.png", static_cast<long long>(image_id));
  return name;
}

ordered_json categories_json() {
  ordered_json categories = ordered_json::array();
  for (int label = 0; label < kFashionMnistClassCount; ++label) {
    categories.push_back({{"id", label + 1},
                          {"name", kFashionMnistClassNames[static_cast<size_t>(label)]},
                          {"supercategory", "fashion"}});
  }
  return categories;
}

ordered_json config_json(const BuiltinDatasetConfig& config, const BackgroundPhotos& photos) {
  const CompositionOptions& c = config.composition;
  return {{"builder_version", kBuilderVersion},
          {"seed", config.seed},
          {"train_images", config.train_images},
          {"val_images", config.val_images},
          {"composition",
           {{"width", c.width},
            {"height", c.height},
            {"min_objects", c.min_objects},
            {"max_objects", c.max_objects},
            {"min_object_size", c.min_object_size},
            {"max_object_size", c.max_object_size},
            {"max_occlusion", c.max_occlusion},
            {"placement_attempts", c.placement_attempts}}},
          {"backgrounds", {{"train", photos.train}, {"val", photos.val}}}};
}

ordered_json stats_json(const SplitStats& s) {
  return {{"images", s.images},
          {"boxes", s.boxes},
          {"boxes_per_image", s.boxes_per_image()},
          {"min_boxes_per_image", s.min_boxes_per_image},
          {"max_boxes_per_image", s.max_boxes_per_image},
          {"small", s.small},
          {"medium", s.medium},
          {"large", s.large},
          {"min_box_side", s.min_box_side},
          {"max_box_side", s.max_box_side},
          {"per_class", s.per_class}};
}

SplitStats stats_from_json(const nlohmann::json& json) {
  SplitStats s;
  s.images = json.at("images").get<int64_t>();
  s.boxes = json.at("boxes").get<int64_t>();
  s.min_boxes_per_image = json.at("min_boxes_per_image").get<int64_t>();
  s.max_boxes_per_image = json.at("max_boxes_per_image").get<int64_t>();
  s.small = json.at("small").get<int64_t>();
  s.medium = json.at("medium").get<int64_t>();
  s.large = json.at("large").get<int64_t>();
  s.min_box_side = json.at("min_box_side").get<int64_t>();
  s.max_box_side = json.at("max_box_side").get<int64_t>();
  s.per_class = json.at("per_class").get<std::array<int64_t, kFashionMnistClassCount>>();
  return s;
}

SplitStats stats_of_coco(const nlohmann::json& coco) {
  SplitStats s;
  s.images = static_cast<int64_t>(coco.at("images").size());
  std::map<int64_t, int64_t> boxes_per_image;
  for (const auto& image : coco.at("images"))
    boxes_per_image[image.at("id").get<int64_t>()] = 0;
  s.min_box_side = std::numeric_limits<int64_t>::max();
  for (const auto& annotation : coco.at("annotations")) {
    ++s.boxes;
    ++boxes_per_image[annotation.at("image_id").get<int64_t>()];
    const double area = annotation.at("area").get<double>();
    if (area < 32.0 * 32.0) {
      ++s.small;
    } else if (area < 96.0 * 96.0) {
      ++s.medium;
    } else {
      ++s.large;
    }
    const auto& box = annotation.at("bbox");
    const auto side = static_cast<int64_t>(std::max(box.at(2).get<double>(), box.at(3).get<double>()));
    s.min_box_side = std::min(s.min_box_side, side);
    s.max_box_side = std::max(s.max_box_side, side);
    const int64_t category = annotation.at("category_id").get<int64_t>();
    if (category >= 1 && category <= kFashionMnistClassCount)
      ++s.per_class[static_cast<size_t>(category - 1)];
  }
  if (s.boxes == 0) s.min_box_side = 0;
  if (!boxes_per_image.empty()) {
    s.min_boxes_per_image = std::numeric_limits<int64_t>::max();
    for (const auto& [id, count] : boxes_per_image) {
      s.min_boxes_per_image = std::min(s.min_boxes_per_image, count);
      s.max_boxes_per_image = std::max(s.max_boxes_per_image, count);
    }
  }
  return s;
}

nlohmann::json read_json_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("builtin dataset: cannot open " + path.string());
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& error) {
    throw std::runtime_error("builtin dataset: " + path.string() + " is not valid JSON: " + error.what());
  }
}

void write_text_file(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) throw std::runtime_error("builtin dataset: cannot write " + path.string());
  out << text;
  out.flush();
  if (!out) throw std::runtime_error("builtin dataset: failed writing " + path.string());
}

BuiltinDataset dataset_at(const fs::path& dir) {
  BuiltinDataset dataset;
  dataset.dir = dir;
  dataset.train_json = dir / "train.json";
  dataset.val_json = dir / "val.json";
  dataset.train_images = dir / "train";
  dataset.val_images = dir / "val";
  return dataset;
}

// Composes and writes one split's images; returns its COCO JSON.
ordered_json build_split(const BuiltinDatasetConfig& config, const std::string& split,
                         const FashionMnist& objects, const std::vector<std::string>& photo_names, int images,
                         const fs::path& images_dir, const BuildProgress& progress) {
  const std::vector<ImagePlan> plans =
      plan_split(config, split, images, static_cast<int>(photo_names.size()));
  const std::vector<int> order = object_order(config, split, objects.count());

  // Decode only the photos this split uses.
  std::vector<Image> photos(photo_names.size());
  std::vector<char> used(photo_names.size(), 0);
  for (const ImagePlan& plan : plans)
    used[static_cast<size_t>(plan.photo)] = 1;
  const fs::path backgrounds_dir = config.sources_dir / "backgrounds";
  for (size_t p = 0; p < photo_names.size(); ++p) {
    if (used[p]) photos[p] = read_image((backgrounds_dir / photo_names[p]).string());
  }

  fs::create_directories(images_dir);
  std::vector<std::vector<ComposedObject>> results(static_cast<size_t>(images));
  std::atomic<int> done{0};
  std::atomic<bool> failed{false};
  std::string first_error;

#pragma omp parallel for schedule(dynamic, 4)
  for (int i = 0; i < images; ++i) {
    if (failed.load()) continue;
    try {
      const ImagePlan& plan = plans[static_cast<size_t>(i)];
      std::vector<ObjectSource> sources;
      sources.reserve(static_cast<size_t>(plan.object_count));
      for (int k = 0; k < plan.object_count; ++k) {
        const int index = order[static_cast<size_t>((plan.first_object + k) % objects.count())];
        sources.push_back({objects.image(index), objects.labels[static_cast<size_t>(index)], index});
      }
      ComposedImage composed = compose_image(photos[static_cast<size_t>(plan.photo)], sources,
                                             config.composition, plan.compose_seed);
      write_png((images_dir / image_file_name(i + 1)).string(), composed.image);
      results[static_cast<size_t>(i)] = std::move(composed.objects);
      const int finished = ++done;
      if (progress) {
#pragma omp critical(icd_builtin_dataset_progress)
        progress(split, finished, images);
      }
    } catch (const std::exception& error) {
#pragma omp critical(icd_builtin_dataset_error)
      {
        if (!failed.load()) first_error = error.what();
        failed = true;
      }
    }
  }
  if (failed) throw std::runtime_error("builtin dataset: building " + split + ": " + first_error);

  ordered_json coco;
  coco["info"] = {{"description", "icd built-in dataset: Fashion-MNIST objects on real photos"},
                  {"split", split},
                  {"objects", "Fashion-MNIST " + objects.split},
                  {"seed", config.seed}};
  coco["images"] = ordered_json::array();
  coco["annotations"] = ordered_json::array();
  int64_t annotation_id = 0;
  for (int i = 0; i < images; ++i) {
    const int64_t image_id = i + 1;
    coco["images"].push_back(
        {{"id", image_id},
         {"file_name", image_file_name(image_id)},
         {"width", config.composition.width},
         {"height", config.composition.height},
         {"background", photo_names[static_cast<size_t>(plans[static_cast<size_t>(i)].photo)]}});
    for (const ComposedObject& object : results[static_cast<size_t>(i)]) {
      coco["annotations"].push_back({{"id", ++annotation_id},
                                     {"image_id", image_id},
                                     {"category_id", object.label + 1},
                                     {"bbox", {object.x, object.y, object.width, object.height}},
                                     {"area", object.area},
                                     {"iscrowd", 0},
                                     {"source", {{"set", objects.split}, {"index", object.source_index}}}});
    }
  }
  coco["categories"] = categories_json();
  return coco;
}

void check_config(const BuiltinDatasetConfig& config) {
  if (config.output_dir.empty()) throw std::invalid_argument("builtin dataset: output_dir is empty");
  if (config.train_images < 1 || config.val_images < 1) {
    throw std::invalid_argument("builtin dataset: need at least one train and one val image, got " +
                                std::to_string(config.train_images) + " / " +
                                std::to_string(config.val_images));
  }
  check_options(config.composition);
}

// A build replaces its output folder; refuse when that folder holds anything a build does not write,
// so a mistyped --output cannot delete someone's files.
void check_replaceable(const fs::path& output_dir) {
  if (!fs::exists(output_dir)) return;
  if (!fs::is_directory(output_dir)) {
    throw std::runtime_error("builtin dataset: output " + output_dir.string() +
                             " exists and is not a folder");
  }
  for (const auto& entry : fs::directory_iterator(output_dir)) {
    const std::string name = entry.path().filename().string();
    if (name != "train" && name != "val" && name != "train.json" && name != "val.json" &&
        name != "complete.json") {
      throw std::runtime_error("builtin dataset: refusing to replace " + output_dir.string() + ": it holds " +
                               name + ", which is not part of a built-in dataset");
    }
  }
}

void check_sources(const fs::path& sources_dir) {
  if (!fs::is_directory(sources_dir)) {
    throw std::runtime_error("builtin dataset: source folder " + sources_dir.string() + " does not exist; " +
                             kFetchHint);
  }
  for (const char* part : {"fashion-mnist", "backgrounds"}) {
    const fs::path folder = sources_dir / part;
    if (!fs::is_directory(folder)) {
      throw std::runtime_error("builtin dataset: source folder " + folder.string() + " does not exist; " +
                               kFetchHint);
    }
    if (!fs::exists(folder / ".complete")) {
      throw std::runtime_error("builtin dataset: source folder " + folder.string() +
                               " is incomplete (no .complete marker); " + kFetchHint);
    }
  }
}

}  // namespace

fs::path icd_cache_dir() {
  if (const char* cache = std::getenv("ICD_CACHE"); cache != nullptr && *cache != '\0') return cache;
  if (const char* home = std::getenv("HOME"); home != nullptr && *home != '\0')
    return fs::path(home) / ".cache" / "icd";
  throw std::runtime_error(
      "builtin dataset: neither ICD_CACHE nor HOME is set; cannot find the cache folder");
}

fs::path default_dataset_sources_dir() {
  return icd_cache_dir() / "dataset-sources";
}

fs::path default_builtin_dataset_dir(const std::string& preset) {
  return icd_cache_dir() / "datasets" / ("builtin-" + preset);
}

FashionMnist load_fashion_mnist(const fs::path& directory, const std::string& split) {
  if (split != "train" && split != "t10k") {
    throw std::invalid_argument("load_fashion_mnist: split must be \"train\" or \"t10k\", got \"" + split +
                                "\"");
  }
  const fs::path images_path = directory / (split + "-images-idx3-ubyte");
  const fs::path labels_path = directory / (split + "-labels-idx1-ubyte");
  const std::vector<uint8_t> images = read_file_bytes(images_path);
  const std::vector<uint8_t> labels = read_file_bytes(labels_path);
  auto fail = [](const fs::path& path, const std::string& what) {
    throw std::runtime_error("load_fashion_mnist: " + path.string() + ": " + what);
  };
  if (labels.size() < 8 || read_big_endian(labels, 0) != 0x00000801)
    fail(labels_path, "not an IDX label file");
  if (images.size() < 16 || read_big_endian(images, 0) != 0x00000803)
    fail(images_path, "not an IDX image file");
  const uint32_t count = read_big_endian(labels, 4);
  if (read_big_endian(images, 4) != count) {
    fail(images_path, "holds " + std::to_string(read_big_endian(images, 4)) + " images but " +
                          labels_path.string() + " holds " + std::to_string(count) + " labels");
  }
  if (read_big_endian(images, 8) != FashionMnist::kSide ||
      read_big_endian(images, 12) != FashionMnist::kSide) {
    fail(images_path, "images are not 28 x 28");
  }
  const size_t pixel_bytes = static_cast<size_t>(count) * FashionMnist::kSide * FashionMnist::kSide;
  if (labels.size() != 8 + static_cast<size_t>(count)) fail(labels_path, "truncated or too long");
  if (images.size() != 16 + pixel_bytes) fail(images_path, "truncated or too long");

  FashionMnist set;
  set.split = split;
  set.labels.assign(labels.begin() + 8, labels.end());
  set.pixels.assign(images.begin() + 16, images.end());
  for (size_t i = 0; i < set.labels.size(); ++i) {
    if (set.labels[i] >= kFashionMnistClassCount) {
      fail(labels_path,
           "label " + std::to_string(set.labels[i]) + " of image " + std::to_string(i) + " is not 0..9");
    }
  }
  return set;
}

BackgroundPhotos list_background_photos(const fs::path& directory) {
  if (!fs::is_directory(directory)) {
    throw std::runtime_error("builtin dataset: background folder " + directory.string() +
                             " does not exist; " + kFetchHint);
  }
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(directory)) {
    if (!entry.is_regular_file()) continue;
    std::string extension = entry.path().extension().string();
    std::transform(extension.begin(), extension.end(), extension.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    if (extension == ".jpg" || extension == ".jpeg" || extension == ".png")
      names.push_back(entry.path().filename().string());
  }
  if (names.size() < 3) {
    throw std::runtime_error("builtin dataset: background folder " + directory.string() + " holds " +
                             std::to_string(names.size()) +
                             " photos, need at least 3 (val takes every fifth, starting with the third); " +
                             kFetchHint);
  }
  std::sort(names.begin(), names.end());
  BackgroundPhotos photos;
  for (size_t i = 0; i < names.size(); ++i)
    (i % 5 == 2 ? photos.val : photos.train).push_back(names[i]);
  return photos;
}

ComposedImage compose_image(const Image& photo, std::span<const ObjectSource> objects,
                            const CompositionOptions& options, uint64_t seed) {
  check_options(options);
  if (photo.width < 1 || photo.height < 1 ||
      photo.pixels.size() != static_cast<size_t>(photo.width) * photo.height * 3) {
    throw std::invalid_argument(
        "compose_image: the photo is empty or its pixel buffer does not match its size");
  }
  const int width = options.width, height = options.height;
  const size_t pixel_count = static_cast<size_t>(width) * height;
  Random random(seed);

  // 1. Background: crop with the output's aspect ratio, resample, flip, jitter.
  const double aspect = static_cast<double>(width) / height;
  const double largest_width = std::min<double>(photo.width, photo.height * aspect);
  const double crop_fraction = random.uniform(0.5, 1.0);
  const double crop_width = largest_width * crop_fraction, crop_height = crop_width / aspect;
  const double crop_x = random.uniform(0.0, photo.width - crop_width);
  const double crop_y = random.uniform(0.0, photo.height - crop_height);
  std::vector<float> canvas = resample(photo.pixels.data(), photo.width, photo.height, 3, crop_x, crop_y,
                                       crop_width, crop_height, width, height);
  if (random.coin()) {
    for (int y = 0; y < height; ++y) {
      float* row = canvas.data() + static_cast<size_t>(y) * width * 3;
      for (int x = 0; x < width / 2; ++x) {
        for (int c = 0; c < 3; ++c)
          std::swap(row[x * 3 + c], row[(width - 1 - x) * 3 + c]);
      }
    }
  }
  const auto brightness = static_cast<float>(random.uniform(0.7, 1.3));
  const auto contrast = static_cast<float>(random.uniform(0.7, 1.3));
  const auto saturation = static_cast<float>(random.uniform(0.6, 1.4));
  double grey_sum = 0;
  for (size_t p = 0; p < pixel_count; ++p) {
    grey_sum += 0.299 * canvas[p * 3] + 0.587 * canvas[p * 3 + 1] + 0.114 * canvas[p * 3 + 2];
  }
  const auto mean_grey = static_cast<float>(grey_sum / static_cast<double>(pixel_count));
  for (size_t p = 0; p < pixel_count; ++p) {
    float* pixel = canvas.data() + p * 3;
    const float grey = 0.299f * pixel[0] + 0.587f * pixel[1] + 0.114f * pixel[2];
    for (int c = 0; c < 3; ++c) {
      const float saturated = grey + saturation * (pixel[c] - grey);
      pixel[c] = brightness * (mean_grey + contrast * (saturated - mean_grey));
    }
  }

  // 2-3. Objects, with the occlusion cap.
  ComposedImage result;
  result.owner.assign(pixel_count, -1);
  std::vector<int64_t> full_area, visible_area;
  std::vector<int64_t> hidden_now;
  const double log_min = std::log(options.min_object_size);
  const double log_max = std::log(
      std::max(options.min_object_size, std::min<double>(options.max_object_size, std::min(width, height))));
  for (const ObjectSource& source : objects) {
    if (source.pixels == nullptr || source.label < 0 || source.label >= kFashionMnistClassCount) {
      throw std::invalid_argument("compose_image: object " + std::to_string(source.index) +
                                  " has no pixels or a label outside 0..9");
    }
    const double long_side = std::exp(random.uniform(log_min, log_max));
    const Sprite sprite = make_sprite(source.pixels, long_side, options, random);
    if (sprite.width == 0) continue;
    const auto placed = static_cast<int16_t>(result.objects.size());
    bool accepted = false;
    int left = 0, top = 0;
    for (int attempt = 0; attempt < options.placement_attempts && !accepted; ++attempt) {
      left = random.uniform_int(0, width - sprite.width);
      top = random.uniform_int(0, height - sprite.height);
      hidden_now.assign(result.objects.size(), 0);
      for (int y = 0; y < sprite.height; ++y) {
        for (int x = 0; x < sprite.width; ++x) {
          if (sprite.alpha[static_cast<size_t>(y) * sprite.width + x] <= 0.5f) continue;
          const int16_t owner = result.owner[static_cast<size_t>(top + y) * width + left + x];
          if (owner >= 0) ++hidden_now[static_cast<size_t>(owner)];
        }
      }
      accepted = true;
      for (size_t k = 0; k < hidden_now.size(); ++k) {
        const int64_t hidden = full_area[k] - visible_area[k] + hidden_now[k];
        if (static_cast<double>(hidden) > options.max_occlusion * static_cast<double>(full_area[k])) {
          accepted = false;
          break;
        }
      }
    }
    if (!accepted) continue;

    for (int y = 0; y < sprite.height; ++y) {
      for (int x = 0; x < sprite.width; ++x) {
        const size_t s = static_cast<size_t>(y) * sprite.width + x;
        const float alpha = sprite.alpha[s];
        if (alpha <= 0.0f) continue;
        const size_t p = static_cast<size_t>(top + y) * width + left + x;
        float* pixel = canvas.data() + p * 3;
        const Colour& colour = sprite.colour[s];
        pixel[0] += alpha * (colour.r - pixel[0]);
        pixel[1] += alpha * (colour.g - pixel[1]);
        pixel[2] += alpha * (colour.b - pixel[2]);
        if (alpha > 0.5f) {
          const int16_t previous = result.owner[p];
          if (previous >= 0) --visible_area[static_cast<size_t>(previous)];
          result.owner[p] = placed;
        }
      }
    }
    full_area.push_back(sprite.mask_pixels);
    visible_area.push_back(sprite.mask_pixels);
    ComposedObject object;
    object.label = source.label;
    object.source_index = source.index;
    object.full_area = sprite.mask_pixels;
    result.objects.push_back(object);
  }

  // 4. Boxes and areas of the visible masks.
  std::vector<int> x_min(result.objects.size(), width), x_max(result.objects.size(), -1);
  std::vector<int> y_min(result.objects.size(), height), y_max(result.objects.size(), -1);
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      const int16_t owner = result.owner[static_cast<size_t>(y) * width + x];
      if (owner < 0) continue;
      const auto k = static_cast<size_t>(owner);
      ++result.objects[k].area;
      x_min[k] = std::min(x_min[k], x), x_max[k] = std::max(x_max[k], x);
      y_min[k] = std::min(y_min[k], y), y_max[k] = std::max(y_max[k], y);
    }
  }
  for (size_t k = 0; k < result.objects.size(); ++k) {
    ComposedObject& object = result.objects[k];
    object.x = x_min[k];
    object.y = y_min[k];
    object.width = x_max[k] - x_min[k] + 1;
    object.height = y_max[k] - y_min[k] + 1;
  }

  result.image = Image(width, height);
  for (size_t i = 0; i < pixel_count * 3; ++i) {
    result.image.pixels[i] = static_cast<uint8_t>(std::lround(std::clamp(canvas[i], 0.0f, 255.0f)));
  }
  return result;
}

BuiltinDatasetConfig builtin_dataset_preset(const std::string& name) {
  BuiltinDatasetConfig config;
  CompositionOptions& c = config.composition;
  if (name == "tiny") {
    config.train_images = 12;
    config.val_images = 6;
    c.width = 160;
    c.height = 128;
    c.max_objects = 8;
    c.max_object_size = 96;
  } else if (name == "default") {
    config.train_images = 4000;
    config.val_images = 500;
  } else if (name == "large") {
    config.train_images = 9000;
    config.val_images = 1000;
    c.width = 640;
    c.height = 512;
    c.max_object_size = 384;
  } else {
    throw std::invalid_argument("builtin dataset: unknown preset \"" + name + "\" (tiny, default, large)");
  }
  config.sources_dir = default_dataset_sources_dir();
  config.output_dir = default_builtin_dataset_dir(name);
  return config;
}

std::optional<BuiltinDataset> find_builtin_dataset(const BuiltinDatasetConfig& config) {
  const fs::path marker = config.output_dir / "complete.json";
  if (!fs::is_regular_file(marker)) return std::nullopt;
  nlohmann::json complete;
  try {
    complete = read_json_file(marker);
    const BackgroundPhotos photos = list_background_photos(config.sources_dir / "backgrounds");
    if (complete.at("config") != nlohmann::json(config_json(config, photos))) return std::nullopt;
    BuiltinDataset dataset = dataset_at(config.output_dir);
    dataset.train = stats_from_json(complete.at("stats").at("train"));
    dataset.val = stats_from_json(complete.at("stats").at("val"));
    dataset.reused = true;
    return dataset;
  } catch (const std::exception&) {
    return std::nullopt;  // an unreadable marker or missing sources: treat as not built
  }
}

BuiltinDataset build_builtin_dataset(const BuiltinDatasetConfig& config, const BuildProgress& progress) {
  check_config(config);
  check_sources(config.sources_dir);
  if (auto existing = find_builtin_dataset(config)) return *existing;

  const BackgroundPhotos photos = list_background_photos(config.sources_dir / "backgrounds");
  const FashionMnist train_objects = load_fashion_mnist(config.sources_dir / "fashion-mnist", "train");
  const FashionMnist val_objects = load_fashion_mnist(config.sources_dir / "fashion-mnist", "t10k");

  check_replaceable(config.output_dir);
  // Build under a temporary name beside the target, then rename: readers never see half a dataset.
  fs::path partial = config.output_dir;
  partial += ".partial";
  fs::remove_all(partial);
  fs::create_directories(partial);
  BuiltinDataset dataset = dataset_at(partial);

  const ordered_json train = build_split(config, "train", train_objects, photos.train, config.train_images,
                                         dataset.train_images, progress);
  const ordered_json val =
      build_split(config, "val", val_objects, photos.val, config.val_images, dataset.val_images, progress);
  write_text_file(dataset.train_json, train.dump(1) + "\n");
  write_text_file(dataset.val_json, val.dump(1) + "\n");
  const SplitStats train_stats = stats_of_coco(nlohmann::json(train));
  const SplitStats val_stats = stats_of_coco(nlohmann::json(val));
  const ordered_json complete = {
      {"config", config_json(config, photos)},
      {"stats", {{"train", stats_json(train_stats)}, {"val", stats_json(val_stats)}}}};
  write_text_file(partial / "complete.json", complete.dump(1) + "\n");

  if (fs::exists(config.output_dir)) fs::remove_all(config.output_dir);
  fs::rename(partial, config.output_dir);
  BuiltinDataset result = dataset_at(config.output_dir);
  result.train = train_stats;
  result.val = val_stats;
  return result;
}

SplitStats split_stats_of(const fs::path& coco_json) {
  return stats_of_coco(read_json_file(coco_json));
}

std::string format_split_stats(const std::string& split, const SplitStats& s) {
  std::ostringstream out;
  char line[256];
  std::snprintf(line, sizeof(line), "%s: %lld images, %lld boxes, %.2f boxes/image (min %lld, max %lld)\n",
                split.c_str(), static_cast<long long>(s.images), static_cast<long long>(s.boxes),
                s.boxes_per_image(), static_cast<long long>(s.min_boxes_per_image),
                static_cast<long long>(s.max_boxes_per_image));
  out << line;
  const double total = std::max<double>(1, static_cast<double>(s.boxes));
  std::snprintf(line, sizeof(line),
                "  COCO size: small %lld (%.1f%%), medium %lld (%.1f%%), large %lld (%.1f%%); box long side "
                "%lld..%lld px\n",
                static_cast<long long>(s.small), 100.0 * s.small / total, static_cast<long long>(s.medium),
                100.0 * s.medium / total, static_cast<long long>(s.large), 100.0 * s.large / total,
                static_cast<long long>(s.min_box_side), static_cast<long long>(s.max_box_side));
  out << line << "  per class:";
  for (int label = 0; label < kFashionMnistClassCount; ++label) {
    out << (label == 0 ? " " : ", ") << kFashionMnistClassNames[static_cast<size_t>(label)] << " "
        << s.per_class[static_cast<size_t>(label)];
  }
  out << "\n";
  return out.str();
}

Image make_contact_sheet(const fs::path& coco_json, const fs::path& images_dir, int count, int columns) {
  if (count < 1 || columns < 1) {
    throw std::invalid_argument("make_contact_sheet: count and columns must be positive, got " +
                                std::to_string(count) + " and " + std::to_string(columns));
  }
  const nlohmann::json coco = read_json_file(coco_json);
  const auto& images = coco.at("images");
  count = std::min<int>(count, static_cast<int>(images.size()));
  if (count == 0) throw std::runtime_error("make_contact_sheet: " + coco_json.string() + " lists no images");
  columns = std::min(columns, count);
  const int rows = (count + columns - 1) / columns;

  std::map<int64_t, std::string> category_names;
  for (const auto& category : coco.at("categories")) {
    category_names[category.at("id").get<int64_t>()] = category.at("name").get<std::string>();
  }
  std::map<int64_t, std::vector<const nlohmann::json*>> annotations_of;
  for (const auto& annotation : coco.at("annotations")) {
    annotations_of[annotation.at("image_id").get<int64_t>()].push_back(&annotation);
  }

  constexpr int kGap = 4;
  int cell_width = 0, cell_height = 0;
  for (int i = 0; i < count; ++i) {
    cell_width = std::max(cell_width, images[static_cast<size_t>(i)].at("width").get<int>());
    cell_height = std::max(cell_height, images[static_cast<size_t>(i)].at("height").get<int>());
  }
  Image sheet(columns * (cell_width + kGap) + kGap, rows * (cell_height + kGap) + kGap, 255);
  for (int i = 0; i < count; ++i) {
    const auto& entry = images[static_cast<size_t>(i)];
    Image image = read_image((images_dir / entry.at("file_name").get<std::string>()).string());
    for (const nlohmann::json* annotation : annotations_of[entry.at("id").get<int64_t>()]) {
      const auto& box = annotation->at("bbox");
      const int x = static_cast<int>(box.at(0).get<double>()), y = static_cast<int>(box.at(1).get<double>());
      const int w = static_cast<int>(box.at(2).get<double>()), h = static_cast<int>(box.at(3).get<double>());
      const int64_t category = annotation->at("category_id").get<int64_t>();
      const Rgb colour = palette_colour(static_cast<int>(category - 1));
      draw_rectangle(image, x, y, x + w - 1, y + h - 1, colour);
      draw_label(image, x, y - text_height() - 2, category_names[category], colour, Rgb{0, 0, 0});
    }
    const int left = kGap + (i % columns) * (cell_width + kGap);
    const int top = kGap + (i / columns) * (cell_height + kGap);
    for (int y = 0; y < image.height; ++y) {
      std::copy_n(image.at(0, y), static_cast<size_t>(image.width) * 3, sheet.at(left, top + y));
    }
  }
  return sheet;
}

}  // namespace icd
