#include "apps/common/attention_pictures.h"

#include <algorithm>
#include <cstdio>
#include <optional>
#include <vector>

#include "datasets/draw.h"
#include "datasets/image_io.h"
#include "engine/autograd.h"
#include "engine/ops/reduce.h"
#include "engine/transfer.h"

namespace icd::app {
namespace {

constexpr int kPanelGap = 4;

// Per-pixel attention density [height x width] of query `query` of image 0 from the head-averaged
// attention probabilities `probs` [L, S] (S the levels' cells, in order).
std::vector<double> attention_density(const std::vector<double>& probs, int64_t num_positions, int query,
                                      const std::vector<ImageSize>& levels, ImageSize padded,
                                      ImageSize image) {
  std::vector<double> density(static_cast<std::size_t>(image.height * image.width), 0.0);
  int64_t offset = static_cast<int64_t>(query) * num_positions;
  for (const ImageSize& level : levels) {
    const double stride_y = static_cast<double>(padded.height) / static_cast<double>(level.height);
    const double stride_x = static_cast<double>(padded.width) / static_cast<double>(level.width);
    const double per_pixel = 1.0 / (stride_y * stride_x);
    for (int64_t y = 0; y < image.height; ++y) {
      const auto row = std::min(level.height - 1, static_cast<int64_t>(static_cast<double>(y) / stride_y));
      for (int64_t x = 0; x < image.width; ++x) {
        const auto col = std::min(level.width - 1, static_cast<int64_t>(static_cast<double>(x) / stride_x));
        density[static_cast<std::size_t>(y * image.width + x)] +=
            probs[static_cast<std::size_t>(offset + row * level.width + col)] * per_pixel;
      }
    }
    offset += level.height * level.width;
  }
  return density;
}

// The image dimmed to 40% with the density (scaled to its maximum) blended in from red to yellow.
Image heatmap_panel(const Image& image, const std::vector<double>& density) {
  const double peak = std::max(1e-30, *std::max_element(density.begin(), density.end()));
  Image panel = image;
  for (int y = 0; y < image.height; ++y)
    for (int x = 0; x < image.width; ++x) {
      const double t = density[static_cast<std::size_t>(y) * image.width + x] / peak;  // [0, 1]
      uint8_t* p = panel.at(x, y);
      const double heat[3] = {255.0 * std::min(1.0, 2.0 * t), 255.0 * std::max(0.0, 2.0 * t - 1.0), 0.0};
      for (int c = 0; c < 3; ++c)
        p[c] = static_cast<uint8_t>(0.4 * (1.0 - t) * p[c] + t * heat[c] + 0.5);
    }
  return panel;
}

void paste(Image& canvas, const Image& panel, int x0, int y0) {
  for (int y = 0; y < panel.height && y0 + y < canvas.height; ++y)
    for (int x = 0; x < panel.width && x0 + x < canvas.width; ++x)
      std::copy_n(panel.at(x, y), 3, canvas.at(x0 + x, y0 + y));
}

// One image as the pictures and the specificity measure see it: the test transform, one query per
// ground-truth instance (the first `max_instances`) with no jitter, decoded over the teacher's levels.
struct DecodedImage {
  Image resized;
  std::vector<BoxXYXY> boxes;
  std::vector<int64_t> classes;
  ImageQueries queries;
  ImageSize padded;
  IcdOutput out;
};

// nullopt when the transform leaves the image no box (nothing to ask the decoder about).
std::optional<DecodedImage> decode_image(InstanceConditionalDistiller& distiller, RetinaNet& teacher,
                                         const CocoDataset& dataset, int64_t index,
                                         const TransformConfig& transform, int max_instances) {
  TransformConfig test = transform;
  test.flip_probability = 0.0;
  Generator unused_rng(0);  // one size and no flip: the transform draws nothing that matters
  DecodedImage d;
  const Image original = read_image(dataset.image_path(index));
  TransformedSample sample = apply_transforms(original, dataset.targets(index), test, unused_rng);
  d.queries.size = sample.info.size;
  d.boxes = sample.info.targets.boxes;  // copies: the sample moves below
  d.classes = sample.info.targets.classes;
  const int count = std::min<int>(max_instances, static_cast<int>(d.boxes.size()));
  if (count == 0) return std::nullopt;
  d.boxes.resize(static_cast<std::size_t>(count));
  d.classes.resize(static_cast<std::size_t>(count));
  for (int i = 0; i < count; ++i)
    d.queries.queries.push_back({.box = {d.boxes[i].x1, d.boxes[i].y1, d.boxes[i].x2, d.boxes[i].y2},
                                 .label = d.classes[i]});  // no jitter: the box centre itself
  d.queries.num_real = count;
  std::vector<TransformedSample> one;
  one.push_back(std::move(sample));
  const DetectionBatch batch = collate(std::move(one), test.size_divisibility);
  d.padded = {batch.images.size(2), batch.images.size(3)};
  teacher.eval();
  d.out =
      distiller.decode(teacher.features(to_device(batch.images, teacher.device())), d.padded, {d.queries});
  d.resized = resize_bilinear(original, d.queries.size);
  return d;
}

std::string format_specificity(double value) {
  char text[32];
  std::snprintf(text, sizeof text, "%.1f", value);
  return text;
}

std::string format_percent(double share) {
  char text[32];
  std::snprintf(text, sizeof text, "%.0f%%", 100 * share);
  return text;
}

}  // namespace

AttentionSpecificity validation_specificity(InstanceConditionalDistiller& distiller, RetinaNet& teacher,
                                            const CocoDataset& dataset, const TransformConfig& transform,
                                            int num_images) {
  NoGradGuard no_grad;
  std::vector<AttentionSpecificity> parts;
  for (int64_t index = 0; index < dataset.num_images() && static_cast<int>(parts.size()) < num_images;
       ++index) {
    if (dataset.targets(index).boxes.empty()) continue;
    const std::optional<DecodedImage> decoded =
        decode_image(distiller, teacher, dataset, index, transform, 1 << 20);
    if (!decoded) continue;
    const DecodedImage& d = *decoded;
    parts.push_back(
        attention_specificity(d.out.teacher.logits, d.out.teacher_keys.level_sizes, d.padded, {d.queries}));
  }
  return combine(parts);
}

void draw_attention_pictures(InstanceConditionalDistiller& distiller, RetinaNet& teacher,
                             const CocoDataset& dataset, const TransformConfig& transform,
                             const std::string& png_path, int num_images, int max_instances) {
  NoGradGuard no_grad;
  std::vector<std::vector<Image>> rows;
  std::vector<AttentionSpecificity> measured;
  for (int64_t index = 0; index < dataset.num_images() && static_cast<int>(rows.size()) < num_images;
       ++index) {
    if (dataset.targets(index).boxes.size() < 2) continue;
    const std::optional<DecodedImage> decoded =
        decode_image(distiller, teacher, dataset, index, transform, max_instances);
    if (!decoded) continue;
    const DecodedImage& d = *decoded;
    // logits [1, H, L, S] -> probabilities over S, averaged over the heads -> [L, S]
    const Tensor probs = mean(softmax(d.out.teacher.logits, 3), {1}).squeeze(0);
    const std::vector<double> values = probs.to_vector<double>();
    const int64_t num_positions = probs.size(1);
    const AttentionSpecificity specificity =
        attention_specificity(d.out.teacher.logits, d.out.teacher_keys.level_sizes, d.padded, {d.queries});
    measured.push_back(specificity);

    std::vector<Image> row;
    for (std::size_t i = 0; i < d.boxes.size(); ++i) {
      const BoxXYXY& box = d.boxes[i];
      Image panel = heatmap_panel(
          d.resized, attention_density(values, num_positions, static_cast<int>(i),
                                       d.out.teacher_keys.level_sizes, d.padded, d.queries.size));
      const Rgb colour = palette_colour(static_cast<int>(d.classes[i]));
      draw_rectangle(panel, static_cast<int>(box.x1), static_cast<int>(box.y1), static_cast<int>(box.x2),
                     static_cast<int>(box.y2), colour, 2);
      draw_label(panel, static_cast<int>(box.x1), static_cast<int>(box.y1) - text_height() - 2,
                 dataset.class_name(static_cast<int>(d.classes[i])), colour, Rgb{0, 0, 0});
      draw_label(panel, 2, panel.height - text_height() - 4,
                 "specificity " + format_specificity(specificity.per_query[i]), Rgb{0, 0, 0},
                 Rgb{255, 255, 255});
      row.push_back(std::move(panel));
    }
    rows.push_back(std::move(row));
  }
  if (rows.empty()) return;
  int width = 0, height = 0;
  for (const auto& row : rows) {
    int row_width = 0, row_height = 0;
    for (const Image& panel : row) {
      row_width += panel.width + kPanelGap;
      row_height = std::max(row_height, panel.height);
    }
    width = std::max(width, row_width);
    height += row_height + kPanelGap;
  }
  const AttentionSpecificity all = combine(measured);
  std::string caption = "attention specificity (1 = spread evenly): own box " +
                        format_specificity(all.overall) + ", other boxes " + format_specificity(all.cross);
  if (all.num_ranked > 0)  // some image had two boxes or more
    caption += "; own box first for " + format_percent(all.own_first) + " (chance " +
               format_percent(all.own_first_chance) + ")";
  const int caption_height = text_height() + 2 * kPanelGap;
  width = std::max(width, text_width(caption) + 2 * kPanelGap);
  Image canvas(width, height + caption_height, 255);
  draw_text(canvas, kPanelGap, kPanelGap, caption, Rgb{0, 0, 0});
  int y = caption_height;
  for (const auto& row : rows) {
    int x = 0, row_height = 0;
    for (const Image& panel : row) {
      paste(canvas, panel, x, y);
      x += panel.width + kPanelGap;
      row_height = std::max(row_height, panel.height);
    }
    y += row_height + kPanelGap;
  }
  write_png(png_path, canvas);
}

}  // namespace icd::app
