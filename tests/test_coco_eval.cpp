// COCO bbox evaluator: the 10 pycocotools golden cases (tests/fixtures/cocoeval/README.md), a small case
// computed by hand, the summary text, the JSON output, and bad input.
#include <doctest/doctest.h>

#include "temp_dir.h"
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "datasets/coco_eval.h"

using namespace icd;
using nlohmann::json;

namespace {

const std::string kCocoFixtures = std::string(ICD_FIXTURE_DIR) + "/cocoeval/";

json read_json(const std::string& path) {
  std::ifstream in(path);
  REQUIRE_MESSAGE(in.good(), "cannot open " << path);
  return json::parse(in);
}

// A file holding `text` in this process's temporary folder (removed when the tests end).
std::string write_temp_file(const std::string& name, const std::string& text) {
  static const icd::testing::TempDir dir("coco_eval");
  return dir.write_text(name, text);
}

CocoGroundTruth::Annotation annotation(int64_t id, int64_t image_id, int64_t category_id, BoxXYWH box,
                                       double area, bool iscrowd = false) {
  return {id, image_id, category_id, box, area, iscrowd};
}

// One image (id 7), one category (id 1): two 10x10 GTs (area 100: small), three detections:
//   score 0.9: exactly GT 1                      -> TP at every IoU threshold
//   score 0.8: 200x200 far away (area 40000)     -> FP for area "all", ignored for "small"
//   score 0.7: top 62% of GT 2 (IoU 0.62)        -> TP at IoU 0.50/0.55/0.60, FP from 0.65 on
CocoGroundTruth hand_ground_truth() {
  CocoGroundTruth gt;
  gt.source = "hand_gt";
  gt.image_ids = {7};
  gt.categories = {{1, "thing"}};
  gt.annotations = {annotation(1, 7, 1, {0, 0, 10, 10}, 100), annotation(2, 7, 1, {20, 0, 10, 10}, 100)};
  return gt;
}

CocoDetections hand_detections() {
  CocoDetections dt;
  dt.source = "hand_dt";
  dt.entries = {
      {7, 1, {0, 0, 10, 10}, 0.9}, {7, 1, {100, 100, 200, 200}, 0.8}, {7, 1, {20, 0, 10, 6.2}, 0.7}};
  return dt;
}

const char* const kGoldenCases[] = {"p01_iou_ladder_recall_grid",
                                    "p02_realistic",
                                    "p03_crowd",
                                    "p04_empty_images_and_categories",
                                    "p05_maxdets_truncation",
                                    "p06_tied_scores",
                                    "p07_area_bounds",
                                    "p08_tiny_degenerate",
                                    "p09_perfect",
                                    "p10_all_wrong"};

const std::string kGoodGroundTruth = R"({
  "images": [{"id": 3, "width": 64, "height": 64, "file_name": "a.png"}],
  "categories": [{"id": 1, "name": "thing", "supercategory": "x"}],
  "annotations": [{"id": 1, "image_id": 3, "category_id": 1, "bbox": [1, 2, 30, 40], "area": 1200,
                   "iscrowd": 0}]})";

// Evaluates kGoodGroundTruth with `gt_text` or `dt_text` replaced; both are written to files.
CocoEvalResult evaluate_texts(const std::string& gt_text, const std::string& dt_text) {
  const std::string gt_path = write_temp_file("gt.json", gt_text);
  const std::string dt_path = write_temp_file("dt.json", dt_text);
  return evaluate_coco_bbox(load_coco_ground_truth(gt_path), load_coco_detections(dt_path));
}

const json kRemove = json(json::value_t::discarded);

// `object` with `key` set to `value`, or removed when `value` is kRemove.
json with_field(json object, const std::string& key, const json& value) {
  if (value.is_discarded()) {
    object.erase(key);
  } else {
    object[key] = value;
  }
  return object;
}

// kGoodGroundTruth with one field of its annotation changed.
std::string ground_truth_with(const std::string& key, const json& value) {
  json gt = json::parse(kGoodGroundTruth);
  gt["annotations"][0] = with_field(gt["annotations"][0], key, value);
  return gt.dump();
}

// A detections file: one good detection on kGoodGroundTruth's image, then one with a field changed.
std::string detections_with(const std::string& key, const json& value) {
  const json good = {{"image_id", 3}, {"category_id", 1}, {"bbox", {1, 2, 3, 4}}, {"score", 0.5}};
  return json::array({good, with_field(good, key, value)}).dump();
}

