// The auxiliary task that trains the instance encoder and the teacher's decoder (spec/icd.md section 3).
//
// The decoder's attention is only useful for distillation if each query learns to look at its instance.
// Nothing in the teacher says where that is, so the decoder is given a task that needs it: from g, the
// decoded query, a predictor MLP(C -> C -> C -> 5) outputs
//   out[..., 0]     identification logit: is this query a real instance or a fake one?
//   out[..., 1:5]   p = sigmoid(.), the distances (l, t, r, b) from the jittered point to the box sides
// with the losses
//   L_conf = sum_{valid i} BCEWithLogits(out_i0, y_i) / max(#valid, 1e-6)       valid = real + fake, y = real
//   L_reg  = sum_{real i} sum_j |p_ij - t_ij| / s_ij / max(#real, 1e-6)
//            s = clamp(t + t[[2, 3, 0, 1]], min 1e-7) = (w, h, w, h): an L1 loss relative to the box size
// summed over the whole batch before normalising (one device: the batch is the normaliser). Both weigh 1.
// Gradients reach the predictor, the decoder and the encoder; descriptors, masks and targets are constants.
//
// Derivatives (for reading the gradient checks): d L_conf / d out_i0 = (sigmoid(out_i0) - y_i) / #valid on
// valid slots; d L_reg / d out_ij = sign(p_ij - t_ij) p_ij (1 - p_ij) / s_ij / #real on real slots.
#pragma once
#include "distill/mlp.h"
#include "engine/random.h"
#include "engine/tensor.h"

namespace icd {

struct AuxiliaryLosses {
  Tensor identification;  // L_conf, 0-d ("aux_conf")
  Tensor localization;    // L_reg, 0-d ("aux_reg")
};

// predictions [B, L, 5]; padding_mask, real_mask [B, L]; targets [B, L, 4] (distill/instance_encoder.h).
AuxiliaryLosses auxiliary_losses(const Tensor& predictions, const Tensor& padding_mask,
                                 const Tensor& real_mask, const Tensor& targets);

// The predictor MLP, parameters "layers.{0,1,2}.*".
class AuxiliaryPredictor : public Mlp {
 public:
  AuxiliaryPredictor(int64_t hidden_dim, Generator& gen);
  // decoded: g [L, B, C] from the decoder -> predictions [B, L, 5] (batch first, like the masks).
  Tensor predict(const Tensor& decoded);
};

}  // namespace icd
