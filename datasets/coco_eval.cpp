// COCO bbox evaluation, step for step as pycocotools' COCOeval does it (see coco_eval.h for the rules).
//
//   evaluate():   per (category, image): detections sorted by score (stable), cut to 100, IoU matrix
//                 per area range and IoU threshold: greedy matching, which GT/detections are ignored
//   accumulate(): per (category, area, maxDets): every image's first maxDets detections, sorted by score
//                 (stable, images in ascending id), cumulative TP/FP -> recall and precision, precision
//                 made non-increasing from the right, read at the recall thresholds
//   summarize():  means over the entries > -1, in numpy's element order and summation order
//
// The last digit depends on doing the same floating-point operations in the same order, so this file is
// compiled with -ffp-contract=off (no fused multiply-adds: pycocotools' C and numpy use none).
#include "datasets/coco_eval.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <ostream>
#include <stdexcept>
#include <unordered_map>
#include <unordered_set>

namespace icd {
namespace {

using json = nlohmann::json;

constexpr int T = kCocoIouThresholdCount;
constexpr int R = kCocoRecallThresholdCount;
constexpr int A = kCocoAreaRangeCount;
constexpr int M = static_cast<int>(kCocoMaxDets.size());
constexpr int kMaxDetsPerImage = kCocoMaxDets.back();

struct AreaRange {
  double low, high;  // inclusive
  const char* label;
};
// pycocotools: [0, 1e5^2], [0, 32^2], [32^2, 96^2], [96^2, 1e5^2].
constexpr std::array<AreaRange, A> kAreaRanges = {
    {{0.0, 1e10, "all"}, {0.0, 1024.0, "small"}, {1024.0, 9216.0, "medium"}, {9216.0, 1e10, "large"}}};

// numpy.linspace(start, stop, num) with endpoint: start + i * ((stop - start) / (num - 1)), last = stop.
template <size_t N>
std::array<double, N> numpy_linspace(double start, double stop) {
  std::array<double, N> values{};
  const double step = (stop - start) / static_cast<double>(N - 1);
  for (size_t i = 0; i < N; ++i)
    values[i] = static_cast<double>(i) * step + start;
  values[N - 1] = stop;
  return values;
}

// ---------------------------------------------------------------------------------------------------
// Errors and JSON field readers

[[noreturn]] void fail(const std::string& source, const std::string& what) {
  throw std::runtime_error("coco_eval: " + source + ": " + what);
}

json read_json_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, "cannot open file");
  try {
    return json::parse(in);
  } catch (const json::parse_error& e) {
    fail(path, std::string("malformed JSON (") + e.what() + ")");
  }
}

const json& field(const json& object, const char* key, const std::string& source, const std::string& where) {
  if (!object.is_object()) fail(source, where + ": expected a JSON object, got " + object.dump());
  auto it = object.find(key);
  if (it == object.end()) fail(source, where + ": missing key \"" + key + "\"");
  return *it;
}