// One changed field and the error it must cause.
struct BadField {
  const char* key;
  json value;
  const char* message;
};

}  // namespace

TEST_CASE("thresholds are numpy.linspace's, bit for bit") {
  const auto& iou = coco_iou_thresholds();
  const double expected_iou[] = {0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.8999999999999999, 0.95};
  for (int t = 0; t < kCocoIouThresholdCount; ++t) {
    CAPTURE(t);
    CHECK(iou[t] == expected_iou[t]);
  }
  // numpy's values differ from k/100 at exactly these ten places.
  const std::vector<std::pair<int, double>> off_grid = {{35, 0.35000000000000003}, {41, 0.41000000000000003},
                                                        {47, 0.47000000000000003}, {57, 0.5700000000000001},
                                                        {69, 0.6900000000000001},  {70, 0.7000000000000001},
                                                        {82, 0.8200000000000001},  {83, 0.8300000000000001},
                                                        {94, 0.9400000000000001},  {95, 0.9500000000000001}};
  const auto& recall = coco_recall_thresholds();
  for (int r = 0; r < kCocoRecallThresholdCount; ++r) {
    double expected = r / 100.0;
    for (const auto& [index, value] : off_grid) {
      if (index == r) expected = value;
    }
    CAPTURE(r);
    CHECK(recall[r] == expected);
  }
}

TEST_CASE("golden cases: all 12 stats, per-category AP and counts match pycocotools") {
  constexpr double kTolerance = 1e-9;
  for (const char* name : kGoldenCases) {
    CAPTURE(name);
    const std::string dir = kCocoFixtures + name + "/";
    const json expected = read_json(dir + "expected.json");
    const CocoEvalResult result =
        evaluate_coco_bbox(load_coco_ground_truth(dir + "gt.json"), load_coco_detections(dir + "dt.json"));

    REQUIRE(expected.at("stats").size() == result.stats.size());
    for (size_t i = 0; i < result.stats.size(); ++i) {
      CAPTURE(kCocoStatNames[i]);
      CHECK(expected.at("stats_names")[i].get<std::string>() == kCocoStatNames[i]);
      CHECK(std::abs(result.stats[i] - expected.at("stats")[i].get<double>()) <= kTolerance);
    }

    const json& categories = expected.at("per_category");
    REQUIRE(categories.size() == result.per_category.size());
    for (size_t k = 0; k < categories.size(); ++k) {
      const CocoCategoryResult& ours = result.per_category[k];
      CAPTURE(ours.category_id);
      CHECK(ours.category_id == categories[k].at("category_id").get<int64_t>());
      CHECK(ours.name == categories[k].at("name").get<std::string>());
      CHECK(std::abs(ours.ap - categories[k].at("AP").get<double>()) <= kTolerance);
      CHECK(std::abs(ours.ap50 - categories[k].at("AP50").get<double>()) <= kTolerance);
      CHECK(std::abs(ours.ap75 - categories[k].at("AP75").get<double>()) <= kTolerance);
      CHECK(std::abs(ours.ar100 - categories[k].at("AR100").get<double>()) <= kTolerance);
    }

    const json& counts = expected.at("counts");
    CHECK(result.counts.images == counts.at("images").get<int64_t>());
    CHECK(result.counts.categories == counts.at("categories").get<int64_t>());
    CHECK(result.counts.gt == counts.at("gt").get<int64_t>());
    CHECK(result.counts.gt_crowd == counts.at("gt_crowd").get<int64_t>());
    CHECK(result.counts.dt == counts.at("dt").get<int64_t>());

    // The JSON output has every field of expected.json (apart from the case name), with our numbers.
    const json ours = coco_eval_to_json(result);
    for (const auto& [key, value] : expected.items()) {
      if (key != "case") CHECK_MESSAGE(ours.contains(key), key);
    }
    CHECK(ours.at("stats_names") == expected.at("stats_names"));
    CHECK(ours.at("per_category").size() == categories.size());
    CHECK(ours.at("stats_by_name").at("AP").get<double>() == result.stats[0]);
  }
}

TEST_CASE("detections of a category missing from the ground truth are skipped and counted") {
  const CocoEvalResult result =
      evaluate_coco_bbox(load_coco_ground_truth(kCocoFixtures + "p04_empty_images_and_categories/gt.json"),
                         load_coco_detections(kCocoFixtures + "p04_empty_images_and_categories/dt.json"));
  CHECK(result.counts.dt_unknown_category == 1);  // the one detection of category 99
}

