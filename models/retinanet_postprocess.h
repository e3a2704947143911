// From RetinaNet's raw outputs to detections (detectron2's RetinaNet.inference + detector_postprocess).
//
// For each image, for each pyramid level:
//   scores = sigmoid(logits) over all H W A K (anchor, class) pairs
//   keep the pairs with score > 0.05, then the 1000 best of those (cheap filters before NMS: most of the
//     ~1M pairs of a large image are confident background)
//   decode the kept pairs' anchors with their deltas (models/box_coder.h)
// Then, over all levels together: class-aware NMS at IoU 0.5 (models/nms.h), the 100 best survivors,
// boxes scaled from the network's input size to the original image size (x by W_orig / W_in, y by
// H_orig / H_in), clipped to the original image, and boxes left with zero width or height dropped.
//
// torchvision differs in where it clips (switches in the config, torchvision_postprocess_config()):
// it clips each level's boxes to the input image before NMS, and neither clips nor drops boxes after
// scaling. Its default keeps 300 detections per image.
//
// Candidates are ordered by score (ties: lower (anchor, class) index first) within each level and the
// levels are concatenated P3 first, which fixes how NMS breaks ties between equal scores. This is plain
// data processing, without a graph: on a GPU the scores are ranked and the candidates decoded there,
// and NMS and what follows run on the host over the candidates alone.
#pragma once
#include <cstdint>
#include <vector>

#include "engine/tensor.h"
#include "models/anchor_generator.h"
#include "models/box_coder.h"

namespace icd {

struct RetinaNetPostprocessConfig {
  double score_threshold = 0.05;   // keep scores strictly above
  int64_t topk_candidates = 1000;  // per level, after the threshold
  double nms_threshold = 0.5;      // class-aware; suppress IoU strictly above
  int64_t max_detections = 100;    // per image, after NMS
  BoxCoderConfig box_coder;
  bool clip_before_nms = false;    // torchvision: clip to the input image before NMS
  bool clip_after_rescale = true;  // detectron2: clip to the original image after rescaling, drop empty boxes
};

// torchvision's RetinaNet settings: clip before NMS only, 300 detections.
RetinaNetPostprocessConfig torchvision_postprocess_config();

// One image's geometry: the size it had when it entered the network (after resizing, before padding
// to a multiple of 32) and its original size, the frame the detections are reported in.
struct ImageSizes {
  int64_t input_height = 0, input_width = 0;
  int64_t original_height = 0, original_width = 0;
};

struct Detections {
  Tensor boxes;   // [D, 4] (x1, y1, x2, y2) in original-image pixels
  Tensor scores;  // [D], decreasing
  Tensor labels;  // i64 [D], class ids in [0, K)
};

// cls_logits [N, R, K] and bbox_deltas [N, R, 4] (flatten_head_outputs), anchors for R (with the
// per-level counts that split them), one ImageSizes per image.
std::vector<Detections> postprocess_detections(const Tensor& cls_logits, const Tensor& bbox_deltas,
                                               const Anchors& anchors, const std::vector<ImageSizes>& images,
                                               const RetinaNetPostprocessConfig& config = {});

}  // namespace icd
