// The detector's input transforms (contract in transforms.h).
#include "datasets/transforms.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>

#include "engine/factory.h"

namespace icd {
namespace {

void check_image(const Image& image, const char* op) {
  if (image.width < 1 || image.height < 1 ||
      image.pixels.size() != static_cast<size_t>(image.width) * image.height * 3) {
    throw std::invalid_argument(std::string(op) +
                                ": image must be at least 1 x 1 with 3 bytes per pixel, got " +
                                std::to_string(image.width) + " x " + std::to_string(image.height) + " and " +
                                std::to_string(image.pixels.size()) + " bytes");
  }
}

std::string size_str(ImageSize size) {
  return std::to_string(size.height) + " x " + std::to_string(size.width);
}

// One output coordinate's two source pixels and the weight of the second, as torch computes them for
// align_corners=False: src = (dst + 0.5) * in / out - 0.5, clamped below at 0.
struct BilinearTap {
  int first = 0, second = 0;
  float weight_second = 0;
};

std::vector<BilinearTap> bilinear_taps(int in, int out) {
  std::vector<BilinearTap> taps(out);
  const float scale = static_cast<float>(in) / static_cast<float>(out);
  for (int d = 0; d < out; ++d) {
    const float src = std::max(scale * (static_cast<float>(d) + 0.5f) - 0.5f, 0.0f);
    const int first = std::min(static_cast<int>(src), in - 1);
    taps[d] = {first, std::min(first + 1, in - 1), src - static_cast<float>(first)};
  }
  return taps;
}

}  // namespace

NormalizeConfig NormalizeConfig::caffe_bgr() {
  return NormalizeConfig{};
}

NormalizeConfig NormalizeConfig::torchvision_rgb() {
  NormalizeConfig config;
  config.order = ChannelOrder::rgb;
  config.mean = {123.675f, 116.28f, 103.53f};
  config.std = {58.395f, 57.12f, 57.375f};
  return config;
}

TransformConfig TransformConfig::train() {
  TransformConfig config;
  config.short_edge_sizes = {640, 672, 704, 736, 768, 800};
  config.flip_probability = 0.5;
  return config;
}

TransformConfig TransformConfig::test() {
  return TransformConfig{};
}

void TransformConfig::validate() const {
  auto bad = [](const std::string& what) { throw std::invalid_argument("TransformConfig: " + what); };
  if (short_edge_sizes.empty()) bad("short_edge_sizes is empty");
  for (int size : short_edge_sizes)
    if (size < 1) bad("short_edge_sizes holds " + std::to_string(size) + " (sizes must be >= 1)");
  if (max_long_edge < 1) bad("max_long_edge must be >= 1, got " + std::to_string(max_long_edge));
  if (!(flip_probability >= 0 && flip_probability <= 1))
    bad("flip_probability must be in [0, 1], got " + std::to_string(flip_probability));
  for (int c = 0; c < 3; ++c) {
    if (!std::isfinite(normalize.mean[c])) bad("normalize.mean[" + std::to_string(c) + "] is not finite");
    if (!std::isfinite(normalize.std[c]) || normalize.std[c] == 0.0f)
      bad("normalize.std[" + std::to_string(c) + "] must be finite and non-zero");
  }
  if (size_divisibility < 1) bad("size_divisibility must be >= 1, got " + std::to_string(size_divisibility));
}

ImageSize shortest_edge_size(ImageSize size, int short_edge, int max_long_edge) {
  if (size.height < 1 || size.width < 1 || short_edge < 1 || max_long_edge < 1) {
    throw std::invalid_argument("shortest_edge_size: sizes must be >= 1, got image " + size_str(size) +
                                ", short edge " + std::to_string(short_edge) + ", max long edge " +
                                std::to_string(max_long_edge));
  }
  const double h = size.height, w = size.width;
  double scale = short_edge / std::min(h, w);
  double new_h, new_w;
  if (h < w) {
    new_h = short_edge;
    new_w = scale * w;
  } else {
    new_h = scale * h;
    new_w = short_edge;
  }
  if (std::max(new_h, new_w) > max_long_edge) {
    scale = max_long_edge / std::max(new_h, new_w);
    new_h *= scale;
    new_w *= scale;
  }
  // int(x + 0.5) as in Python; at least one pixel for extreme aspect ratios.
  return {std::max(1, static_cast<int>(new_h + 0.5)), std::max(1, static_cast<int>(new_w + 0.5))};
}

Image resize_bilinear(const Image& image, ImageSize size) {
  check_image(image, "resize_bilinear");
  if (size.height < 1 || size.width < 1)
    throw std::invalid_argument("resize_bilinear: output size must be >= 1, got " + size_str(size));
  const std::vector<BilinearTap> columns = bilinear_taps(image.width, size.width);
  const std::vector<BilinearTap> rows = bilinear_taps(image.height, size.height);
  Image out(size.width, size.height);
  const size_t in_row = static_cast<size_t>(image.width) * 3;
  for (int y = 0; y < size.height; ++y) {
    const uint8_t* top = image.pixels.data() + rows[y].first * in_row;
    const uint8_t* bottom = image.pixels.data() + rows[y].second * in_row;
    const float wy = rows[y].weight_second;
    uint8_t* dst = out.at(0, y);
    for (int x = 0; x < size.width; ++x) {
      const int a = columns[x].first * 3, b = columns[x].second * 3;
      const float wx = columns[x].weight_second;
      for (int c = 0; c < 3; ++c) {
        const float upper = top[a + c] + wx * (static_cast<float>(top[b + c]) - top[a + c]);
        const float lower = bottom[a + c] + wx * (static_cast<float>(bottom[b + c]) - bottom[a + c]);
        const float value = upper + wy * (lower - upper);
        dst[x * 3 + c] = static_cast<uint8_t>(std::clamp(value + 0.5f, 0.0f, 255.0f));
      }
    }
  }
  return out;
}

Image flip_horizontal(const Image& image) {
  check_image(image, "flip_horizontal");
  Image out(image.width, image.height);
  for (int y = 0; y < image.height; ++y) {
    for (int x = 0; x < image.width; ++x) {
      std::memcpy(out.at(image.width - 1 - x, y), image.at(x, y), 3);
    }
  }
  return out;
}

void scale_boxes(std::vector<BoxXYXY>& boxes, double scale_x, double scale_y) {
  for (BoxXYXY& box : boxes) {
    box.x1 *= scale_x;
    box.x2 *= scale_x;
    box.y1 *= scale_y;
    box.y2 *= scale_y;
  }
}

void flip_boxes(std::vector<BoxXYXY>& boxes, int image_width) {
  for (BoxXYXY& box : boxes) {
    const double x1 = image_width - box.x2;
    box.x2 = image_width - box.x1;
    box.x1 = x1;
  }
}

int clip_and_drop_empty(DetectionTargets& targets, ImageSize size) {
  if (targets.boxes.size() != targets.classes.size()) {
    throw std::invalid_argument("clip_and_drop_empty: " + std::to_string(targets.boxes.size()) +
                                " boxes but " + std::to_string(targets.classes.size()) + " classes");
  }
  size_t kept = 0;
  for (size_t i = 0; i < targets.boxes.size(); ++i) {
    BoxXYXY box = targets.boxes[i];
    box.x1 = std::clamp(box.x1, 0.0, static_cast<double>(size.width));
    box.x2 = std::clamp(box.x2, 0.0, static_cast<double>(size.width));
    box.y1 = std::clamp(box.y1, 0.0, static_cast<double>(size.height));
    box.y2 = std::clamp(box.y2, 0.0, static_cast<double>(size.height));
    if (is_empty_box(box)) continue;
    targets.boxes[kept] = box;
    targets.classes[kept] = targets.classes[i];
    ++kept;
  }
  const int dropped = static_cast<int>(targets.boxes.size() - kept);
  targets.boxes.resize(kept);
  targets.classes.resize(kept);
  return dropped;
}

Tensor to_normalized_tensor(const Image& image, const NormalizeConfig& config) {
  check_image(image, "to_normalized_tensor");
  // (pixel - mean) / std takes 256 values per channel: a table computes each exactly once.
  float table[3][256];
  int source_channel[3];
  for (int c = 0; c < 3; ++c) {
    source_channel[c] = config.order == ChannelOrder::bgr ? 2 - c : c;
    for (int v = 0; v < 256; ++v)
      table[c][v] = (static_cast<float>(v) - config.mean[c]) / config.std[c];
  }
  const int64_t plane = static_cast<int64_t>(image.width) * image.height;
  Tensor out = empty({3, image.height, image.width}, {DType::f32});
  float* data = out.data<float>();
  const uint8_t* pixels = image.pixels.data();
  for (int c = 0; c < 3; ++c) {
    float* dst = data + c * plane;
    const float* lookup = table[c];
    const int src = source_channel[c];
    for (int64_t i = 0; i < plane; ++i)
      dst[i] = lookup[pixels[i * 3 + src]];
  }
  return out;
}

TransformedSample apply_transforms(const Image& image, DetectionTargets targets,
                                   const TransformConfig& config, Generator& rng) {
  check_image(image, "apply_transforms");
  config.validate();
  if (targets.boxes.size() != targets.classes.size()) {
    throw std::invalid_argument("apply_transforms: " + std::to_string(targets.boxes.size()) + " boxes but " +
                                std::to_string(targets.classes.size()) + " classes");
  }
  const int short_edge = config.short_edge_sizes[rng.integer(config.short_edge_sizes.size())];
  const bool flip = rng.uniform() < config.flip_probability;

  TransformedSample sample;
  SampleInfo& info = sample.info;
  info.original_size = {image.height, image.width};
  info.size = shortest_edge_size(info.original_size, short_edge, config.max_long_edge);
  info.scale_x = static_cast<double>(info.size.width) / image.width;
  info.scale_y = static_cast<double>(info.size.height) / image.height;
  info.flipped = flip;

  Image resized;
  const Image* current = &image;
  if (info.size.height != image.height || info.size.width != image.width) {
    resized = resize_bilinear(image, info.size);
    current = &resized;
  }
  scale_boxes(targets.boxes, info.scale_x, info.scale_y);
  Image flipped;
  if (flip) {
    flipped = flip_horizontal(*current);
    current = &flipped;
    flip_boxes(targets.boxes, info.size.width);
  }
  info.boxes_dropped = clip_and_drop_empty(targets, info.size);
  info.targets = std::move(targets);
  sample.image = to_normalized_tensor(*current, config.normalize);
  return sample;
}

DetectionBatch collate(std::vector<TransformedSample> samples, int size_divisibility, bool pinned) {
  if (samples.empty()) throw std::invalid_argument("collate: no samples");
  if (size_divisibility < 1)
    throw std::invalid_argument("collate: size_divisibility must be >= 1, got " +
                                std::to_string(size_divisibility));
  int64_t max_h = 0, max_w = 0;
  for (size_t i = 0; i < samples.size(); ++i) {
    const Tensor& image = samples[i].image;
    const ImageSize size = samples[i].info.size;
    if (!image.defined() || image.dim() != 3 || image.size(0) != 3 || image.dtype() != DType::f32 ||
        image.size(1) != size.height || image.size(2) != size.width) {
      throw std::invalid_argument(
          "collate: sample " + std::to_string(i) + " must be a [3, " + std::to_string(size.height) + ", " +
          std::to_string(size.width) + "] f32 image (its info.size), got " +
          (image.defined() ? shape_str(image.shape()) + " " + dtype_name(image.dtype())
                           : std::string("an undefined tensor")));
    }
    max_h = std::max(max_h, image.size(1));
    max_w = std::max(max_w, image.size(2));
  }
  const int64_t pad_h = (max_h + size_divisibility - 1) / size_divisibility * size_divisibility;
  const int64_t pad_w = (max_w + size_divisibility - 1) / size_divisibility * size_divisibility;
  const int64_t n = static_cast<int64_t>(samples.size());

  DetectionBatch batch;
  batch.images = empty({n, 3, pad_h, pad_w}, {DType::f32, Device::cpu(), pinned});
  float* out = batch.images.data<float>();
  std::memset(out, 0, sizeof(float) * static_cast<size_t>(batch.images.numel()));  // the padding
  for (int64_t i = 0; i < n; ++i) {
    const Tensor image = samples[i].image.contiguous();
    const int64_t h = image.size(1), w = image.size(2);
    const float* src = image.data<float>();
    for (int64_t c = 0; c < 3; ++c) {
      for (int64_t y = 0; y < h; ++y) {
        std::memcpy(out + ((i * 3 + c) * pad_h + y) * pad_w, src + (c * h + y) * w, sizeof(float) * w);
      }
    }
    batch.samples.push_back(std::move(samples[i].info));
  }
  return batch;
}

}  // namespace icd
