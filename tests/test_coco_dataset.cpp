// COCO data: a written file reads back equal (and byte-identical when written twice), every validation
// error names its entry, the counted rules (clip, drop empty, crowd kept out of targets, images without
// targets), contiguous class ids and back, and detections out through the evaluator's reader.
#include <doctest/doctest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "datasets/coco_dataset.h"
#include "temp_dir.h"

using namespace icd;
using doctest::Contains;
using icd::testing::read_bytes;
using icd::testing::TempDir;
using nlohmann::json;

namespace {

CocoData small_data() {
  CocoData data;
  data.images = {{10, "a.png", 100, 50}, {20, "sub/b.jpg", 40, 80}};
  data.categories = {{7, "shirt", "clothes"}, {3, "boot", "shoes"}, {12, "bag", ""}};
  data.annotations = {{1, 10, 7, {10, 5, 20, 10}, 200, false},
                      {2, 10, 3, {0.5, 1.25, 3.75, 2.5}, 9.375, false},
                      {3, 20, 12, {4, 4, 30, 60}, 1800, true}};
  return data;
}

const char* const kGoodJson = R"({
  "info": {"description": "ignored"}, "licenses": [],
  "images": [{"id": 1, "file_name": "x.png", "width": 64, "height": 48, "license": 0}],
  "categories": [{"id": 5, "name": "thing"}],
  "annotations": [{"id": 9, "image_id": 1, "category_id": 5, "bbox": [1, 2, 30.5, 20], "area": 610,
                   "iscrowd": false, "segmentation": []}]})";

// Parses kGoodJson after `edit` and requires an error containing `expected`.
void check_rejected(const std::function<void(json&)>& edit, const std::string& expected) {
  json root = json::parse(kGoodJson);
  edit(root);
  CAPTURE(expected);
  CHECK_THROWS_WITH_AS(parse_coco_data(root, "bad.json"), Contains(("coco: bad.json: " + expected).c_str()),
                       std::runtime_error);
}

}  // namespace

TEST_CASE("COCO data round trip through a file, deterministic bytes") {
  TempDir dir("coco_dataset");
  const CocoData data = small_data();
  write_coco_data(dir.file("data.json"), data);
  const CocoData back = read_coco_data(dir.file("data.json"));
  REQUIRE(back.images.size() == 2);
  CHECK(back.images[1].id == 20);
  CHECK(back.images[1].file_name == "sub/b.jpg");
  CHECK(back.images[1].width == 40);
  CHECK(back.images[1].height == 80);
  REQUIRE(back.categories.size() == 3);
  CHECK(back.categories[0].name == "shirt");
  CHECK(back.categories[0].supercategory == "clothes");
  CHECK(back.categories[2].id == 12);
  REQUIRE(back.annotations.size() == 3);
  const CocoAnnotation& ann = back.annotations[1];
  CHECK(ann.id == 2);
  CHECK(ann.image_id == 10);
  CHECK(ann.category_id == 3);
  CHECK(ann.bbox.x == 0.5);
  CHECK(ann.bbox.y == 1.25);
  CHECK(ann.bbox.width == 3.75);
  CHECK(ann.bbox.height == 2.5);
  CHECK(ann.area == 9.375);
  CHECK(!ann.iscrowd);
  CHECK(back.annotations[2].iscrowd);

  write_coco_data(dir.file("again.json"), back);
  CHECK(read_bytes(dir.file("again.json")) == read_bytes(dir.file("data.json")));
  const json written = json::parse(read_bytes(dir.file("data.json")));
  CHECK(written["annotations"][2]["iscrowd"] == 1);
}

TEST_CASE("a COCO file with extra keys, optional supercategory and boolean iscrowd reads") {
  const CocoData data = parse_coco_data(json::parse(kGoodJson), "good.json");
  REQUIRE(data.annotations.size() == 1);
  CHECK(data.annotations[0].bbox.width == 30.5);
  CHECK(data.categories[0].supercategory.empty());
  CHECK(!data.annotations[0].iscrowd);
}

