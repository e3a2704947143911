#include "distill/distill_loss.h"

#include <limits>
#include <stdexcept>
#include <string>

#include "engine/autograd.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/matmul.h"
#include "engine/ops/norm.h"
#include "engine/ops/reduce.h"

namespace icd {

Tensor instance_attention_mask(const Tensor& logits, const Tensor& real_mask) {
  if (logits.dim() != 4 || real_mask.dim() != 2 || real_mask.size(0) != logits.size(0) ||
      real_mask.size(1) != logits.size(2))
    throw std::invalid_argument(
        "instance_attention_mask: need logits [B, H, L, S] and real_mask [B, L], got " +
        shape_str(logits.shape()) + " and " + shape_str(real_mask.shape()));
  NoGradGuard no_grad;
  const int64_t B = logits.size(0), L = logits.size(2);
  const Tensor attention = softmax(logits.detach(), -1);            // [B, H, L, S]
  const Tensor weights = real_mask.detach().reshape({B, 1, 1, L});  // 1 for real queries
  return matmul(weights, attention).squeeze(2);                     // [B, H, S]
}

Tensor value_distillation_loss(const Tensor& student_value, const Tensor& teacher_value,
                               const Tensor& teacher_logits, const Tensor& real_mask,
                               const DistillLossConfig& config) {
  if (student_value.dim() != 4 || student_value.shape() != teacher_value.shape())
    throw std::invalid_argument(
        "value_distillation_loss: student and teacher values must both be [S, B, H, d], got " +
        shape_str(student_value.shape()) + " and " + shape_str(teacher_value.shape()));
  const int64_t S = student_value.size(0), B = student_value.size(1), H = student_value.size(2);
  const int64_t d = student_value.size(3);
  if (teacher_logits.dim() != 4 || teacher_logits.size(0) != B || teacher_logits.size(1) != H ||
      teacher_logits.size(3) != S)
    throw std::invalid_argument("value_distillation_loss: teacher_logits must be [" + std::to_string(B) +
                                ", " + std::to_string(H) + ", L, " + std::to_string(S) + "], got " +
                                shape_str(teacher_logits.shape()));
  const Tensor m = instance_attention_mask(teacher_logits, real_mask);  // [B, H, S], constant
  const Tensor student = layer_norm(student_value, {d}, Tensor(), Tensor(), config.norm_eps);
  Tensor teacher;
  {
    NoGradGuard no_grad;
    teacher = layer_norm(teacher_value.detach(), {d}, Tensor(), Tensor(), config.norm_eps);
  }
  const Tensor diff = sub(student, teacher);
  const Tensor squared = mean(mul(diff, diff), {3}).permute({1, 2, 0});  // mean over c: [B, H, S]
  const Tensor numerator = sum(mul(squared, m), {2});                    // [B, H]
  Tensor denominator;
  {
    NoGradGuard no_grad;
    denominator = clamp(sum(m, {2}), 1e-6, std::numeric_limits<double>::infinity());
  }
  // mean over (b, h, c) of numerator_c / denominator equals mean over (b, h) of mean_c(...) / denominator.
  return mul(mean(div(numerator, denominator)), config.weight);
}

Tensor distillation_loss(const Tensor& student_features, Linear& adapter, const Tensor& teacher_value,
                         const Tensor& teacher_logits, const Tensor& real_mask,
                         const DistillLossConfig& config, bool detach_student_features) {
  if (student_features.dim() != 3 || teacher_value.dim() != 4 ||
      student_features.size(0) != teacher_value.size(0) || student_features.size(1) != teacher_value.size(1))
    throw std::invalid_argument(
        "distillation_loss: student features [S, B, C] must match the teacher value [S, B, H, d] "
        "in S and B (same padded input), got " +
        shape_str(student_features.shape()) + " and " + shape_str(teacher_value.shape()));
  const int64_t channels = teacher_value.size(2) * teacher_value.size(3);
  if (adapter.weight().size(0) != channels)
    throw std::invalid_argument("distillation_loss: the adapter outputs " +
                                std::to_string(adapter.weight().size(0)) +
                                " channels but the teacher value has H * d = " + std::to_string(channels));
  const Tensor input = detach_student_features ? student_features.detach() : student_features;
  const Tensor student_value = adapter.forward(input).reshape(teacher_value.shape());
  return value_distillation_loss(student_value, teacher_value, teacher_logits, real_mask, config);
}

}  // namespace icd
