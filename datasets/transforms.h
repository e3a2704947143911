// The input pipeline of a detector (datasets/transforms.cpp), following detectron2 v0.5 as written in
// spec/retinanet.md ("Input"):
//
//   decoded RGB uint8 --resize shortest edge--> --flip (p)--> --normalise--> [3, H, W] f32
//   several samples --collate--> [N, 3, H_pad, W_pad], zero padding at the bottom and right,
//   H_pad and W_pad the batch's largest sizes rounded up to a multiple of size_divisibility
//
// Boxes follow every step exactly: resizing multiplies x by new_width / old_width and y by
// new_height / old_height (the two factors differ slightly because sizes are rounded), a flip maps
// [x1, x2] to [W - x2, W - x1]; afterwards boxes are clipped to the image and empty ones (width or
// height <= kEmptyBoxSize) are dropped with their classes. Random choices (the short edge, the flip)
// come from the Generator passed in, in a fixed order, so a sample's result depends only on its seed.
#pragma once
#include <array>
#include <cstdint>
#include <vector>

#include "datasets/detection_target.h"
#include "datasets/image_io.h"
#include "engine/geometry.h"
#include "engine/random.h"
#include "engine/tensor.h"

namespace icd {

enum class ChannelOrder { rgb, bgr };

// value = (pixel - mean[c]) / std[c] for output channel c; mean and std are listed in `order`.
struct NormalizeConfig {
  ChannelOrder order = ChannelOrder::bgr;
  std::array<float, 3> mean = {103.530f, 116.280f, 123.675f};
  std::array<float, 3> std = {1.0f, 1.0f, 1.0f};

  static NormalizeConfig caffe_bgr();        // detectron2 defaults, for MSRA caffe weights (above)
  static NormalizeConfig torchvision_rgb();  // RGB, mean 123.675/116.28/103.53, std 58.395/57.12/57.375
};

struct TransformConfig {
  std::vector<int> short_edge_sizes = {800};  // one is drawn per image (a single entry: fixed size)
  int max_long_edge = 1333;
  double flip_probability = 0.0;
  NormalizeConfig normalize;
  int size_divisibility = 32;  // 1: pad only to the batch's largest size

  static TransformConfig train();  // sizes 640..800 step 32, long edge <= 1333, flip 0.5
  static TransformConfig test();   // 800 / 1333, no flip
  void validate() const;           // throws std::invalid_argument naming the bad field
};

// detectron2's ResizeShortestEdge.get_output_shape: scale = short_edge / min(h, w), reduced so the long
// side is <= max_long_edge, and each side rounded with int(x + 0.5).
ImageSize shortest_edge_size(ImageSize size, int short_edge, int max_long_edge);

// Bilinear with half-pixel centres, as torch's interpolate(mode='bilinear', align_corners=False):
// computed in float and rounded to the nearest integer. No antialiasing (detectron2 resizes with PIL,
// which does antialias when shrinking; the detector's sizes rarely shrink by more than 2).
Image resize_bilinear(const Image& image, ImageSize size);
Image flip_horizontal(const Image& image);

void scale_boxes(std::vector<BoxXYXY>& boxes, double scale_x, double scale_y);
void flip_boxes(std::vector<BoxXYXY>& boxes, int image_width);
// Clips every box to [0, width] x [0, height], then drops empty boxes and their classes; returns how
// many were dropped.
int clip_and_drop_empty(DetectionTargets& targets, ImageSize size);

// [3, H, W] f32 in the configured channel order, normalised.
Tensor to_normalized_tensor(const Image& image, const NormalizeConfig& config);

// One image after the transforms, and what is needed to map predictions back to the original.
struct SampleInfo {
  int64_t image_index = -1;         // position in the dataset (set by the loader)
  int64_t image_id = -1;            // COCO image id (set by the loader)
  ImageSize original_size;          // as decoded
  ImageSize size;                   // after resizing: the true extent inside the padded batch
  double scale_x = 1, scale_y = 1;  // size / original_size per axis
  bool flipped = false;
  int boxes_dropped = 0;     // boxes that became empty in the transforms
  DetectionTargets targets;  // in the resized (and flipped) image's pixels
};

struct TransformedSample {
  Tensor image;  // [3, size.height, size.width] f32, not padded
  SampleInfo info;
};

// Draws the short edge (always) and then the flip (always), in that order, from `rng`.
TransformedSample apply_transforms(const Image& image, DetectionTargets targets,
                                   const TransformConfig& config, Generator& rng);

struct DetectionBatch {
  int64_t index = 0;                // position of the batch in its epoch
  Tensor images;                    // [N, 3, H_pad, W_pad] f32
  std::vector<SampleInfo> samples;  // N entries, in batch order

  int64_t size() const { return static_cast<int64_t>(samples.size()); }
};

// Pads each image with zeros at the bottom and right to the batch's largest height and width, each
// rounded up to a multiple of size_divisibility, and stacks them. Throws for an empty list. `pinned`
// puts the batch in page-locked memory (when a GPU can be used) so that its upload runs at bus speed.
DetectionBatch collate(std::vector<TransformedSample> samples, int size_divisibility, bool pinned = false);

}  // namespace icd
