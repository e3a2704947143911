// The ground truth of one training image as the distiller sees it (spec/icd.md section 1).
//
// detectron2 hands ICD an `Instances` per image after crowd removal, resize and flip: boxes in pixels of the
// resized image, contiguous class ids, and the image size before padding to a multiple of 32. This struct
// is that, with plain numbers: the descriptors are built under no_grad from these values, so no tensor is
// needed. The padded size of the whole batch (the tensor the networks see) is passed separately.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "engine/geometry.h"

namespace icd {

// x1, y1, x2, y2 in pixels.
using InstanceBox = std::array<double, 4>;

struct ImageInstances {
  std::vector<InstanceBox> boxes;  // pixels of the resized, unpadded image
  std::vector<int64_t> labels;     // contiguous class ids in [0, num_classes)
  ImageSize size;                  // the resized, unpadded image (detectron2's instance.image_size)
};

// Throws std::invalid_argument naming `what` (e.g. "ground truth of image 3") when the image size is not
// positive, boxes and labels differ in count, a label is outside [0, num_classes), or a box is not finite
// or has x2 < x1 or y2 < y1.
void check_image_instances(const ImageInstances& image, int64_t num_classes, const std::string& what);

}  // namespace icd
