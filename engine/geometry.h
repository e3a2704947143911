// The size of an image in pixels, shared by the data pipeline (datasets/), the detector (models/) and
// the distillation (distill/), which all need to know each image's true extent inside a padded batch.
#pragma once
#include <cstdint>

namespace icd {

struct ImageSize {
  int64_t height = 0;
  int64_t width = 0;
  bool operator==(const ImageSize&) const = default;
};

}  // namespace icd
