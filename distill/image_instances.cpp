#include "distill/image_instances.h"

#include <cmath>
#include <stdexcept>

namespace icd {

void check_image_instances(const ImageInstances& image, int64_t num_classes, const std::string& what) {
  if (image.size.height <= 0 || image.size.width <= 0)
    throw std::invalid_argument(what + ": image size " + std::to_string(image.size.height) + "x" +
                                std::to_string(image.size.width) + " must be positive");
  if (image.boxes.size() != image.labels.size())
    throw std::invalid_argument(what + ": " + std::to_string(image.boxes.size()) + " boxes but " +
                                std::to_string(image.labels.size()) + " labels");
  for (std::size_t i = 0; i < image.boxes.size(); ++i) {
    const int64_t label = image.labels[i];
    if (label < 0 || label >= num_classes)
      throw std::invalid_argument(what + ": label " + std::to_string(label) + " of box " + std::to_string(i) +
                                  " is outside [0, " + std::to_string(num_classes) + ")");
    const InstanceBox& b = image.boxes[i];
    bool finite = std::isfinite(b[0]) && std::isfinite(b[1]) && std::isfinite(b[2]) && std::isfinite(b[3]);
    if (!finite || b[2] < b[0] || b[3] < b[1])
      throw std::invalid_argument(what + ": box " + std::to_string(i) + " (" + std::to_string(b[0]) + ", " +
                                  std::to_string(b[1]) + ", " + std::to_string(b[2]) + ", " +
                                  std::to_string(b[3]) + ") is not a finite x1 <= x2, y1 <= y2 box");
  }
}

}  // namespace icd
