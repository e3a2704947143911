// COCO detection data in and out, and the dataset a detector trains on (datasets/coco_dataset.cpp).
//
// File layout (the subset of COCO that detection uses; other top-level keys are ignored):
//   {"images":      [{"id": int, "file_name": str, "width": int, "height": int}, ...],
//    "categories":  [{"id": int, "name": str, "supercategory": str (optional)}, ...],
//    "annotations": [{"id": int, "image_id": int, "category_id": int, "bbox": [x, y, w, h],
//                     "area": number, "iscrowd": 0 or 1}, ...]}
//
// Errors (std::runtime_error "coco: <file>: <entry>: <what>", e.g. "annotations[7]: unknown image_id 12"):
// a missing or mistyped key, a duplicate image/category/annotation id, an annotation id <= 0 (pycocotools
// uses 0 for "unmatched"), an annotation whose image or category is not listed, an image size < 1, an
// empty file name, a bbox or area that is not finite, a negative bbox width or height or area.
//
// Rules, applied by CocoDataset and counted in CocoDatasetCounts (summary() is the line for the log):
// - a box partly outside its image is clipped to the image (its "area" is kept: it may be a mask's);
// - a box that is empty after clipping (width or height <= kEmptyBoxSize; zero-size boxes and boxes
//   wholly outside the image) is dropped from the dataset;
// - crowd annotations (iscrowd 1) stay in the data but are never training targets;
// - images without any training target stay in the dataset; images_with_targets() lists the others
//   (detectron2 trains on those only: FILTER_EMPTY_ANNOTATIONS).
// Classes: category ids in ascending order map to contiguous class indices 0..K-1, as detectron2 does;
// detections are mapped back to category ids on output.
#pragma once
#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <unordered_map>
#include <vector>

#include "datasets/coco_eval.h"
#include "datasets/detection_target.h"

namespace icd {

struct CocoImage {
  int64_t id = 0;
  std::string file_name;  // relative to the dataset's image folder
  int width = 0;
  int height = 0;
};

struct CocoCategory {
  int64_t id = 0;
  std::string name;
  std::string supercategory;
};

struct CocoAnnotation {
  int64_t id = 0;
  int64_t image_id = 0;
  int64_t category_id = 0;
  BoxXYWH bbox;
  double area = 0;
  bool iscrowd = false;
};

// A COCO detection file's contents, in file order, no rules applied.
struct CocoData {
  std::vector<CocoImage> images;
  std::vector<CocoCategory> categories;
  std::vector<CocoAnnotation> annotations;
};

// Throws for every error listed above; `source` names the file in the message.
void validate_coco_data(const CocoData& data, const std::string& source);
CocoData parse_coco_data(const nlohmann::json& root, const std::string& source);  // and validates
CocoData read_coco_data(const std::string& path);
nlohmann::json coco_data_to_json(const CocoData& data);  // validates first; keys sorted, deterministic
// Validates, then writes a temporary file beside `path` and renames it over `path`.
void write_coco_data(const std::string& path, const CocoData& data);
// The evaluator's view of the same data (datasets/coco_eval.h).
CocoGroundTruth to_coco_ground_truth(const CocoData& data, const std::string& source);

struct CocoDatasetCounts {
  int64_t images = 0;
  int64_t categories = 0;
  int64_t annotations = 0;          // as given, before the rules
  int64_t crowd = 0;                // kept, never training targets (after dropping empty boxes)
  int64_t boxes_clipped = 0;        // partly outside their image
  int64_t boxes_dropped_empty = 0;  // empty after clipping
  int64_t targets = 0;              // non-crowd boxes left: what training sees
  int64_t images_without_targets = 0;
};

class CocoDataset {
 public:
  // image_dir: the folder file names are relative to; empty means the JSON file's folder.
  static CocoDataset load(const std::string& json_path, const std::string& image_dir = "");
  // Validates `data` (errors name `source`) and applies the rules above.
  CocoDataset(CocoData data, std::string source, std::string image_dir);

  const std::string& source() const { return source_; }
  const std::string& image_dir() const { return image_dir_; }
  const CocoData& data() const { return data_; }  // after the rules
  const CocoDatasetCounts& counts() const { return counts_; }
  std::string summary() const;  // one line with the counts, for the log

  int64_t num_images() const { return static_cast<int64_t>(data_.images.size()); }
  const CocoImage& image(int64_t index) const;
  std::string image_path(int64_t index) const;
  int64_t index_of_image_id(int64_t image_id) const;  // throws for an unknown id
  // The non-crowd boxes of one image as corners, with class indices.
  DetectionTargets targets(int64_t index) const;
  std::vector<int64_t> images_with_targets() const;  // indices, ascending

  int num_classes() const { return static_cast<int>(class_categories_.size()); }
  int class_of_category(int64_t category_id) const;  // throws for an unknown id
  int64_t category_of_class(int class_index) const;  // throws when out of range
  const std::string& class_name(int class_index) const;

 private:
  std::string source_;
  std::string image_dir_;
  CocoData data_;
  CocoDatasetCounts counts_;
  std::vector<int> class_categories_;                    // class index -> position in data_.categories
  std::unordered_map<int64_t, int> class_of_category_;   // category id -> class index
  std::unordered_map<int64_t, int64_t> image_index_;     // image id -> position in data_.images
  std::vector<std::vector<int64_t>> image_annotations_;  // per image: positions in data_.annotations
};

// A detector's output for one image in class indices and corner boxes.
struct ClassDetection {
  int64_t image_id = 0;
  int class_index = 0;
  BoxXYXY box;
  double score = 0;
};

// Maps class indices back to category ids and corners to [x, y, w, h]; throws for an unknown image id,
// a class index out of range or a non-finite value, naming the entry.
CocoDetections to_coco_detections(const CocoDataset& dataset, const std::vector<ClassDetection>& detections);
// [{"image_id", "category_id", "bbox", "score"}, ...]: the results list COCOeval and our evaluator read.
nlohmann::json coco_detections_to_json(const CocoDetections& detections);
void write_coco_detections(const std::string& path, const CocoDetections& detections);

}  // namespace icd
