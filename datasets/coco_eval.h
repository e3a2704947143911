// COCO bounding-box mAP, reproducing pycocotools' COCOeval (iouType "bbox", default parameters) to the
// last digit. The golden cases in tests/fixtures/cocoeval/ (README there) pin the details:
//
//   IoU thresholds     numpy.linspace(0.5, 0.95, 10)   (element 8 is 0.8999999999999999)
//   recall thresholds  numpy.linspace(0.0, 1.0, 101)  (e.g. element 35 is 0.35000000000000003)
//   maxDets            1, 10, 100 detections per (image, category), highest scores first
//   area ranges        all [0, 1e10], small [0, 32^2], medium [32^2, 96^2], large [96^2, 1e10],
//                      both bounds inclusive; a GT's range comes from its `area` field, a detection's
//                      from w*h
//
// Per (image, category) the detections are sorted by score with a stable sort (ties keep their input
// order) and greedily matched, best score first, to the not yet matched GT of highest IoU >= threshold.
// Crowd GT (iscrowd=1) is never a positive; its IoU is intersection / detection area, it can absorb any
// number of detections, and those detections are ignored (neither TP nor FP). GT outside the area range
// is ignored the same way; an unmatched detection outside the range is ignored too. Then per category,
// area range and maxDets, the detections of all images (ascending image id) are sorted by score (stable
// again), the precision/recall curve is made monotone and read at the 101 recall thresholds, and
// AP averages it; -1 marks "undefined" (no non-ignored GT). Means use numpy's summation order.
//
// Departures from pycocotools, all on input it would crash on or silently misread: an empty detection
// list evaluates (AP 0 where GT exists); ground truth annotations on images or categories missing from
// the lists, duplicate ids, negative sizes and non-finite numbers are errors. Detections whose category is
// not in the ground truth are skipped (as COCOeval does) and counted.
#pragma once
#include <array>
#include <cstdint>
#include <iosfwd>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

namespace icd {

// [x, y, width, height] in pixels, top-left origin, no +1 convention.
struct BoxXYWH {
  double x = 0, y = 0, width = 0, height = 0;
};

struct CocoGroundTruth {
  struct Category {
    int64_t id = 0;
    std::string name;
  };
  struct Annotation {
    int64_t id = 0;  // unique, positive
    int64_t image_id = 0;
    int64_t category_id = 0;
    BoxXYWH bbox;
    double area = 0;  // decides the area range (may differ from w*h, e.g. a polygon's area)
    bool iscrowd = false;
  };
  std::string source;  // file name (or another label) that error messages name
  std::vector<int64_t> image_ids;
  std::vector<Category> categories;
  std::vector<Annotation> annotations;
};

struct CocoDetection {
  int64_t image_id = 0;
  int64_t category_id = 0;
  BoxXYWH bbox;
  double score = 0;
};

struct CocoDetections {
  std::string source;                  // file name (or another label) that error messages name
  std::vector<CocoDetection> entries;  // input order: it decides the order of tied scores
};

// Readers of COCO JSON (layouts in tests/fixtures/cocoeval/README.md). They check the structure and
// types and throw std::runtime_error naming the file and the entry; values are checked by evaluate.
CocoGroundTruth parse_coco_ground_truth(const nlohmann::json& json, const std::string& source);
CocoGroundTruth load_coco_ground_truth(const std::string& path);
CocoDetections parse_coco_detections(const nlohmann::json& json, const std::string& source);
CocoDetections load_coco_detections(const std::string& path);

inline constexpr int kCocoIouThresholdCount = 10;
inline constexpr int kCocoRecallThresholdCount = 101;
inline constexpr int kCocoAreaRangeCount = 4;  // all, small, medium, large
inline constexpr std::array<int, 3> kCocoMaxDets = {1, 10, 100};
inline constexpr std::array<const char*, 12> kCocoStatNames = {"AP",  "AP50", "AP75",  "APs", "APm", "APl",
                                                               "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"};

// The thresholds exactly as numpy.linspace computes them.
const std::array<double, kCocoIouThresholdCount>& coco_iou_thresholds();
const std::array<double, kCocoRecallThresholdCount>& coco_recall_thresholds();

struct CocoCategoryResult {
  int64_t category_id = 0;
  std::string name;
  // Area "all", maxDets 100; -1 when the category has no non-ignored GT.
  double ap = -1, ap50 = -1, ap75 = -1, ar100 = -1;
};

struct CocoEvalCounts {
  int64_t images = 0, categories = 0;
  int64_t gt = 0, gt_crowd = 0;             // gt counts crowd annotations too
  int64_t dt = 0, dt_unknown_category = 0;  // dt counts every entry, skipped ones too
};

struct CocoEvalResult {
  std::array<double, 12> stats{};                // COCOeval.stats, named by kCocoStatNames
  std::vector<CocoCategoryResult> per_category;  // ascending category id
  CocoEvalCounts counts;
  // COCOeval.eval["precision"] [T][R][K][A][M] and ["recall"] [T][K][A][M], row-major, -1 = undefined;
  // K indexes categories in ascending id, A = all/small/medium/large, M = kCocoMaxDets.
  std::vector<double> precision;
  std::vector<double> recall;

  double precision_at(int iou, int recall_threshold, int category, int area, int max_dets) const;
  double recall_at(int iou, int category, int area, int max_dets) const;
};

// Throws std::runtime_error naming the source and the entry for inconsistent or invalid input.
CocoEvalResult evaluate_coco_bbox(const CocoGroundTruth& ground_truth, const CocoDetections& detections);

// The 12 lines COCOeval.summarize() prints, each ending in '\n'.
std::string format_coco_summary(const CocoEvalResult& result);
void print_coco_summary(std::ostream& out, const CocoEvalResult& result);

// {"iou_type", "stats", "stats_names", "stats_by_name", "per_category": [{"category_id", "name", "AP",
//  "AP50", "AP75", "AR100"}], "counts"}: the form of the fixtures' expected.json.
nlohmann::json coco_eval_to_json(const CocoEvalResult& result);

}  // namespace icd