TEST_CASE("hand-computed case: matching, area ignore, interpolation and maxDets") {
  const CocoEvalResult result = evaluate_coco_bbox(hand_ground_truth(), hand_detections());
  constexpr double kTolerance = 1e-12;  // precision = tp / (tp + fp + 2^-52) is 1 only up to 2e-16
  // IoU 0.50-0.60: precision 1 up to recall 0.5 (51 thresholds), then 2/3; IoU 0.65-0.95: 1, then 0.
  const double ap = (3 * (51 + 50 * (2.0 / 3)) + 7 * 51) / 1010;
  CHECK(result.stats[0] == doctest::Approx(ap).epsilon(kTolerance));
  CHECK(result.stats[1] == doctest::Approx((51 + 50 * (2.0 / 3)) / 101).epsilon(kTolerance));
  CHECK(result.stats[2] == doctest::Approx(51.0 / 101).epsilon(kTolerance));
  // Small: the 200x200 false positive is outside the range and unmatched, so it is ignored.
  CHECK(result.stats[3] == doctest::Approx((3 * 101 + 7 * 51) / 1010.0).epsilon(kTolerance));
  CHECK(result.stats[4] == -1);    // no medium GT
  CHECK(result.stats[5] == -1);    // no large GT
  CHECK(result.stats[6] == 0.5);   // AR1: only the 0.9 detection
  CHECK(result.stats[7] == 0.65);  // (3 * 1 + 7 * 0.5) / 10
  CHECK(result.stats[8] == 0.65);
  CHECK(result.stats[9] == 0.65);
  CHECK(result.stats[10] == -1);
  CHECK(result.stats[11] == -1);

  REQUIRE(result.per_category.size() == 1);
  CHECK(result.per_category[0].category_id == 1);
  CHECK(result.per_category[0].name == "thing");
  CHECK(result.per_category[0].ap == doctest::Approx(ap).epsilon(kTolerance));
  CHECK(result.per_category[0].ar100 == 0.65);

  // The curves: recall threshold 50 is exactly 0.5, reached by the first detection.
  const int all = 0, m100 = 2, small = 1;
  CHECK(result.precision_at(0, 50, 0, all, m100) == doctest::Approx(1.0).epsilon(kTolerance));
  CHECK(result.precision_at(0, 51, 0, all, m100) == doctest::Approx(2.0 / 3).epsilon(kTolerance));
  CHECK(result.precision_at(0, 100, 0, small, m100) == doctest::Approx(1.0).epsilon(kTolerance));
  CHECK(result.precision_at(3, 51, 0, all, m100) == 0);
  CHECK(result.recall_at(0, 0, all, m100) == 1);
  CHECK(result.recall_at(3, 0, all, m100) == 0.5);
  CHECK(result.recall_at(0, 0, all, 0) == 0.5);
  CHECK(result.precision_at(0, 0, 0, 2, m100) == -1);  // medium: undefined

  CHECK(result.counts.images == 1);
  CHECK(result.counts.gt == 2);
  CHECK(result.counts.dt == 3);
  CHECK(result.counts.dt_unknown_category == 0);
}

TEST_CASE("hand-computed case: a crowd region absorbs detections, ties keep input order") {
  CocoGroundTruth gt = hand_ground_truth();
  // A crowd region around the far-away false positive: that detection is now ignored at every threshold
  // (its crowd IoU, intersection / detection area, is 1), so area "all" matches the "small" result above.
  gt.annotations.push_back(annotation(3, 7, 1, {50, 50, 400, 400}, 160000, true));
  const CocoEvalResult crowd = evaluate_coco_bbox(gt, hand_detections());
  CHECK(crowd.stats[0] == doctest::Approx((3 * 101 + 7 * 51) / 1010.0).epsilon(1e-12));
  CHECK(crowd.counts.gt_crowd == 1);

  // Two detections with the same score on GT 1: the first listed takes it, the second is a false
  // positive. Listed the other way round, the IoU-0.6 one comes first and takes the GT only up to 0.6.
  CocoGroundTruth one;
  one.source = "one";
  one.image_ids = {1};
  one.categories = {{1, "thing"}};
  one.annotations = {annotation(1, 1, 1, {0, 0, 10, 10}, 100)};
  CocoDetections exact_first{"exact_first", {{1, 1, {0, 0, 10, 10}, 0.5}, {1, 1, {0, 0, 10, 6}, 0.5}}};
  CocoDetections partial_first{"partial_first", {{1, 1, {0, 0, 10, 6}, 0.5}, {1, 1, {0, 0, 10, 10}, 0.5}}};
  const CocoEvalResult a = evaluate_coco_bbox(one, exact_first);
  const CocoEvalResult b = evaluate_coco_bbox(one, partial_first);
  CHECK(a.stats[8] == 1);    // AR100: GT found at every threshold
  CHECK(a.stats[6] == 1);    // AR1: the first-listed (exact) detection alone
  CHECK(b.stats[6] == 0.3);  // AR1: IoU 0.6 reaches thresholds 0.50, 0.55, 0.60 only
  CHECK(b.stats[8] == 1);    // AR100: the exact box takes the GT from 0.65 on
}