const json& array_field(const json& object, const char* key, const std::string& source) {
  const json& value = field(object, key, source, "top level");
  if (!value.is_array()) fail(source, std::string("\"") + key + "\" must be an array");
  return value;
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

double number_field(const json& object, const char* key, const std::string& source,
                    const std::string& where) {
  const json& value = field(object, key, source, where);
  if (!value.is_number()) fail(source, where + ": \"" + key + "\" must be a number, got " + value.dump());
  return value.get<double>();
}

BoxXYWH bbox_field(const json& object, const std::string& source, const std::string& where) {
  const json& value = field(object, "bbox", source, where);
  const bool ok = value.is_array() && value.size() == 4 &&
                  std::all_of(value.begin(), value.end(), [](const json& v) { return v.is_number(); });
  if (!ok) fail(source, where + ": \"bbox\" must be [x, y, width, height] (4 numbers), got " + value.dump());
  return {value[0].get<double>(), value[1].get<double>(), value[2].get<double>(), value[3].get<double>()};
}

std::string entry(const char* list, size_t index) {
  return std::string(list) + "[" + std::to_string(index) + "]";
}

// ---------------------------------------------------------------------------------------------------
// Value checks (shared by files and in-memory input)

void check_box(const BoxXYWH& box, const std::string& source, const std::string& where) {
  const bool finite =
      std::isfinite(box.x) && std::isfinite(box.y) && std::isfinite(box.width) && std::isfinite(box.height);
  if (!finite) fail(source, where + ": bbox has a non-finite value");
  if (box.width < 0 || box.height < 0) {
    fail(source, where + ": bbox has a negative size (width " + std::to_string(box.width) + ", height " +
                     std::to_string(box.height) + ")");
  }
}

struct IdIndex {
  std::vector<int64_t> sorted_ids;
  std::unordered_map<int64_t, int> index_of;  // id -> position in sorted_ids

  int find(int64_t id) const {
    auto it = index_of.find(id);
    return it == index_of.end() ? -1 : it->second;
  }
};

IdIndex index_unique_ids(const std::vector<int64_t>& ids, const std::string& source, const char* list,
                         const char* what) {
  IdIndex index;
  std::unordered_set<int64_t> seen;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (!seen.insert(ids[i]).second) {
      fail(source, entry(list, i) + ": duplicate " + what + " id " + std::to_string(ids[i]));
    }
  }
  index.sorted_ids = ids;
  std::sort(index.sorted_ids.begin(), index.sorted_ids.end());
  for (size_t i = 0; i < index.sorted_ids.size(); ++i)
    index.index_of[index.sorted_ids[i]] = static_cast<int>(i);
  return index;
}

// ---------------------------------------------------------------------------------------------------
// Per (category, image) evaluation

// One (category, image) pair with GT or detections (COCOeval.evaluateImg returns None for the others).
struct Cell {
  int image = 0;            // index into the sorted image ids
  std::vector<int> gt;      // annotation indices, input order
  std::vector<int> dt;      // detection indices by descending score (stable), at most kMaxDetsPerImage
  std::vector<double> iou;  // [dt.size()][gt.size()]
};

// pycocotools maskApi.c bbIou: a crowd GT's "union" is the detection's area.
double box_iou(const BoxXYWH& det, const BoxXYWH& gt, bool gt_is_crowd) {
  const double width = std::min(det.x + det.width, gt.x + gt.width) - std::max(det.x, gt.x);
  if (width <= 0) return 0;
  const double height = std::min(det.y + det.height, gt.y + gt.height) - std::max(det.y, gt.y);
  if (height <= 0) return 0;
  const double intersection = width * height;
  const double det_area = det.width * det.height;
  const double gt_area = gt.width * gt.height;
  const double union_area = gt_is_crowd ? det_area : det_area + gt_area - intersection;
  return intersection / union_area;
}

// Orders index lists by descending score, ties in input order (numpy argsort(-score, kind="mergesort")).
template <typename ScoreOf>
void stable_sort_by_descending_score(std::vector<int>& order, ScoreOf score_of) {
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return score_of(a) > score_of(b); });
}

// Outcome of matching one cell for one area range, with maxDets = 100.
struct CellMatches {
  int gt_counted = 0;            // GT that is neither crowd nor outside the area range
  std::vector<uint8_t> matched;  // [T][dt]: matched to some GT (crowd or ignored GT included)
  std::vector<uint8_t> ignored;  // [T][dt]: neither a TP nor an FP
};

