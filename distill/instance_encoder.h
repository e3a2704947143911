// The instance encoder: from boxes to query vectors (spec/icd.md section 1).
//
// Every image b contributes K_b queries: its n_b real ground-truth boxes first, then K_b - n_b fake ones
// drawn from the FakeInstancePrior, with
//   K_b = min(max(1, int((ratio + 1) n_b)), max(max_labels, n_b))          (ratio 5, max_labels 300)
// Each query is described, under no_grad, by a fixed-size vector that hides the exact box:
//   normalised box (x1/W, y1/H, x2/W, y2/H), w = x2 - x1, h = y2 - y1, centre (cx, cy)
//   jittered reference point   cx' = cx + phi_x w,  cy' = cy + phi_y h,   phi ~ U[-0.3, 0.3) per query and
//   axis descriptor = [ onehot(label) (K) | PE(cx') (128) | PE(cy') (128) | scale bins (10) ]        K + 266
//   dims
//     PE(u) = [sin(2 pi u / f_k) for k < 64] then [cos(2 pi u / f_k) for k < 64],  f_k = 10000^(2k / 128)
//     scale bins: one-hot of bin(w W) over 5, then of bin(h H) over 5, bin(s) = clamp(trunc(1.44 ln s - 5),
//     0, 4) (edges near 64.5, 129, 259 and 518 px). W, H are each image's own unpadded size: spec quirk 9.2
//     (the reference uses the last image's W and H for every image) is deliberately not replicated.
// An MLP, Linear(K + 266 -> C), ReLU, Linear(C, C), ReLU, Linear(C, C), maps descriptors to queries q0; it is
// trained by the auxiliary task only (distill/auxiliary_task.h).
//
// Batching pads every image to L = max_b K_b queries. Padding slots have a class-0 one-hot, the point (0, 0)
// (sin 0, cos 1) and no scale bin set; they are excluded from every loss by the masks:
//   padding_mask [B, L]  1 = padding slot              real_mask [B, L]  1 = real ground truth
//   targets [B, L, 4]    (cx' - x1, cy' - y1, x2 - cx', y2 - cy'), the distances from the jittered point to
//                        the box sides, normalised by W and H (0 at padding)
#pragma once
#include <cstdint>
#include <vector>

#include "distill/fake_instance_prior.h"
#include "distill/image_instances.h"
#include "distill/mlp.h"
#include "engine/random.h"
#include "engine/tensor.h"

namespace icd {

struct QuerySamplingConfig {
  int64_t neg_pos_ratio = 5;  // NUM_NEG_POS_RATIO: fake queries per real one
  int64_t max_labels = 300;   // MAX_LABELS (100 for Faster / Mask R-CNN)
  double jitter_range = 0.3;  // INS_ATT_MIMIC.SAMPLE_RANGE: phi ~ U[-range, range)
};

// K_b, the number of queries of an image with num_real ground-truth boxes.
int64_t query_count(int64_t num_real, int64_t neg_pos_ratio = 5, int64_t max_labels = 300);

// One query before encoding: a box in pixels, its class, and the jitter (phi_x, phi_y) of its point.
struct InstanceQuery {
  InstanceBox box;
  int64_t label = 0;
  double jitter_x = 0, jitter_y = 0;
};

// The queries of one image: queries[0, num_real) are real, the rest fake.
struct ImageQueries {
  std::vector<InstanceQuery> queries;
  int64_t num_real = 0;
  ImageSize size;  // unpadded
};

// The random half of query construction: the real boxes, then query_count - n fakes from `prior`, then a
// jitter per query (x then y), all drawn from `gen`.
ImageQueries sample_image_queries(const ImageInstances& ground_truth, const FakeInstancePrior& prior,
                                  const QuerySamplingConfig& config, Generator& gen);

constexpr int64_t kPointFeatures = 128;  // sine features per coordinate of the reference point
constexpr int64_t kScaleBins = 5;        // per side
constexpr int64_t descriptor_dim(int64_t num_classes) {
  return num_classes + 2 * kPointFeatures + 2 * kScaleBins;
}
// bin(s) = clamp(trunc(1.44 ln s - 5), 0, 4); s <= 0 gives bin 0.
int64_t scale_bin(double size_px);

struct QueryBatch {
  Tensor descriptors;   // [B, L, K + 266]
  Tensor padding_mask;  // [B, L], 1 = padding
  Tensor real_mask;     // [B, L], 1 = real ground truth
  Tensor targets;       // [B, L, 4], normalised (l, t, r, b) from the jittered point
  Tensor points;        // [B, L, 2], the jittered point (cx', cy') in [0, 1] image units (for pictures)
  std::vector<int64_t> num_real, num_queries;  // n_b and K_b
};

// The deterministic half: descriptors, masks and targets of a batch, in `dtype` (f32 or f64) on `device`
// (built on the host, then copied there once), with no autograd history. Throws std::invalid_argument on an
// empty batch, an image without queries, num_real outside [0, K_b], a label outside [0, num_classes) or a
// non-positive image size.
QueryBatch build_query_batch(const std::vector<ImageQueries>& images, int64_t num_classes,
                             DType dtype = DType::f32, Device device = Device::cpu());

// The encoder MLP: descriptors [..., K + 266] -> queries q0 [..., hidden_dim]. Parameters "layers.{0,1,2}.*".
class InstanceEncoder : public Mlp {
 public:
  InstanceEncoder(int64_t num_classes, int64_t hidden_dim, Generator& gen);
  int64_t num_classes() const { return num_classes_; }

 private:
  int64_t num_classes_;
};

}  // namespace icd
