// COCO detection data: reading, validating, writing, and the training view (contract in coco_dataset.h).
#include "datasets/coco_dataset.h"

#include "engine/atomic_file.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>
#include <unordered_set>

namespace icd {
namespace {

using nlohmann::json;

[[noreturn]] void fail(const std::string& source, const std::string& what) {
  throw std::runtime_error("coco: " + source + ": " + what);
}

std::string entry(const char* list, size_t index) {
  return std::string(list) + "[" + std::to_string(index) + "]";
}

// ---------------------------------------------------------------------------------------------------
// Typed field readers: each names the file, the entry and the key.

const json& field(const json& object, const char* key, const std::string& source, const std::string& where) {
  if (!object.is_object()) fail(source, where + ": expected a JSON object, got " + object.dump());
  const auto it = object.find(key);
  if (it == object.end()) fail(source, where + ": missing key \"" + key + "\"");
  return *it;
}

int64_t integer_field(const json& object, const char* key, const std::string& source,
                      const std::string& where) {
  const json& value = field(object, key, source, where);
  const bool fits = value.is_number_integer() &&
                    !(value.is_number_unsigned() &&
                      value.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()));
  if (!fits) fail(source, where + ": \"" + key + "\" must be an integer, got " + value.dump());
  return value.get<int64_t>();
}

int int_field(const json& object, const char* key, const std::string& source, const std::string& where) {
  const int64_t value = integer_field(object, key, source, where);
  if (value < std::numeric_limits<int>::min() || value > std::numeric_limits<int>::max())
    fail(source, where + ": \"" + key + "\" is out of range: " + std::to_string(value));
  return static_cast<int>(value);
}

double number_field(const json& object, const char* key, const std::string& source,
                    const std::string& where) {
  const json& value = field(object, key, source, where);
  if (!value.is_number()) fail(source, where + ": \"" + key + "\" must be a number, got " + value.dump());
  return value.get<double>();
}

std::string string_field(const json& object, const char* key, const std::string& source,
                         const std::string& where) {
  const json& value = field(object, key, source, where);
  if (!value.is_string()) fail(source, where + ": \"" + key + "\" must be a string, got " + value.dump());
  return value.get<std::string>();
}

BoxXYWH bbox_field(const json& object, const std::string& source, const std::string& where) {
  const json& value = field(object, "bbox", source, where);
  const bool ok = value.is_array() && value.size() == 4 &&
                  std::all_of(value.begin(), value.end(), [](const json& v) { return v.is_number(); });
  if (!ok) fail(source, where + ": \"bbox\" must be [x, y, width, height] (4 numbers), got " + value.dump());
  return {value[0].get<double>(), value[1].get<double>(), value[2].get<double>(), value[3].get<double>()};
}

bool crowd_field(const json& object, const std::string& source, const std::string& where) {
  const json& value = field(object, "iscrowd", source, where);
  if (value.is_boolean()) return value.get<bool>();
  if (value.is_number_integer() && (value.get<int64_t>() == 0 || value.get<int64_t>() == 1))
    return value.get<int64_t>() == 1;
  fail(source, where + ": \"iscrowd\" must be 0 or 1, got " + value.dump());
}

const json& array_field(const json& root, const char* key, const std::string& source) {
  const json& value = field(root, key, source, "top level");
  if (!value.is_array())
    fail(source, std::string("\"") + key + "\" must be an array, got a " + value.type_name());
  return value;
}

json read_json_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, "cannot open the file (missing or unreadable)");
  try {
    return json::parse(in);
  } catch (const json::parse_error& e) {
    fail(path, std::string("malformed JSON (") + e.what() + ")");
  }
}

bool is_finite_box(const BoxXYWH& box) {
  return std::isfinite(box.x) && std::isfinite(box.y) && std::isfinite(box.width) &&
         std::isfinite(box.height);
}

json box_json(const BoxXYWH& box) {
  return json::array({box.x, box.y, box.width, box.height});
}

}  // namespace

// ---------------------------------------------------------------------------------------------------
// Reading, validating, writing