TEST_CASE("no detections at all: AP and AR are 0 where there is GT, -1 elsewhere") {
  const CocoEvalResult result = evaluate_coco_bbox(hand_ground_truth(), CocoDetections{"empty", {}});
  CHECK(result.stats[0] == 0);
  CHECK(result.stats[3] == 0);
  CHECK(result.stats[4] == -1);
  CHECK(result.stats[8] == 0);
  CHECK(result.per_category[0].ap == 0);
  CHECK(result.counts.dt == 0);
  CHECK(evaluate_texts(kGoodGroundTruth, "[]").stats[0] == 0);
}

TEST_CASE("summary: the 12 lines pycocotools prints") {
  const std::string text = format_coco_summary(evaluate_coco_bbox(hand_ground_truth(), hand_detections()));
  const std::string expected =
      " Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 0.604\n"
      " Average Precision  (AP) @[ IoU=0.50      | area=   all | maxDets=100 ] = 0.835\n"
      " Average Precision  (AP) @[ IoU=0.75      | area=   all | maxDets=100 ] = 0.505\n"
      " Average Precision  (AP) @[ IoU=0.50:0.95 | area= small | maxDets=100 ] = 0.653\n"
      " Average Precision  (AP) @[ IoU=0.50:0.95 | area=medium | maxDets=100 ] = -1.000\n"
      " Average Precision  (AP) @[ IoU=0.50:0.95 | area= large | maxDets=100 ] = -1.000\n"
      " Average Recall     (AR) @[ IoU=0.50:0.95 | area=   all | maxDets=  1 ] = 0.500\n"
      " Average Recall     (AR) @[ IoU=0.50:0.95 | area=   all | maxDets= 10 ] = 0.650\n"
      " Average Recall     (AR) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 0.650\n"
      " Average Recall     (AR) @[ IoU=0.50:0.95 | area= small | maxDets=100 ] = 0.650\n"
      " Average Recall     (AR) @[ IoU=0.50:0.95 | area=medium | maxDets=100 ] = -1.000\n"
      " Average Recall     (AR) @[ IoU=0.50:0.95 | area= large | maxDets=100 ] = -1.000\n";
  CHECK(text == expected);
}

TEST_CASE("bad files: a clear error naming the file") {
  using doctest::Contains;
  const std::string missing = (std::filesystem::temp_directory_path() / "icd_no_such_file.json").string();
  CHECK_THROWS_WITH_AS(load_coco_ground_truth(missing), Contains("icd_no_such_file.json: cannot open"),
                       std::runtime_error);

  const std::string truncated = write_temp_file("truncated_gt.json", R"({"images": [{"id": 1})");
  CHECK_THROWS_WITH_AS(load_coco_ground_truth(truncated), Contains("truncated_gt.json: malformed JSON"),
                       std::runtime_error);
  // Python's json.dump writes NaN scores as a bare NaN, which is not JSON.
  const std::string nan_literal = write_temp_file(
      "nan_dt.json", R"([{"image_id": 3, "category_id": 1, "bbox": [1, 2, 3, 4], "score": NaN}])");
  CHECK_THROWS_WITH_AS(load_coco_detections(nan_literal), Contains("nan_dt.json: malformed JSON"),
                       std::runtime_error);
  const std::string object_dt = write_temp_file("object_dt.json", R"({"annotations": []})");
  CHECK_THROWS_WITH_AS(load_coco_detections(object_dt),
                       Contains("object_dt.json: detections must be a JSON array"), std::runtime_error);
}