TEST_CASE("every malformed entry gives an error naming it") {
  check_rejected([](json& j) { j = json::array(); }, "expected a JSON object");
  check_rejected([](json& j) { j.erase("images"); }, "top level: missing key \"images\"");
  check_rejected([](json& j) { j["annotations"] = json::object(); }, "\"annotations\" must be an array");
  check_rejected([](json& j) { j["images"][0].erase("width"); }, "images[0]: missing key \"width\"");
  check_rejected([](json& j) { j["images"][0]["height"] = "48"; },
                 "images[0]: \"height\" must be an integer");
  check_rejected([](json& j) { j["images"][0]["width"] = 1e12; }, "images[0]: \"width\" must be an integer");
  check_rejected([](json& j) { j["images"][0]["width"] = int64_t{1} << 40; },
                 "images[0]: \"width\" is out of range");
  check_rejected([](json& j) { j["images"][0]["id"] = 1.5; }, "images[0]: \"id\" must be an integer");
  check_rejected([](json& j) { j["images"][0]["file_name"] = 3; },
                 "images[0]: \"file_name\" must be a string");
  check_rejected([](json& j) { j["images"][0] = 1; }, "images[0]: expected a JSON object");
  check_rejected([](json& j) { j["categories"][0].erase("name"); }, "categories[0]: missing key \"name\"");
  check_rejected([](json& j) { j["categories"][0]["supercategory"] = 1; },
                 "categories[0]: \"supercategory\" must be a string");
  check_rejected(
      [](json& j) {
        j["annotations"][0]["bbox"] = {1, 2, 3};
      },
      "annotations[0]: \"bbox\" must be [x, y, width, height]");
  check_rejected([](json& j) { j["annotations"][0]["bbox"][2] = "wide"; },
                 "annotations[0]: \"bbox\" must be [x, y, width, height]");
  check_rejected([](json& j) { j["annotations"][0].erase("area"); }, "annotations[0]: missing key \"area\"");
  check_rejected([](json& j) { j["annotations"][0]["iscrowd"] = 2; },
                 "annotations[0]: \"iscrowd\" must be 0 or 1");
  check_rejected([](json& j) { j["annotations"][0].erase("category_id"); },
                 "annotations[0]: missing key \"category_id\"");
}

TEST_CASE("inconsistent ids and bad values give errors naming the entry") {
  check_rejected([](json& j) { j["images"].push_back(j["images"][0]); },
                 "images[1] (id 1): duplicate image id");
  check_rejected([](json& j) { j["categories"].push_back(j["categories"][0]); },
                 "categories[1]: duplicate category id 5");
  check_rejected([](json& j) { j["annotations"].push_back(j["annotations"][0]); },
                 "annotations[1] (id 9): duplicate annotation id");
  check_rejected([](json& j) { j["annotations"][0]["id"] = 0; },
                 "annotations[0] (id 0): annotation ids must be positive");
  check_rejected([](json& j) { j["annotations"][0]["image_id"] = 2; },
                 "annotations[0] (id 9): unknown image_id 2");
  check_rejected([](json& j) { j["annotations"][0]["category_id"] = 1; },
                 "annotations[0] (id 9): unknown category_id 1");
  check_rejected([](json& j) { j["annotations"][0]["bbox"][3] = -1; },
                 "annotations[0] (id 9): bbox has a negative size");
  check_rejected([](json& j) { j["annotations"][0]["area"] = -3; },
                 "annotations[0] (id 9): area must be finite");
  check_rejected([](json& j) { j["images"][0]["width"] = 0; },
                 "images[0] (id 1): size must be at least 1 x 1");
  check_rejected([](json& j) { j["images"][0]["file_name"] = ""; }, "images[0] (id 1): empty file_name");

  // Non-finite values cannot be written in JSON, but in-memory data is checked too, and never written.
  TempDir dir("coco_dataset");
  CocoData data = small_data();
  data.annotations[0].bbox.x = std::numeric_limits<double>::quiet_NaN();
  CHECK_THROWS_WITH_AS(validate_coco_data(data, "memory"),
                       Contains("annotations[0] (id 1): bbox has a non-finite"), std::runtime_error);
  CHECK_THROWS_WITH_AS(write_coco_data(dir.file("nan.json"), data), Contains("nan.json (not written)"),
                       std::runtime_error);
  CHECK(!std::filesystem::exists(dir.file("nan.json")));
  CHECK_THROWS_AS(CocoDataset(data, "memory", ""), std::runtime_error);
}