void validate_coco_data(const CocoData& data, const std::string& source) {
  std::unordered_set<int64_t> image_ids, category_ids, annotation_ids;
  for (size_t i = 0; i < data.images.size(); ++i) {
    const CocoImage& image = data.images[i];
    const std::string where = entry("images", i) + " (id " + std::to_string(image.id) + ")";
    if (!image_ids.insert(image.id).second) fail(source, where + ": duplicate image id");
    if (image.width < 1 || image.height < 1) {
      fail(source, where + ": size must be at least 1 x 1, got width " + std::to_string(image.width) +
                       ", height " + std::to_string(image.height));
    }
    if (image.file_name.empty()) fail(source, where + ": empty file_name");
  }
  for (size_t i = 0; i < data.categories.size(); ++i) {
    const int64_t id = data.categories[i].id;
    if (!category_ids.insert(id).second)
      fail(source, entry("categories", i) + ": duplicate category id " + std::to_string(id));
  }
  for (size_t i = 0; i < data.annotations.size(); ++i) {
    const CocoAnnotation& ann = data.annotations[i];
    const std::string where = entry("annotations", i) + " (id " + std::to_string(ann.id) + ")";
    if (ann.id <= 0) fail(source, where + ": annotation ids must be positive");
    if (!annotation_ids.insert(ann.id).second) fail(source, where + ": duplicate annotation id");
    if (!image_ids.count(ann.image_id))
      fail(source, where + ": unknown image_id " + std::to_string(ann.image_id));
    if (!category_ids.count(ann.category_id))
      fail(source, where + ": unknown category_id " + std::to_string(ann.category_id));
    if (!is_finite_box(ann.bbox)) fail(source, where + ": bbox has a non-finite value");
    if (ann.bbox.width < 0 || ann.bbox.height < 0) {
      fail(source, where + ": bbox has a negative size (width " + std::to_string(ann.bbox.width) +
                       ", height " + std::to_string(ann.bbox.height) + ")");
    }
    if (!std::isfinite(ann.area) || ann.area < 0)
      fail(source, where + ": area must be finite and >= 0, got " + std::to_string(ann.area));
  }
}

CocoData parse_coco_data(const json& root, const std::string& source) {
  if (!root.is_object()) fail(source, "expected a JSON object with images, categories and annotations");
  const json& images = array_field(root, "images", source);
  const json& categories = array_field(root, "categories", source);
  const json& annotations = array_field(root, "annotations", source);
  CocoData data;
  data.images.reserve(images.size());
  for (size_t i = 0; i < images.size(); ++i) {
    const std::string where = entry("images", i);
    CocoImage image;
    image.id = integer_field(images[i], "id", source, where);
    image.file_name = string_field(images[i], "file_name", source, where);
    image.width = int_field(images[i], "width", source, where);
    image.height = int_field(images[i], "height", source, where);
    data.images.push_back(std::move(image));
  }
  for (size_t i = 0; i < categories.size(); ++i) {
    const std::string where = entry("categories", i);
    CocoCategory category;
    category.id = integer_field(categories[i], "id", source, where);
    category.name = string_field(categories[i], "name", source, where);
    if (categories[i].contains("supercategory"))
      category.supercategory = string_field(categories[i], "supercategory", source, where);
    data.categories.push_back(std::move(category));
  }
  data.annotations.reserve(annotations.size());
  for (size_t i = 0; i < annotations.size(); ++i) {
    const std::string where = entry("annotations", i);
    const json& object = annotations[i];
    CocoAnnotation ann;
    ann.id = integer_field(object, "id", source, where);
    ann.image_id = integer_field(object, "image_id", source, where);
    ann.category_id = integer_field(object, "category_id", source, where);
    ann.bbox = bbox_field(object, source, where);
    ann.area = number_field(object, "area", source, where);
    ann.iscrowd = crowd_field(object, source, where);
    data.annotations.push_back(ann);
  }
  validate_coco_data(data, source);
  return data;
}

CocoData read_coco_data(const std::string& path) {
  return parse_coco_data(read_json_file(path), path);
}

json coco_data_to_json(const CocoData& data) {
  validate_coco_data(data, "coco_data_to_json");
  json images = json::array(), categories = json::array(), annotations = json::array();
  for (const CocoImage& image : data.images) {
    images.push_back(
        {{"id", image.id}, {"file_name", image.file_name}, {"width", image.width}, {"height", image.height}});
  }
  for (const CocoCategory& category : data.categories) {
    categories.push_back(
        {{"id", category.id}, {"name", category.name}, {"supercategory", category.supercategory}});
  }
  for (const CocoAnnotation& ann : data.annotations) {
    annotations.push_back({{"id", ann.id},
                           {"image_id", ann.image_id},
                           {"category_id", ann.category_id},
                           {"bbox", box_json(ann.bbox)},
                           {"area", ann.area},
                           {"iscrowd", ann.iscrowd ? 1 : 0}});
  }
  return {{"images", std::move(images)},
          {"categories", std::move(categories)},
          {"annotations", std::move(annotations)}};
}