TEST_CASE("bad ground truth: missing keys, wrong types, inconsistent ids") {
  using doctest::Contains;
  const std::string no_detections = "[]";
  CHECK_THROWS_WITH_AS(evaluate_texts(R"({"images": [], "categories": []})", no_detections),
                       Contains("gt.json: top level: missing key \"annotations\""), std::runtime_error);
  CHECK_THROWS_WITH_AS(
      evaluate_texts(R"({"images": {}, "categories": [], "annotations": []})", no_detections),
      Contains("\"images\" must be an array"), std::runtime_error);
  const BadField bad_annotations[] = {
      {"area", kRemove, "gt.json: annotations[0]: missing key \"area\""},
      {"image_id", "3", "annotations[0]: \"image_id\" must be an integer, got \"3\""},
      {"bbox", {1, 2, 30}, "annotations[0]: \"bbox\" must be [x, y, width, height]"},
      {"iscrowd", 2, "annotations[0]: \"iscrowd\" must be 0 or 1"},
      {"bbox", {1, 2, -3, 4}, "gt.json: annotations[0] (id 1): bbox has a negative size"},
      {"image_id", 4, "annotations[0] (id 1): image_id 4 is not in \"images\""},
      {"category_id", 2, "annotations[0] (id 1): category_id 2 is not in \"categories\""},
      {"id", 0, "annotations[0] (id 0): annotation ids must be positive"},
  };
  for (const BadField& bad : bad_annotations) {
    CAPTURE(bad.message);
    CHECK_THROWS_WITH_AS(evaluate_texts(ground_truth_with(bad.key, bad.value), no_detections),
                         Contains(bad.message), std::runtime_error);
  }

  CocoGroundTruth gt = hand_ground_truth();
  gt.annotations[1].id = 1;
  CHECK_THROWS_WITH_AS(evaluate_coco_bbox(gt, hand_detections()),
                       Contains("hand_gt: annotations[1] (id 1): duplicate annotation id"),
                       std::runtime_error);
  gt = hand_ground_truth();
  gt.image_ids = {7, 8, 7};
  CHECK_THROWS_WITH_AS(evaluate_coco_bbox(gt, hand_detections()),
                       Contains("hand_gt: images[2]: duplicate image id 7"), std::runtime_error);
  gt = hand_ground_truth();
  gt.annotations[0].area = std::nan("");
  CHECK_THROWS_WITH_AS(evaluate_coco_bbox(gt, hand_detections()),
                       Contains("annotations[0] (id 1): area must be finite"), std::runtime_error);
}

TEST_CASE("bad detections: unknown image, NaN score, negative width, missing keys") {
  using doctest::Contains;
  const BadField bad_detections[] = {
      {"image_id", 99, "dt.json: detections[1]: image_id 99 is not an image of"},
      {"bbox", {1, 2, -3, 4}, "dt.json: detections[1]: bbox has a negative size"},
      {"score", kRemove, "dt.json: detections[1]: missing key \"score\""},
      {"score", "high", "dt.json: detections[1]: \"score\" must be a number"},
      {"category_id", 1.5, "dt.json: detections[1]: \"category_id\" must be an integer"},
  };
  for (const BadField& bad : bad_detections) {
    CAPTURE(bad.message);
    CHECK_THROWS_WITH_AS(evaluate_texts(kGoodGroundTruth, detections_with(bad.key, bad.value)),
                         Contains(bad.message), std::runtime_error);
  }
  CHECK_THROWS_WITH_AS(evaluate_texts(kGoodGroundTruth, "[5]"),
                       Contains("dt.json: detections[0]: expected a JSON object"), std::runtime_error);

  CocoDetections dt = hand_detections();
  dt.entries[2].score = std::nan("");
  CHECK_THROWS_WITH_AS(evaluate_coco_bbox(hand_ground_truth(), dt),
                       Contains("hand_dt: detections[2]: score is not finite"), std::runtime_error);
  dt = hand_detections();
  dt.entries[1].bbox.height = -0.5;
  CHECK_THROWS_WITH_AS(evaluate_coco_bbox(hand_ground_truth(), dt),
                       Contains("hand_dt: detections[1]: bbox has a negative size"), std::runtime_error);
  dt = hand_detections();
  dt.entries[0].bbox.x = INFINITY;
  CHECK_THROWS_WITH_AS(evaluate_coco_bbox(hand_ground_truth(), dt),
                       Contains("hand_dt: detections[0]: bbox has a non-finite value"), std::runtime_error);
}
