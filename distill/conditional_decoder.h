// The instance-conditional decoding module on the teacher side (spec/icd.md section 2).
//
// Keys and values are the teacher's FPN maps of all levels at once. Each level F_l [B, C, H_l, W_l] is
// flattened row-major to [H_l W_l, B, C] and the levels are concatenated in order (p3..p7), giving
// X [S, B, C], S = sum_l H_l W_l.
//
// Padding mask (the batch is padded to H_pad x W_pad, image b is h_b x w_b): per level,
//   stride_est = (H_pad / H_l + W_pad / W_l) / 2,  valid = rows < ceil(h_b / stride_est), cols < ceil(w_b /
//   stride_est)
// Position embedding (DETR's sine embedding, normalised): per level, y_e and x_e are the running counts of
// valid cells down each column and along each row, divided by their last value (+ 1e-6) and times 2 pi; with
// n = C / 2 features per axis and f_k = 10000^(2k / n), channels 2k and 2k + 1 of an axis are sin(e / f_k)
// and cos(e / f_k); P = [PE_y (n) | PE_x (n)]. Padded cells count 0, so the valid region spans (0, 2 pi].
//
// One cross-attention layer (no self-attention between queries), post-norm, with q0 [L, B, C] the encoded
// queries:
//   k_in = X + pos_proj(P),  v_in = X                       (position on keys only)
//   a[b, h, i, s] = <W_q q0_i, W_k k_in_s>_h / sqrt(d)  (+ biases), -inf at padded s; d = C / heads
//   o = W_o concat_h(softmax_s(a) v_h) + b_o,  v = W_v X + b_v
//   z = LN1(q0 + o),  g = LN2(z + linear2(ReLU(linear1(z))))         (LN with affine, eps 1e-5)
// Outputs: g [L, B, C] for the auxiliary task, the pre-softmax logits a [B, H, L, S] (-inf at padding) and
// the value projection v [S, B, H, d] taken before attention: the distillation target (distill_loss.h).
// Every query attends over all positions of all levels with one softmax; there is no box mask.
//
// Parameter names (DETR's decoder layer): pos_proj.*, multihead_attn.{in_proj_weight, in_proj_bias,
// out_proj.*}, norm1.*, linear1.*, linear2.*, norm2.*. Init: xavier in_proj with zero biases (as torch's
// MultiheadAttention), torch's default for every Linear, LayerNorm weight 1 and bias 0.
#pragma once
#include <memory>
#include <vector>

#include "distill/image_instances.h"
#include "engine/random.h"
#include "layers/attention.h"
#include "layers/linear.h"
#include "layers/norm.h"

namespace icd {

// The teacher's (or student's) pyramid as one sequence.
struct FeatureSequence {
  Tensor features;                     // X [S, B, C]
  Tensor padding_mask;                 // [B, S], 1 = padding (the features' dtype), no gradient
  Tensor position;                     // P [S, B, C], no gradient
  std::vector<ImageSize> level_sizes;  // H_l, W_l per level, in order
};

// [B, C, H_l, W_l] per level -> [S, B, C], each level row-major, levels in order. Differentiable.
Tensor flatten_levels(const std::vector<Tensor>& levels);
// The padding mask [B, S] of the levels for a batch padded to `padded` holding images of sizes `images`.
Tensor feature_padding_mask(const std::vector<ImageSize>& level_sizes, ImageSize padded,
                            const std::vector<ImageSize>& images, TensorOptions options = {});
// The sine position embedding [S, B, channels] of a [B, S] padding mask over the given levels; channels
// must be a multiple of 4 (sin and cos pairs on each of two axes).
Tensor sine_position_embedding(const Tensor& padding_mask, const std::vector<ImageSize>& level_sizes,
                               int64_t channels);
// X, its padding mask and position embedding. levels: [B, C, H_l, W_l] sharing B, C and dtype.
FeatureSequence make_feature_sequence(const std::vector<Tensor>& levels, ImageSize padded,
                                      const std::vector<ImageSize>& images);

struct ConditionalDecoderConfig {
  int64_t hidden_dim = 256;  // C: must equal the teacher's FPN channels (no input projection)
  int64_t num_heads = 8;
  int64_t ffn_dim = 1024;
};

struct DecoderOutput {
  Tensor decoded;  // g [L, B, C]
  Tensor logits;   // [B, H, L, S], pre-softmax, -inf at padded positions
  Tensor value;    // [S, B, H, d], the value projection W_v X + b_v
};

class ConditionalDecoder : public Module {
 public:
  ConditionalDecoder(const ConditionalDecoderConfig& config, Generator& gen);
  // queries: q0 [L, B, C]; keys: make_feature_sequence() of the teacher levels.
  DecoderOutput forward(const Tensor& queries, const FeatureSequence& keys);
  const ConditionalDecoderConfig& config() const { return config_; }

 private:
  ConditionalDecoderConfig config_;
  std::shared_ptr<Linear> pos_proj_;
  std::shared_ptr<MultiheadAttention> multihead_attn_;
  std::shared_ptr<LayerNorm> norm1_;
  std::shared_ptr<Linear> linear1_, linear2_;
  std::shared_ptr<LayerNorm> norm2_;
};

}  // namespace icd