void match_cell(const Cell& cell, const std::vector<CocoGroundTruth::Annotation>& annotations,
                const std::vector<CocoDetection>& detections, const AreaRange& range, CellMatches& out) {
  const int num_gt = static_cast<int>(cell.gt.size());
  const int num_dt = static_cast<int>(cell.dt.size());
  std::vector<uint8_t> gt_ignored(num_gt);
  out.gt_counted = 0;
  for (int g = 0; g < num_gt; ++g) {
    const auto& ann = annotations[cell.gt[g]];
    gt_ignored[g] = ann.iscrowd || ann.area < range.low || ann.area > range.high;
    out.gt_counted += !gt_ignored[g];
  }
  // Non-ignored GT first (stable): a detection takes an ignored GT only when no counted GT matches.
  std::vector<int> gt_order(num_gt);
  for (int g = 0; g < num_gt; ++g)
    gt_order[g] = g;
  std::stable_sort(gt_order.begin(), gt_order.end(),
                   [&](int a, int b) { return gt_ignored[a] < gt_ignored[b]; });

  out.matched.assign(static_cast<size_t>(T) * num_dt, 0);
  out.ignored.assign(static_cast<size_t>(T) * num_dt, 0);
  std::vector<uint8_t> gt_taken(num_gt);
  const auto& thresholds = coco_iou_thresholds();
  for (int t = 0; t < T; ++t) {
    std::fill(gt_taken.begin(), gt_taken.end(), 0);
    for (int d = 0; d < num_dt; ++d) {
      double best_iou = std::min(thresholds[t], 1 - 1e-10);
      int best = -1;  // position in gt_order
      for (int pos = 0; pos < num_gt; ++pos) {
        const int g = gt_order[pos];
        const bool crowd = annotations[cell.gt[g]].iscrowd;
        if (gt_taken[pos] && !crowd) continue;
        // Already matched a counted GT and only ignored ones remain: keep it.
        if (best >= 0 && !gt_ignored[gt_order[best]] && gt_ignored[g]) break;
        const double iou = cell.iou[static_cast<size_t>(d) * num_gt + g];
        if (iou < best_iou) continue;  // ties go to the later GT, as in COCOeval
        best_iou = iou;
        best = pos;
      }
      if (best < 0) continue;
      out.ignored[t * num_dt + d] = gt_ignored[gt_order[best]];
      out.matched[t * num_dt + d] = 1;
      gt_taken[best] = 1;
    }
  }
  // An unmatched detection outside the area range is not counted as a false positive.
  for (int d = 0; d < num_dt; ++d) {
    const BoxXYWH& box = detections[cell.dt[d]].bbox;
    const double area = box.width * box.height;
    if (area >= range.low && area <= range.high) continue;
    for (int t = 0; t < T; ++t) {
      if (!out.matched[t * num_dt + d]) out.ignored[t * num_dt + d] = 1;
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// numpy's mean, so that the summaries agree to the last bit

// numpy's pairwise summation of float64 (umath loops_utils: blocks of 8 partial sums, split above 128).
double numpy_pairwise_sum(const double* values, size_t n) {
  if (n < 8) {
    double sum = 0.;
    for (size_t i = 0; i < n; ++i)
      sum += values[i];
    return sum;
  }
  if (n <= 128) {
    double partial[8];
    for (int j = 0; j < 8; ++j)
      partial[j] = values[j];
    size_t i = 8;
    for (; i < n - (n % 8); i += 8) {
      for (int j = 0; j < 8; ++j)
        partial[j] += values[i + j];
    }
    double sum = ((partial[0] + partial[1]) + (partial[2] + partial[3])) +
                 ((partial[4] + partial[5]) + (partial[6] + partial[7]));
    for (; i < n; ++i)
      sum += values[i];
    return sum;
  }
  size_t half = n / 2;
  half -= half % 8;
  return numpy_pairwise_sum(values, half) + numpy_pairwise_sum(values + half, n - half);
}

// np.mean(s[s > -1]) or -1 when empty. numpy reduces a contiguous array in buffers of 8192 elements,
// each summed pairwise, the buffer sums added in order.
double mean_of_defined(const std::vector<double>& values) {
  std::vector<double> defined;
  defined.reserve(values.size());
  for (double v : values) {
    if (v > -1) defined.push_back(v);
  }
  if (defined.empty()) return -1;
  constexpr size_t kNumpyBufferSize = 8192;
  double sum = 0;
  for (size_t start = 0; start < defined.size(); start += kNumpyBufferSize) {
    sum += numpy_pairwise_sum(defined.data() + start, std::min(kNumpyBufferSize, defined.size() - start));
  }
  return sum / static_cast<double>(defined.size());
}

// Index of `value` in the IoU thresholds, -1 if absent (COCOeval's np.where(iouThr == p.iouThrs)).
int iou_threshold_index(double value) {
  const auto& thresholds = coco_iou_thresholds();
  for (int t = 0; t < T; ++t) {
    if (thresholds[t] == value) return t;
  }
  return -1;
}

// COCOeval._summarize, ap=1: precision[t, :, :, area, m] over the selected t, in (t, r, k) order.
double mean_precision(const CocoEvalResult& result, int num_categories, std::vector<int> ious, int area,
                      int m, int only_category = -1) {
  std::vector<double> values;
  for (int t : ious) {
    for (int r = 0; r < R; ++r) {
      for (int k = 0; k < num_categories; ++k) {
        if (only_category < 0 || k == only_category) values.push_back(result.precision_at(t, r, k, area, m));
      }
    }
  }
  return mean_of_defined(values);
}

// ap=0: recall[t, :, area, m] in (t, k) order.
double mean_recall(const CocoEvalResult& result, int num_categories, std::vector<int> ious, int area, int m,
                   int only_category = -1) {
  std::vector<double> values;
  for (int t : ious) {
    for (int k = 0; k < num_categories; ++k) {
      if (only_category < 0 || k == only_category) values.push_back(result.recall_at(t, k, area, m));
    }
  }
  return mean_of_defined(values);
}

std::vector<int> all_ious() {
  std::vector<int> ious(T);
  for (int t = 0; t < T; ++t)
    ious[t] = t;
  return ious;
}

std::vector<int> single_iou(double value) {
  const int t = iou_threshold_index(value);
  return t < 0 ? std::vector<int>{} : std::vector<int>{t};
}

}  // namespace

const std::array<double, kCocoIouThresholdCount>& coco_iou_thresholds() {
  static const auto thresholds = numpy_linspace<kCocoIouThresholdCount>(0.5, 0.95);
  return thresholds;
}

const std::array<double, kCocoRecallThresholdCount>& coco_recall_thresholds() {
  static const auto thresholds = numpy_linspace<kCocoRecallThresholdCount>(0.0, 1.0);
  return thresholds;
}

// ---------------------------------------------------------------------------------------------------
// Readers

CocoGroundTruth parse_coco_ground_truth(const json& root, const std::string& source) {
  if (!root.is_object())
    fail(source, "ground truth must be a JSON object with images, annotations, categories");
  CocoGroundTruth gt;
  gt.source = source;
  const json& images = array_field(root, "images", source);
  const json& categories = array_field(root, "categories", source);
  const json& annotations = array_field(root, "annotations", source);
  for (size_t i = 0; i < images.size(); ++i) {
    gt.image_ids.push_back(integer_field(images[i], "id", source, entry("images", i)));
  }
  for (size_t i = 0; i < categories.size(); ++i) {
    const std::string where = entry("categories", i);
    CocoGroundTruth::Category category;
    category.id = integer_field(categories[i], "id", source, where);
    const json& name = field(categories[i], "name", source, where);
    if (!name.is_string()) fail(source, where + ": \"name\" must be a string, got " + name.dump());
    category.name = name.get<std::string>();
    gt.categories.push_back(std::move(category));
  }
  for (size_t i = 0; i < annotations.size(); ++i) {
    const std::string where = entry("annotations", i);
    const json& object = annotations[i];
    CocoGroundTruth::Annotation ann;
    ann.id = integer_field(object, "id", source, where);
    ann.image_id = integer_field(object, "image_id", source, where);
    ann.category_id = integer_field(object, "category_id", source, where);
    ann.bbox = bbox_field(object, source, where);
    ann.area = number_field(object, "area", source, where);
    const int64_t iscrowd = integer_field(object, "iscrowd", source, where);
    if (iscrowd != 0 && iscrowd != 1) fail(source, where + ": \"iscrowd\" must be 0 or 1");
    ann.iscrowd = iscrowd == 1;
    gt.annotations.push_back(ann);
  }
  return gt;
}

CocoGroundTruth load_coco_ground_truth(const std::string& path) {
  return parse_coco_ground_truth(read_json_file(path), path);
}

CocoDetections parse_coco_detections(const json& root, const std::string& source) {
  if (!root.is_array())
    fail(source, "detections must be a JSON array of {image_id, category_id, bbox, score}");
  CocoDetections detections;
  detections.source = source;
  detections.entries.reserve(root.size());
  for (size_t i = 0; i < root.size(); ++i) {
    const std::string where = entry("detections", i);
    CocoDetection det;
    det.image_id = integer_field(root[i], "image_id", source, where);
    det.category_id = integer_field(root[i], "category_id", source, where);
    det.bbox = bbox_field(root[i], source, where);
    det.score = number_field(root[i], "score", source, where);
    detections.entries.push_back(det);
  }
  return detections;
}

CocoDetections load_coco_detections(const std::string& path) {
  return parse_coco_detections(read_json_file(path), path);
}

// ---------------------------------------------------------------------------------------------------
// Evaluation

double CocoEvalResult::precision_at(int iou, int recall_threshold, int category, int area,
                                    int max_dets) const {
  const int num_categories = static_cast<int>(per_category.size());
  return precision[(((static_cast<size_t>(iou) * R + recall_threshold) * num_categories + category) * A +
                    area) *
                       M +
                   max_dets];
}

double CocoEvalResult::recall_at(int iou, int category, int area, int max_dets) const {
  const int num_categories = static_cast<int>(per_category.size());
  return recall[((static_cast<size_t>(iou) * num_categories + category) * A + area) * M + max_dets];
}

CocoEvalResult evaluate_coco_bbox(const CocoGroundTruth& ground_truth, const CocoDetections& detections) {
  const std::string& gt_source = ground_truth.source;
  const std::string& dt_source = detections.source;
  const auto& annotations = ground_truth.annotations;
  const auto& dets = detections.entries;

  // Check the input and map ids to positions in ascending id order (COCOeval's imgIds/catIds).
  const IdIndex images = index_unique_ids(ground_truth.image_ids, gt_source, "images", "image");
  std::vector<int64_t> category_ids;
  for (const auto& category : ground_truth.categories)
    category_ids.push_back(category.id);
  const IdIndex categories = index_unique_ids(category_ids, gt_source, "categories", "category");
  const int num_categories = static_cast<int>(categories.sorted_ids.size());

  std::unordered_set<int64_t> annotation_ids;
  for (size_t i = 0; i < annotations.size(); ++i) {
    const auto& ann = annotations[i];
    const std::string where = entry("annotations", i) + " (id " + std::to_string(ann.id) + ")";
    if (ann.id <= 0) fail(gt_source, where + ": annotation ids must be positive");
    if (!annotation_ids.insert(ann.id).second) fail(gt_source, where + ": duplicate annotation id");
    if (images.find(ann.image_id) < 0) {
      fail(gt_source, where + ": image_id " + std::to_string(ann.image_id) + " is not in \"images\"");
    }
    if (categories.find(ann.category_id) < 0) {
      fail(gt_source,
           where + ": category_id " + std::to_string(ann.category_id) + " is not in \"categories\"");
    }
    check_box(ann.bbox, gt_source, where);
    if (!std::isfinite(ann.area) || ann.area < 0) {
      fail(gt_source, where + ": area must be finite and >= 0, got " + std::to_string(ann.area));
    }
  }
  for (size_t i = 0; i < dets.size(); ++i) {
    const auto& det = dets[i];
    const std::string where = entry("detections", i);
    if (images.find(det.image_id) < 0) {
      fail(dt_source,
           where + ": image_id " + std::to_string(det.image_id) + " is not an image of " + gt_source);
    }
    check_box(det.bbox, dt_source, where);
    if (!std::isfinite(det.score)) fail(dt_source, where + ": score is not finite");
  }

  CocoEvalResult result;
  result.counts.images = static_cast<int64_t>(images.sorted_ids.size());
  result.counts.categories = num_categories;
  result.counts.gt = static_cast<int64_t>(annotations.size());
  result.counts.gt_crowd =
      std::count_if(annotations.begin(), annotations.end(), [](const auto& ann) { return ann.iscrowd; });
  result.counts.dt = static_cast<int64_t>(dets.size());

  // Group annotations and detections by (category, image), input order kept within a group.
  struct Key {
    int category, image, index;
  };
  auto by_category_then_image = [](const Key& a, const Key& b) {
    return a.category != b.category ? a.category < b.category : a.image < b.image;
  };
  std::vector<Key> gt_keys, dt_keys;
  for (size_t i = 0; i < annotations.size(); ++i) {
    gt_keys.push_back({categories.find(annotations[i].category_id), images.find(annotations[i].image_id),
                       static_cast<int>(i)});
  }
  for (size_t i = 0; i < dets.size(); ++i) {
    const int category = categories.find(dets[i].category_id);
    if (category < 0) {
      ++result.counts.dt_unknown_category;  // COCOeval only looks at the ground truth's categories
      continue;
    }
    dt_keys.push_back({category, images.find(dets[i].image_id), static_cast<int>(i)});
  }
  std::stable_sort(gt_keys.begin(), gt_keys.end(), by_category_then_image);
  std::stable_sort(dt_keys.begin(), dt_keys.end(), by_category_then_image);

  std::vector<std::vector<Cell>> cells_by_category(num_categories);
  {
    size_t gi = 0, di = 0;
    while (gi < gt_keys.size() || di < dt_keys.size()) {
      const bool take_gt =
          di == dt_keys.size() || (gi < gt_keys.size() && !by_category_then_image(dt_keys[di], gt_keys[gi]));
      const Key& first = take_gt ? gt_keys[gi] : dt_keys[di];
      Cell cell;
      cell.image = first.image;
      for (;
           gi < gt_keys.size() && gt_keys[gi].category == first.category && gt_keys[gi].image == first.image;
           ++gi) {
        cell.gt.push_back(gt_keys[gi].index);
      }
      for (;
           di < dt_keys.size() && dt_keys[di].category == first.category && dt_keys[di].image == first.image;
           ++di) {
        cell.dt.push_back(dt_keys[di].index);
      }
      stable_sort_by_descending_score(cell.dt, [&](int i) { return dets[i].score; });
      if (cell.dt.size() > static_cast<size_t>(kMaxDetsPerImage)) cell.dt.resize(kMaxDetsPerImage);
      cell.iou.resize(cell.dt.size() * cell.gt.size());
      for (size_t d = 0; d < cell.dt.size(); ++d) {
        for (size_t g = 0; g < cell.gt.size(); ++g) {
          const auto& ann = annotations[cell.gt[g]];
          cell.iou[d * cell.gt.size() + g] = box_iou(dets[cell.dt[d]].bbox, ann.bbox, ann.iscrowd);
        }
      }
      cells_by_category[first.category].push_back(std::move(cell));
    }
  }

  // Accumulate: precision at the recall thresholds and final recall, per (t, k, area, maxDets).
  result.precision.assign(static_cast<size_t>(T) * R * num_categories * A * M, -1.0);
  result.recall.assign(static_cast<size_t>(T) * num_categories * A * M, -1.0);
  const auto& recall_thresholds = coco_recall_thresholds();
  const double eps = std::numeric_limits<double>::epsilon();  // np.spacing(1)
  std::vector<CellMatches> matches;
  struct Ranked {
    double score;
    int cell, det;  // det: position in the cell's sorted detections
  };
  std::vector<Ranked> ranked;
  std::vector<double> recall_curve, precision_curve;
  for (int k = 0; k < num_categories; ++k) {
    const auto& cells = cells_by_category[k];
    if (cells.empty()) continue;
    matches.resize(cells.size());
    for (int a = 0; a < A; ++a) {
      int gt_counted = 0;
      for (size_t c = 0; c < cells.size(); ++c) {
        match_cell(cells[c], annotations, dets, kAreaRanges[a], matches[c]);
        gt_counted += matches[c].gt_counted;
      }
      if (gt_counted == 0) continue;  // undefined: stays -1
      for (int m = 0; m < M; ++m) {
        ranked.clear();
        for (size_t c = 0; c < cells.size(); ++c) {
          const int kept = std::min(static_cast<int>(cells[c].dt.size()), kCocoMaxDets[m]);
          for (int d = 0; d < kept; ++d) {
            ranked.push_back({dets[cells[c].dt[d]].score, static_cast<int>(c), d});
          }
        }
        std::stable_sort(ranked.begin(), ranked.end(),
                         [](const Ranked& x, const Ranked& y) { return x.score > y.score; });
        const size_t num_ranked = ranked.size();
        for (int t = 0; t < T; ++t) {
          recall_curve.resize(num_ranked);
          precision_curve.resize(num_ranked);
          double true_positives = 0, false_positives = 0;
          for (size_t i = 0; i < num_ranked; ++i) {
            const CellMatches& cell_matches = matches[ranked[i].cell];
            const size_t flag = static_cast<size_t>(t) * cells[ranked[i].cell].dt.size() + ranked[i].det;
            if (!cell_matches.ignored[flag]) {
              if (cell_matches.matched[flag]) {
                true_positives += 1;
              } else {
                false_positives += 1;
              }
            }
            recall_curve[i] = true_positives / gt_counted;
            precision_curve[i] = true_positives / (false_positives + true_positives + eps);
          }
          result.recall[((static_cast<size_t>(t) * num_categories + k) * A + a) * M + m] =
              num_ranked ? recall_curve.back() : 0.0;
          // Interpolated precision: the best precision at this recall or any higher one.
          for (size_t i = num_ranked; i-- > 1;) {
            if (precision_curve[i] > precision_curve[i - 1]) precision_curve[i - 1] = precision_curve[i];
          }
          for (int r = 0; r < R; ++r) {
            // First point whose recall reaches the threshold (np.searchsorted side="left"); none: 0.
            const auto reached =
                std::lower_bound(recall_curve.begin(), recall_curve.end(), recall_thresholds[r]);
            const double value =
                reached == recall_curve.end() ? 0.0 : precision_curve[reached - recall_curve.begin()];
            result.precision[(((static_cast<size_t>(t) * R + r) * num_categories + k) * A + a) * M + m] =
                value;
          }
        }
      }
    }
  }

  // Per category (COCOeval's order: ascending id), then the 12 summary numbers.
  for (int k = 0; k < num_categories; ++k) {
    CocoCategoryResult category;
    category.category_id = categories.sorted_ids[k];
    for (const auto& c : ground_truth.categories) {
      if (c.id == category.category_id) category.name = c.name;
    }
    result.per_category.push_back(std::move(category));
  }
  const int m100 = M - 1;
  for (int k = 0; k < num_categories; ++k) {
    auto& category = result.per_category[k];
    category.ap = mean_precision(result, num_categories, all_ious(), 0, m100, k);
    category.ap50 = mean_precision(result, num_categories, single_iou(0.5), 0, m100, k);
    category.ap75 = mean_precision(result, num_categories, single_iou(0.75), 0, m100, k);
    category.ar100 = mean_recall(result, num_categories, all_ious(), 0, m100, k);
  }
  auto& s = result.stats;
  s[0] = mean_precision(result, num_categories, all_ious(), 0, m100);
  s[1] = mean_precision(result, num_categories, single_iou(0.5), 0, m100);
  s[2] = mean_precision(result, num_categories, single_iou(0.75), 0, m100);
  for (int a = 1; a < A; ++a)
    s[2 + a] = mean_precision(result, num_categories, all_ious(), a, m100);
  for (int m = 0; m < M; ++m)
    s[6 + m] = mean_recall(result, num_categories, all_ious(), 0, m);
  for (int a = 1; a < A; ++a)
    s[8 + a] = mean_recall(result, num_categories, all_ious(), a, m100);
  return result;
}

// ---------------------------------------------------------------------------------------------------
// Output

std::string format_coco_summary(const CocoEvalResult& result) {
  const auto& thresholds = coco_iou_thresholds();
  char all_ious_label[32];
  std::snprintf(all_ious_label, sizeof all_ious_label, "%0.2f:%0.2f", thresholds.front(), thresholds.back());
  struct Line {
    bool precision;
    const char* iou;
    int area;
    int max_dets;
  };
  const std::array<Line, 12> lines = {{{true, all_ious_label, 0, 100},
                                       {true, "0.50", 0, 100},
                                       {true, "0.75", 0, 100},
                                       {true, all_ious_label, 1, 100},
                                       {true, all_ious_label, 2, 100},
                                       {true, all_ious_label, 3, 100},
                                       {false, all_ious_label, 0, 1},
                                       {false, all_ious_label, 0, 10},
                                       {false, all_ious_label, 0, 100},
                                       {false, all_ious_label, 1, 100},
                                       {false, all_ious_label, 2, 100},
                                       {false, all_ious_label, 3, 100}}};
  std::string text;
  for (size_t i = 0; i < lines.size(); ++i) {
    const Line& line = lines[i];
    char buffer[160];
    std::snprintf(buffer, sizeof buffer, " %-18s %s @[ IoU=%-9s | area=%6s | maxDets=%3d ] = %0.3f\n",
                  line.precision ? "Average Precision" : "Average Recall", line.precision ? "(AP)" : "(AR)",
                  line.iou, kAreaRanges[line.area].label, line.max_dets, result.stats[i]);
    text += buffer;
  }
  return text;
}

void print_coco_summary(std::ostream& out, const CocoEvalResult& result) {
  out << format_coco_summary(result);
}

json coco_eval_to_json(const CocoEvalResult& result) {
  json out;
  out["iou_type"] = "bbox";
  out["stats"] = json::array();
  out["stats_names"] = json::array();
  out["stats_by_name"] = json::object();
  for (size_t i = 0; i < result.stats.size(); ++i) {
    out["stats"].push_back(result.stats[i]);
    out["stats_names"].push_back(kCocoStatNames[i]);
    out["stats_by_name"][kCocoStatNames[i]] = result.stats[i];
  }
  out["per_category"] = json::array();
  for (const auto& category : result.per_category) {
    out["per_category"].push_back({{"category_id", category.category_id},
                                   {"name", category.name},
                                   {"AP", category.ap},
                                   {"AP50", category.ap50},
                                   {"AP75", category.ap75},
                                   {"AR100", category.ar100}});
  }
  const auto& counts = result.counts;
  out["counts"] = {{"images", counts.images}, {"categories", counts.categories},
                   {"gt", counts.gt},         {"gt_crowd", counts.gt_crowd},
                   {"dt", counts.dt},         {"dt_unknown_category", counts.dt_unknown_category}};
  return out;
}

}  // namespace icd