void write_coco_data(const std::string& path, const CocoData& data) {
  validate_coco_data(data, path + " (not written)");
  write_file_atomically(path, coco_data_to_json(data).dump() + "\n");
}

CocoGroundTruth to_coco_ground_truth(const CocoData& data, const std::string& source) {
  CocoGroundTruth gt;
  gt.source = source;
  for (const CocoImage& image : data.images)
    gt.image_ids.push_back(image.id);
  for (const CocoCategory& category : data.categories)
    gt.categories.push_back({category.id, category.name});
  for (const CocoAnnotation& ann : data.annotations) {
    gt.annotations.push_back({ann.id, ann.image_id, ann.category_id, ann.bbox, ann.area, ann.iscrowd});
  }
  return gt;
}

// ---------------------------------------------------------------------------------------------------
// The training view

CocoDataset CocoDataset::load(const std::string& json_path, const std::string& image_dir) {
  const std::string folder =
      image_dir.empty() ? std::filesystem::path(json_path).parent_path().string() : image_dir;
  return CocoDataset(read_coco_data(json_path), json_path, folder);
}

CocoDataset::CocoDataset(CocoData data, std::string source, std::string image_dir)
    : source_(std::move(source)), image_dir_(std::move(image_dir)), data_(std::move(data)) {
  validate_coco_data(data_, source_);
  counts_.images = num_images();
  counts_.categories = static_cast<int64_t>(data_.categories.size());
  counts_.annotations = static_cast<int64_t>(data_.annotations.size());

  for (int64_t i = 0; i < num_images(); ++i)
    image_index_[data_.images[i].id] = i;
  std::vector<int> by_id(data_.categories.size());
  for (size_t i = 0; i < by_id.size(); ++i)
    by_id[i] = static_cast<int>(i);
  std::sort(by_id.begin(), by_id.end(),
            [&](int a, int b) { return data_.categories[a].id < data_.categories[b].id; });
  class_categories_ = by_id;
  for (int k = 0; k < num_classes(); ++k)
    class_of_category_[data_.categories[class_categories_[k]].id] = k;

  // Clip every box to its image and drop the empty ones.
  std::vector<CocoAnnotation> kept;
  kept.reserve(data_.annotations.size());
  for (const CocoAnnotation& ann : data_.annotations) {
    const CocoImage& image = data_.images[image_index_.at(ann.image_id)];
    const double x1 = std::clamp(ann.bbox.x, 0.0, static_cast<double>(image.width));
    const double y1 = std::clamp(ann.bbox.y, 0.0, static_cast<double>(image.height));
    const double x2 = std::clamp(ann.bbox.x + ann.bbox.width, 0.0, static_cast<double>(image.width));
    const double y2 = std::clamp(ann.bbox.y + ann.bbox.height, 0.0, static_cast<double>(image.height));
    if (is_empty_box({x1, y1, x2, y2})) {
      ++counts_.boxes_dropped_empty;
      continue;
    }
    CocoAnnotation clipped = ann;
    if (x1 != ann.bbox.x || y1 != ann.bbox.y || x2 != ann.bbox.x + ann.bbox.width ||
        y2 != ann.bbox.y + ann.bbox.height) {
      clipped.bbox = {x1, y1, x2 - x1, y2 - y1};
      ++counts_.boxes_clipped;
    }
    kept.push_back(clipped);
  }
  data_.annotations = std::move(kept);

  image_annotations_.assign(data_.images.size(), {});
  for (size_t a = 0; a < data_.annotations.size(); ++a) {
    const CocoAnnotation& ann = data_.annotations[a];
    image_annotations_[image_index_.at(ann.image_id)].push_back(static_cast<int64_t>(a));
    if (ann.iscrowd) {
      ++counts_.crowd;
    } else {
      ++counts_.targets;
    }
  }
  counts_.images_without_targets = num_images() - static_cast<int64_t>(images_with_targets().size());
}

std::string CocoDataset::summary() const {
  std::ostringstream out;
  out << "coco: " << source_ << ": " << counts_.images << " images, " << counts_.categories << " categories, "
      << counts_.annotations << " annotations; " << counts_.boxes_clipped << " boxes clipped to their image, "
      << counts_.boxes_dropped_empty << " empty boxes dropped, " << counts_.crowd
      << " crowd regions kept out of training; " << counts_.targets << " training boxes; "
      << counts_.images_without_targets << " images without training boxes";
  return out.str();
}

