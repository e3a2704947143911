// Loss functions, each one fused op (engine/ops/loss.cpp): the loss and its local derivative are
// computed in a single pass over the data, and backward only scales the saved derivative by the
// incoming gradient.
//
// Contract shared by every loss here:
// - `input` and `target` are float tensors of one dtype (f32 or f64) and of the same shape (no
//   broadcasting: a silently broadcast target is a classic loss bug). Either may be a non-contiguous view.
// - Reduction::none returns the per-element loss with the input's shape; sum and mean return a 0-d
//   tensor. mean over zero elements is NaN, as in PyTorch.
// - The gradient reaches `input` and, unless stated otherwise, `target` too when it requires grad (the
//   distillation losses compare two learned tensors).
#pragma once
#include <cstdint>
#include <optional>

#include "engine/tensor.h"

namespace icd {

enum class Reduction { none, mean, sum };

// torchvision.ops.sigmoid_focal_loss (Lin et al., "Focal Loss for Dense Object Detection"):
//   p = sigmoid(x),  ce = BCE-with-logits(x, t),  p_t = p t + (1 - p)(1 - t)
//   loss = alpha_t ce (1 - p_t)^gamma,   alpha_t = alpha t + (1 - alpha)(1 - t)   (alpha < 0: alpha_t = 1)
// targets in [0, 1] (0/1 labels, or soft targets). Stable for any logit. No gradient flows into
// `targets`: passing targets that require grad while grad mode is on is an error (detach them).
Tensor sigmoid_focal_loss(const Tensor& logits, const Tensor& targets, double alpha = 0.25,
                          double gamma = 2.0, Reduction reduction = Reduction::none);

// torch.nn.functional.binary_cross_entropy_with_logits:
//   loss = w (max(x, 0) - x t + log(1 + e^{-|x|}))
// `weight` (optional) broadcasts to the logits' shape; it receives a gradient if it requires one.
Tensor binary_cross_entropy_with_logits(const Tensor& logits, const Tensor& targets,
                                        Reduction reduction = Reduction::mean,
                                        const Tensor& weight = Tensor());

// |x - y|
Tensor l1_loss(const Tensor& input, const Tensor& target, Reduction reduction = Reduction::mean);
// 0.5 (x - y)^2 / beta where |x - y| < beta, |x - y| - 0.5 beta elsewhere; beta = 0 is exactly l1_loss.
Tensor smooth_l1_loss(const Tensor& input, const Tensor& target, double beta = 1.0,
                      Reduction reduction = Reduction::mean);
// (x - y)^2
Tensor mse_loss(const Tensor& input, const Tensor& target, Reduction reduction = Reduction::mean);

// torch.nn.functional.cross_entropy for logits [N, C] and class indices `target` (i64 [N], each in
// [0, C) or equal to ignore_index): loss_i = logsumexp_j(x_ij) - x_{i, target_i}. Ignored rows give 0
// and, under mean, are left out of the count (all rows ignored: NaN, as in PyTorch).
Tensor cross_entropy(const Tensor& logits, const Tensor& target, Reduction reduction = Reduction::mean,
                     std::optional<int64_t> ignore_index = std::nullopt);

}  // namespace icd