TEST_CASE("missing and malformed files name the file") {
  TempDir dir("coco_dataset");
  CHECK_THROWS_WITH_AS(read_coco_data(dir.file("none.json")), Contains("none.json: cannot open"),
                       std::runtime_error);
  const std::string truncated = dir.write_text("cut.json", std::string(kGoodJson).substr(0, 80));
  CHECK_THROWS_WITH_AS(read_coco_data(truncated), Contains("cut.json: malformed JSON"), std::runtime_error);
  CHECK_THROWS_WITH_AS(CocoDataset::load(truncated), Contains("cut.json: malformed JSON"),
                       std::runtime_error);
  CHECK_THROWS_WITH_AS(write_coco_data(dir.file("no_dir/x.json"), small_data()),
                       Contains("x.json: cannot create"), std::runtime_error);
}

TEST_CASE("rules: clip to the image, drop empty boxes, keep crowd out of targets, all counted") {
  CocoData data;
  data.images = {{1, "wide.png", 100, 50}, {2, "empty.png", 30, 30}, {3, "crowd_only.png", 30, 30}};
  data.categories = {{4, "a", ""}, {2, "b", ""}};
  data.annotations = {{1, 1, 4, {10, 5, 20, 10}, 200, false},   // inside: unchanged
                      {2, 1, 2, {-5, 40, 30, 20}, 600, false},  // partly outside: [0, 40, 25, 10]
                      {3, 1, 4, {120, 10, 5, 5}, 25, false},    // wholly outside: empty after clipping
                      {4, 1, 2, {50, 20, 0, 8}, 0, false},      // zero width: empty
                      {5, 1, 4, {60, 0, 40, 50}, 2000, true},   // crowd: kept, not a target
                      {6, 3, 2, {0, 0, 10, 10}, 100, true},     // the only annotation of image 3 is crowd
                      {7, 1, 2, {90, -3, 20, 6}, 120, false}};  // clipped on two sides: [90, 0, 10, 3]
  const CocoDataset dataset(data, "rules.json", "/images");
  const CocoDatasetCounts& counts = dataset.counts();
  CHECK(counts.images == 3);
  CHECK(counts.categories == 2);
  CHECK(counts.annotations == 7);
  CHECK(counts.boxes_clipped == 2);
  CHECK(counts.boxes_dropped_empty == 2);
  CHECK(counts.crowd == 2);
  CHECK(counts.targets == 3);
  CHECK(counts.images_without_targets == 2);
  CHECK(dataset.images_with_targets() == std::vector<int64_t>{0});
  CHECK(dataset.data().annotations.size() == 5);  // crowd kept in the data
  const std::string summary = dataset.summary();
  CHECK(summary.find("2 boxes clipped") != std::string::npos);
  CHECK(summary.find("2 empty boxes dropped") != std::string::npos);
  CHECK(summary.find("2 crowd regions") != std::string::npos);

  // Classes by ascending category id: 2 -> 0, 4 -> 1.
  const DetectionTargets targets = dataset.targets(0);
  REQUIRE(targets.boxes.size() == 3);
  CHECK(targets.classes == std::vector<int64_t>{1, 0, 0});
  const BoxXYXY& inside = targets.boxes[0];
  CHECK((inside.x1 == 10 && inside.y1 == 5 && inside.x2 == 30 && inside.y2 == 15));
  const BoxXYXY& clipped = targets.boxes[1];
  CHECK((clipped.x1 == 0 && clipped.y1 == 40 && clipped.x2 == 25 && clipped.y2 == 50));
  const BoxXYXY& two_sides = targets.boxes[2];
  CHECK((two_sides.x1 == 90 && two_sides.y1 == 0 && two_sides.x2 == 100 && two_sides.y2 == 3));
  CHECK(dataset.data().annotations[1].area == 600);  // the annotation's own area is kept
  CHECK(dataset.targets(1).boxes.empty());
  CHECK(dataset.targets(2).boxes.empty());
  CHECK(dataset.image_path(0) == "/images/wide.png");
  CHECK(dataset.index_of_image_id(3) == 2);
  CHECK_THROWS_AS(dataset.index_of_image_id(99), std::out_of_range);
  CHECK_THROWS_AS(dataset.targets(3), std::out_of_range);
}

