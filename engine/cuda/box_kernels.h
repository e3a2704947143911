// CUDA kernels for box geometry (engine/cuda/box.cu), running the bodies of engine/kernels/box_math.h.
// Host-only declarations with no CUDA headers. Pointers are contiguous arrays in the memory of `device`:
// boxes of `dtype` (f32 or f64) four coordinates each, indices and labels i64. Work is queued on the
// device's stream; the calls that return something read back to the host and so wait for it. `op` names
// the caller in errors: std::invalid_argument for another dtype or invalid data, std::runtime_error when
// CUDA is unavailable or a launch fails.
#pragma once
#include <cstdint>
#include <vector>

#include "engine/dtype.h"
#include "engine/kernels/box_math.h"

namespace icd::cuda {

// iou [n, m]: kernels::pairwise_iou_of every box of a [n] against every box of b [m].
void cuda_pairwise_iou(const char* op, DType dtype, const void* a, int64_t n, const void* b, int64_t m,
                       void* iou, int device);

// Row i < n: kernels::encode_box(anchors[i], boxes[i]) into deltas[i], or decode_box(deltas[i],
// anchors[i]) into boxes[i].
void cuda_encode_boxes(const char* op, DType dtype, const kernels::BoxCodingWeights& weights,
                       const void* anchors, const void* boxes, int64_t n, void* deltas, int device);
void cuda_decode_boxes(const char* op, DType dtype, const kernels::BoxCodingWeights& weights,
                       const void* deltas, const void* anchors, int64_t n, void* boxes, int device);

// The matcher over iou [G, R] (G >= 1): each box's highest IoU, then kernels::match_anchor per anchor into
// matched and labels [R]. Throws std::invalid_argument, after waiting for the device, when an entry is
// negative or NaN.
void cuda_match_anchors(const char* op, DType dtype, const void* iou, int64_t num_boxes, int64_t num_anchors,
                        double background_below, double foreground_from, bool allow_low_quality_matches,
                        int64_t* matched, int64_t* labels, int device);

// The anchors a loss reads, from a match (labels, matched [R]) and the boxes' classes: kept (labels != -1)
// and foreground (labels == 1) anchor indices, increasing, written to the front of kept and foreground
// (R entries of room each); kept_classes (dtype) the class of each kept foreground anchor's box, -1 for
// background; foreground_boxes the box of each foreground anchor. Returns {kept, foreground} counts.
struct AnchorSelectionCounts {
  int64_t kept = 0;
  int64_t foreground = 0;
};
AnchorSelectionCounts cuda_select_anchors(const char* op, DType dtype, const int64_t* labels,
                                          const int64_t* matched, const int64_t* box_classes,
                                          int64_t num_anchors, int64_t* kept, void* kept_classes,
                                          int64_t* foreground, int64_t* foreground_boxes, int device);

// Class-aware NMS of n boxes sorted by decreasing score (classes i64 [n]): the suppression mask
// (kernels::nms_mask_word) is built on the device and copied to the host, where the greedy walk
// (kernels::nms_keep_from_mask) picks the kept positions, returned in sorted order.
std::vector<int64_t> cuda_nms_sorted(const char* op, DType dtype, const void* sorted_boxes,
                                     const int64_t* sorted_classes, int64_t n, double iou_threshold,
                                     int device);

}  // namespace icd::cuda
