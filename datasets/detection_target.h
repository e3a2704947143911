// What a detector is trained to find in one image: boxes in pixels and their classes.
#pragma once
#include <cstdint>
#include <vector>

namespace icd {

// Corners in pixels, top-left origin, no +1 convention: width = x2 - x1.
struct BoxXYXY {
  double x1 = 0, y1 = 0, x2 = 0, y2 = 0;
  double width() const { return x2 - x1; }
  double height() const { return y2 - y1; }
};

// A box is empty when its width or height is at most this (detectron2's Boxes.nonempty threshold).
inline constexpr double kEmptyBoxSize = 1e-5;
inline bool is_empty_box(const BoxXYXY& box) {
  return !(box.width() > kEmptyBoxSize && box.height() > kEmptyBoxSize);
}

// boxes[i] has class classes[i], a contiguous index 0..K-1 (CocoDataset maps category ids to these).
struct DetectionTargets {
  std::vector<BoxXYXY> boxes;
  std::vector<int64_t> classes;
};

}  // namespace icd