const CocoImage& CocoDataset::image(int64_t index) const {
  if (index < 0 || index >= num_images()) {
    throw std::out_of_range("CocoDataset " + source_ + ": image index " + std::to_string(index) +
                            " out of range [0, " + std::to_string(num_images()) + ")");
  }
  return data_.images[index];
}

std::string CocoDataset::image_path(int64_t index) const {
  return (std::filesystem::path(image_dir_) / image(index).file_name).string();
}

int64_t CocoDataset::index_of_image_id(int64_t image_id) const {
  const auto it = image_index_.find(image_id);
  if (it == image_index_.end())
    throw std::out_of_range("CocoDataset " + source_ + ": unknown image id " + std::to_string(image_id));
  return it->second;
}

DetectionTargets CocoDataset::targets(int64_t index) const {
  image(index);  // range check
  DetectionTargets targets;
  for (int64_t a : image_annotations_[index]) {
    const CocoAnnotation& ann = data_.annotations[a];
    if (ann.iscrowd) continue;
    targets.boxes.push_back(
        {ann.bbox.x, ann.bbox.y, ann.bbox.x + ann.bbox.width, ann.bbox.y + ann.bbox.height});
    targets.classes.push_back(class_of_category_.at(ann.category_id));
  }
  return targets;
}

std::vector<int64_t> CocoDataset::images_with_targets() const {
  std::vector<int64_t> indices;
  for (int64_t i = 0; i < num_images(); ++i) {
    const bool any = std::any_of(image_annotations_[i].begin(), image_annotations_[i].end(),
                                 [&](int64_t a) { return !data_.annotations[a].iscrowd; });
    if (any) indices.push_back(i);
  }
  return indices;
}

int CocoDataset::class_of_category(int64_t category_id) const {
  const auto it = class_of_category_.find(category_id);
  if (it == class_of_category_.end())
    throw std::out_of_range("CocoDataset " + source_ + ": unknown category id " +
                            std::to_string(category_id));
  return it->second;
}

int64_t CocoDataset::category_of_class(int class_index) const {
  if (class_index < 0 || class_index >= num_classes()) {
    throw std::out_of_range("CocoDataset " + source_ + ": class index " + std::to_string(class_index) +
                            " out of range [0, " + std::to_string(num_classes()) + ")");
  }
  return data_.categories[class_categories_[class_index]].id;
}

const std::string& CocoDataset::class_name(int class_index) const {
  category_of_class(class_index);  // range check
  return data_.categories[class_categories_[class_index]].name;
}

// ---------------------------------------------------------------------------------------------------
// Detections out

CocoDetections to_coco_detections(const CocoDataset& dataset, const std::vector<ClassDetection>& detections) {
  CocoDetections out;
  out.source = "detections on " + dataset.source();
  out.entries.reserve(detections.size());
  for (size_t i = 0; i < detections.size(); ++i) {
    const ClassDetection& d = detections[i];
    const std::string where = entry("detections", i);
    try {
      dataset.index_of_image_id(d.image_id);
      CocoDetection det;
      det.image_id = d.image_id;
      det.category_id = dataset.category_of_class(d.class_index);
      det.bbox = {d.box.x1, d.box.y1, d.box.width(), d.box.height()};
      det.score = d.score;
      if (!is_finite_box(det.bbox) || !std::isfinite(det.score))
        fail(out.source, where + ": non-finite value");
      out.entries.push_back(det);
    } catch (const std::out_of_range& e) {
      fail(out.source, where + ": " + e.what());
    }
  }
  return out;
}

json coco_detections_to_json(const CocoDetections& detections) {
  json out = json::array();
  for (size_t i = 0; i < detections.entries.size(); ++i) {
    const CocoDetection& d = detections.entries[i];
    if (!is_finite_box(d.bbox) || !std::isfinite(d.score))
      fail(detections.source, entry("detections", i) + ": non-finite value");
    out.push_back({{"image_id", d.image_id},
                   {"category_id", d.category_id},
                   {"bbox", box_json(d.bbox)},
                   {"score", d.score}});
  }
  return out;
}

void write_coco_detections(const std::string& path, const CocoDetections& detections) {
  write_file_atomically(path, coco_detections_to_json(detections).dump() + "\n");
}

}  // namespace icd
