// The instance-conditional distillation loss on the student (spec/icd.md section 4).
//
// The teacher's decoder (distill/conditional_decoder.h) gives, for the batch's queries, its attention logits
// a [B, H, L, S] and its value projection v^T = W_v^T X^T + b_v^T, [S, B, H, d]. The student's FPN features
// X^S [S, B, C_s] (flattened like the teacher's) go through a separate adapter, one Linear(C_s -> C) per
// position (a 1x1 convolution; spec 9.5: nothing else of a student-side decoder is needed), reshaped to
// heads: v^S [S, B, H, d]. Then
//   v^ = LN(v) over the d channels of each head, no affine, eps 1e-5          (for v^S and v^T)
//   m[b, h, s] = sum_{i real in image b} softmax_s(a[b, h, i, s])             (no gradient)
//   L = lambda * mean_{b, h, c} [ sum_s m[b,h,s] (v^S - v^T)[b,s,h,c]^2 / max(sum_s m[b,h,s], 1e-6) ]
// i.e. per image, per head, an attention-weighted mean over positions of the squared difference; since each
// softmax sums to one, sum_s m = n_b, so every image weighs the same (the reference PyTorch form, spec 9.3;
// the paper's and MegEngine's global normalisation are not used). An image with no real box has m = 0 and
// contributes 0, but still counts in the mean over b. lambda = 8 for RetinaNet.
//
// Stop-gradients: m and v^T are constants here, so distillation never trains the teacher's decoder (that is
// the auxiliary task's job). Warm-up: for the first iterations (BYPASS_DISTILL = 1000) X^S is detached as
// well, so only the adapter learns until it produces sensible values; then the gradient flows into the
// student's FPN and backbone.
//
// Gradient w.r.t. v^S (what backward computes, with D = max(sum_s m, 1e-6)):
//   dL / d v^S[b,s,h,c] = lambda / (B H d) * 2 m[b,h,s] (v^S - v^T)[b,s,h,c] / D[b,h], then back through LN.
#pragma once
#include "engine/tensor.h"
#include "layers/linear.h"

namespace icd {

struct DistillLossConfig {
  double weight = 8.0;     // lambda (WEIGHT_VALUE; 3 for Faster / Mask R-CNN)
  double norm_eps = 1e-5;  // of the per-head LayerNorm (the MegEngine port uses 1e-4)
};

// m [B, H, S] = sum over real queries of softmax_s(logits); logits [B, H, L, S], real_mask [B, L]. Computed
// without gradient.
Tensor instance_attention_mask(const Tensor& logits, const Tensor& real_mask);

// The loss from the two value projections [S, B, H, d]: student_value carries the graph, teacher_value and
// teacher_logits are detached here.
Tensor value_distillation_loss(const Tensor& student_value, const Tensor& teacher_value,
                               const Tensor& teacher_logits, const Tensor& real_mask,
                               const DistillLossConfig& config = {});

// The whole student side: v^S = adapter(X^S) reshaped like teacher_value, then value_distillation_loss.
// student_features [S, B, C_s] (distill/conditional_decoder.h flatten_levels); adapter: Linear(C_s -> H d).
// detach_student_features: the warm-up (iteration < BYPASS_DISTILL), no gradient into X^S.
Tensor distillation_loss(const Tensor& student_features, Linear& adapter, const Tensor& teacher_value,
                         const Tensor& teacher_logits, const Tensor& real_mask,
                         const DistillLossConfig& config, bool detach_student_features);

}  // namespace icd
