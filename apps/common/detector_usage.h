// What a detector checkpoint records besides its weights so that the file alone is enough to run the model
// on new images: the class names (in class-index order) and the test-time transform it was evaluated with
// (image size and normalisation). The trainer stores both as checkpoint metadata ("class_names",
// "test_transform", each a JSON string); apps/detect and apps/evaluate read them back.
#pragma once
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "datasets/transforms.h"

namespace icd::app {

struct DetectorUsage {
  std::vector<std::string> class_names;
  TransformConfig test_transform;
};

// The two metadata entries for `usage`.
std::map<std::string, std::string> usage_metadata(const DetectorUsage& usage);

// The usage recorded in `metadata` (of the checkpoint at `source`, named in errors); nullopt when the
// checkpoint predates these entries. A malformed entry is an error naming the file and the field.
std::optional<DetectorUsage> read_usage(const std::map<std::string, std::string>& metadata,
                                        const std::string& source);

}  // namespace icd::app
