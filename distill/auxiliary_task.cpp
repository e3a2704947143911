#include "distill/auxiliary_task.h"

#include <limits>
#include <stdexcept>
#include <string>

#include "engine/autograd.h"
#include "engine/factory.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/loss.h"
#include "engine/ops/reduce.h"
#include "engine/ops/shape.h"

namespace icd {

AuxiliaryLosses auxiliary_losses(const Tensor& predictions, const Tensor& padding_mask,
                                 const Tensor& real_mask, const Tensor& targets) {
  if (predictions.dim() != 3 || predictions.size(2) != 5)
    throw std::invalid_argument("auxiliary_losses: predictions must be [B, L, 5], got " +
                                shape_str(predictions.shape()));
  const Shape BL{predictions.size(0), predictions.size(1)};
  if (padding_mask.shape() != BL || real_mask.shape() != BL || targets.shape() != Shape{BL[0], BL[1], 4})
    throw std::invalid_argument("auxiliary_losses: predictions " + shape_str(predictions.shape()) +
                                " need padding_mask and real_mask " + shape_str(BL) + " and targets [" +
                                std::to_string(BL[0]) + ", " + std::to_string(BL[1]) + ", 4], got " +
                                shape_str(padding_mask.shape()) + ", " + shape_str(real_mask.shape()) + ", " +
                                shape_str(targets.shape()));
  const double inf = std::numeric_limits<double>::infinity();
  Tensor valid, scale;
  {
    NoGradGuard no_grad;  // masks and targets are constants
    valid = sub(ones_like(padding_mask), padding_mask);
    std::vector<Tensor> t = split(targets.detach(), 1, 2);  // l, t, r, b: [B, L, 1] each
    scale = clamp(add(targets.detach(), cat({t[2], t[3], t[0], t[1]}, 2)), 1e-7, inf);
  }
  const Tensor confidence = predictions.select(2, 0);
  const Tensor bce = binary_cross_entropy_with_logits(confidence, real_mask.detach(), Reduction::none);
  const Tensor identification = div(sum(mul(bce, valid)), clamp(sum(valid), 1e-6, inf));

  const Tensor distances = sigmoid(predictions.narrow(2, 1, 4));
  const Tensor relative = div(l1_loss(distances, targets.detach(), Reduction::none), scale);
  const Tensor per_query = sum(relative, {2});  // [B, L]
  const Tensor localization =
      div(sum(mul(per_query, real_mask.detach())), clamp(sum(real_mask.detach()), 1e-6, inf));
  return {identification, localization};
}

AuxiliaryPredictor::AuxiliaryPredictor(int64_t hidden_dim, Generator& gen)
    : Mlp(hidden_dim, hidden_dim, 5, 3, gen) {}

Tensor AuxiliaryPredictor::predict(const Tensor& decoded) {
  if (decoded.dim() != 3)
    throw std::invalid_argument("AuxiliaryPredictor: decoded queries must be [L, B, C], got " +
                                shape_str(decoded.shape()));
  return forward(decoded).permute({1, 0, 2});
}

}  // namespace icd