TEST_CASE("contiguous class indices follow ascending category ids and map back") {
  TempDir dir("coco_dataset");
  write_coco_data(dir.file("data.json"), small_data());
  const CocoDataset dataset = CocoDataset::load(dir.file("data.json"));
  CHECK(dataset.image_dir() == dir.path().string());
  CHECK(dataset.image_path(1) == (dir.path() / "sub/b.jpg").string());
  CHECK(CocoDataset::load(dir.file("data.json"), "/elsewhere").image_path(0) == "/elsewhere/a.png");
  REQUIRE(dataset.num_classes() == 3);
  CHECK(dataset.class_of_category(3) == 0);
  CHECK(dataset.class_of_category(7) == 1);
  CHECK(dataset.class_of_category(12) == 2);
  CHECK(dataset.category_of_class(0) == 3);
  CHECK(dataset.category_of_class(2) == 12);
  CHECK(dataset.class_name(1) == "shirt");
  CHECK_THROWS_AS(dataset.class_of_category(5), std::out_of_range);
  CHECK_THROWS_AS(dataset.category_of_class(3), std::out_of_range);
  CHECK_THROWS_AS(dataset.class_name(-1), std::out_of_range);
  CHECK(dataset.targets(0).classes == std::vector<int64_t>{1, 0});
}

TEST_CASE("detections go out in category ids and [x, y, w, h], and the evaluator reads them") {
  TempDir dir("coco_dataset");
  const CocoData data = small_data();
  write_coco_data(dir.file("gt.json"), data);
  const CocoDataset dataset = CocoDataset::load(dir.file("gt.json"));

  // Exactly the two non-crowd boxes of image 10, plus a low-score miss on image 20.
  const std::vector<ClassDetection> detections = {
      {10, dataset.class_of_category(7), {10, 5, 30, 15}, 0.9},
      {10, dataset.class_of_category(3), {0.5, 1.25, 4.25, 3.75}, 0.8},
      {20, 0, {1, 1, 2, 2}, 0.1}};
  const CocoDetections coco = to_coco_detections(dataset, detections);
  REQUIRE(coco.entries.size() == 3);
  CHECK(coco.entries[0].category_id == 7);
  CHECK(coco.entries[1].category_id == 3);
  CHECK(coco.entries[1].bbox.width == 3.75);
  CHECK(coco.entries[1].bbox.height == 2.5);
  write_coco_detections(dir.file("dt.json"), coco);

  const CocoDetections back = load_coco_detections(dir.file("dt.json"));
  REQUIRE(back.entries.size() == 3);
  CHECK(back.entries[2].image_id == 20);
  CHECK(back.entries[0].score == 0.9);
  const CocoEvalResult from_files = evaluate_coco_bbox(load_coco_ground_truth(dir.file("gt.json")), back);
  const CocoEvalResult in_memory = evaluate_coco_bbox(to_coco_ground_truth(data, "memory"), coco);
  CHECK(from_files.stats == in_memory.stats);
  CHECK(from_files.counts.gt_crowd == 1);
  // Categories 3 and 7 are found perfectly; category 12 has only a crowd GT (undefined, -1).
  CHECK(from_files.stats[0] == doctest::Approx(1.0));

  CHECK_THROWS_WITH_AS(to_coco_detections(dataset, {{99, 0, {0, 0, 1, 1}, 0.5}}),
                       Contains("detections[0]: CocoDataset"), std::runtime_error);
  CHECK_THROWS_WITH_AS(to_coco_detections(dataset, {{10, 0, {0, 0, 1, 1}, 0.5}, {10, 3, {0, 0, 1, 1}, 0.5}}),
                       Contains("detections[1]: CocoDataset"), std::runtime_error);
  CHECK_THROWS_WITH_AS(to_coco_detections(dataset, {{10, 0, {0, 0, 1, NAN}, 0.5}}),
                       Contains("detections[0]: non-finite"), std::runtime_error);
}
