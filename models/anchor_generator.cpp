// Anchor generation in two steps, as both detectron2 and torchvision do it:
//   1. cell anchors: the A zero-centred boxes of one level (sizes x ratios), computed once;
//   2. grid anchors: every cell's centre (shift) added to every cell anchor, in (y, x, a) order.
// Step 2 is a plain triple loop that writes the output row by row; it runs once per input size.
#include "models/anchor_generator.h"

#include <cmath>
#include <stdexcept>
#include <string>
#include <utility>

#include "engine/factory.h"

namespace icd {
namespace {

// detectron2 (DefaultAnchorGenerator.generate_cell_anchors), in double:
//   w = sqrt(size^2 / r), h = r w, box (-w/2, -h/2, w/2, h/2)
std::array<double, 4> detectron2_cell_anchor(double size, double ratio) {
  const double w = std::sqrt(size * size / ratio), h = ratio * w;
  return {-w / 2.0, -h / 2.0, w / 2.0, h / 2.0};
}

// torchvision (AnchorGenerator.generate_anchors), in f32 like its default cell anchors:
//   h_ratio = sqrt(r), w_ratio = 1 / h_ratio, ws = w_ratio size, hs = h_ratio size,
//   box = round((-ws, -hs, ws, hs) / 2), round half to even (torch.round)
std::array<double, 4> torchvision_cell_anchor(double size, double ratio) {
  const float h_ratio = std::sqrt(static_cast<float>(ratio)), w_ratio = 1.0f / h_ratio;
  const float ws = w_ratio * static_cast<float>(size), hs = h_ratio * static_cast<float>(size);
  auto half_rounded = [](float v) { return static_cast<double>(std::nearbyint(v / 2.0f)); };
  return {half_rounded(-ws), half_rounded(-hs), half_rounded(ws), half_rounded(hs)};
}

void check_config(const AnchorGeneratorConfig& config) {
  const std::string op = "AnchorGenerator: ";
  if (config.strides.empty()) throw std::invalid_argument(op + "no levels (strides is empty)");
  if (config.sizes.size() != config.strides.size())
    throw std::invalid_argument(op + "sizes has " + std::to_string(config.sizes.size()) +
                                " levels but strides has " + std::to_string(config.strides.size()));
  if (config.aspect_ratios.empty()) throw std::invalid_argument(op + "aspect_ratios is empty");
  for (double r : config.aspect_ratios)
    if (!(r > 0.0)) throw std::invalid_argument(op + "aspect ratios must be > 0, got " + std::to_string(r));
  for (std::size_t l = 0; l < config.sizes.size(); ++l) {
    if (config.sizes[l].empty() || config.sizes[l].size() != config.sizes[0].size())
      throw std::invalid_argument(op + "every level needs the same, non-zero number of sizes (level " +
                                  std::to_string(l) + " has " + std::to_string(config.sizes[l].size()) + ")");
    for (double s : config.sizes[l])
      if (!(s > 0.0)) throw std::invalid_argument(op + "sizes must be > 0, got " + std::to_string(s));
    if (config.strides[l] <= 0)
      throw std::invalid_argument(op + "strides must be > 0, got " + std::to_string(config.strides[l]));
  }
  if (!(config.offset >= 0.0 && config.offset < 1.0))
    throw std::invalid_argument(op + "offset must be in [0, 1), got " + std::to_string(config.offset));
}

template <class T>
void fill_level(T* out, const std::vector<std::array<double, 4>>& cells, GridSize grid, int64_t stride,
                double offset) {
  // Cell anchors are rounded to T first, then the shift is added in T (detectron2 and torchvision keep
  // f32 cell anchors and add f32 shifts; for f64 both steps are exact to double precision).
  std::vector<std::array<T, 4>> base;
  for (const auto& c : cells)
    base.push_back({static_cast<T>(c[0]), static_cast<T>(c[1]), static_cast<T>(c[2]), static_cast<T>(c[3])});
  for (int64_t y = 0; y < grid.height; ++y) {
    const T shift_y = static_cast<T>((static_cast<double>(y) + offset) * static_cast<double>(stride));
    for (int64_t x = 0; x < grid.width; ++x) {
      const T shift_x = static_cast<T>((static_cast<double>(x) + offset) * static_cast<double>(stride));
      for (const auto& b : base) {
        out[0] = shift_x + b[0];
        out[1] = shift_y + b[1];
        out[2] = shift_x + b[2];
        out[3] = shift_y + b[3];
        out += 4;
      }
    }
  }
}

}  // namespace

std::vector<std::vector<double>> detectron2_anchor_sizes() {
  std::vector<std::vector<double>> sizes;
  for (double x : {32.0, 64.0, 128.0, 256.0, 512.0})
    sizes.push_back({x, x * std::pow(2.0, 1.0 / 3.0), x * std::pow(2.0, 2.0 / 3.0)});
  return sizes;
}

AnchorGeneratorConfig torchvision_anchor_config() {
  AnchorGeneratorConfig config;
  config.sizes.clear();
  for (double x : {32.0, 64.0, 128.0, 256.0, 512.0})  // int(x * 2 ** (k / 3)): truncated, not rounded
    config.sizes.push_back(
        {x, std::trunc(x * std::pow(2.0, 1.0 / 3.0)), std::trunc(x * std::pow(2.0, 2.0 / 3.0))});
  config.round_base_anchors = true;
  config.ratio_major_order = true;
  return config;
}

AnchorGenerator::AnchorGenerator(AnchorGeneratorConfig config) : config_(std::move(config)) {
  check_config(config_);
  for (const auto& level_sizes : config_.sizes) {
    auto cell = [&](double size, double ratio) {
      return config_.round_base_anchors ? torchvision_cell_anchor(size, ratio)
                                        : detectron2_cell_anchor(size, ratio);
    };
    std::vector<std::array<double, 4>> cells;
    if (config_.ratio_major_order) {
      for (double ratio : config_.aspect_ratios)  // a = ratio_idx * num_sizes + size_idx
        for (double size : level_sizes)
          cells.push_back(cell(size, ratio));
    } else {
      for (double size : level_sizes)  // a = size_idx * num_ratios + ratio_idx
        for (double ratio : config_.aspect_ratios)
          cells.push_back(cell(size, ratio));
    }
    cell_anchors_.push_back(std::move(cells));
  }
}

int64_t AnchorGenerator::num_anchors_per_location() const {
  return static_cast<int64_t>(cell_anchors_[0].size());
}

const std::vector<std::array<double, 4>>& AnchorGenerator::cell_anchors(int64_t level) const {
  if (level < 0 || level >= num_levels())
    throw std::out_of_range("AnchorGenerator::cell_anchors: level " + std::to_string(level) + " of " +
                            std::to_string(num_levels()));
  return cell_anchors_[level];
}

Anchors AnchorGenerator::generate(const std::vector<GridSize>& grids, DType dtype) const {
  if (static_cast<int64_t>(grids.size()) != num_levels())
    throw std::invalid_argument("AnchorGenerator::generate: got " + std::to_string(grids.size()) +
                                " grids for " + std::to_string(num_levels()) + " levels");
  Anchors anchors;
  int64_t total = 0;
  for (const GridSize& g : grids) {
    if (g.height <= 0 || g.width <= 0)
      throw std::invalid_argument("AnchorGenerator::generate: grid sizes must be positive, got " +
                                  std::to_string(g.height) + "x" + std::to_string(g.width));
    anchors.num_per_level.push_back(g.height * g.width * num_anchors_per_location());
    total += anchors.num_per_level.back();
  }
  anchors.boxes = empty({total, 4}, {dtype});
  dispatch_floating(dtype, "AnchorGenerator::generate", [&](auto tag) {
    using T = decltype(tag);
    T* out = anchors.boxes.data<T>();
    for (std::size_t l = 0; l < grids.size(); ++l) {
      fill_level(out, cell_anchors_[l], grids[l], config_.strides[l], config_.offset);
      out += anchors.num_per_level[l] * 4;
    }
  });
  return anchors;
}

Anchors AnchorGenerator::generate(const std::vector<Tensor>& features) const {
  if (features.empty()) throw std::invalid_argument("AnchorGenerator::generate: no feature maps");
  std::vector<GridSize> grids;
  for (const Tensor& f : features) {
    if (f.dim() != 4)
      throw std::invalid_argument("AnchorGenerator::generate: feature maps must be [N, C, H, W], got " +
                                  shape_str(f.shape()));
    grids.push_back({f.size(2), f.size(3)});
  }
  return generate(grids, features[0].dtype());
}

}  // namespace icd
