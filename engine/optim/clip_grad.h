// Gradient clipping, in place on the parameters' .grad (engine/optim/clip_grad.cpp). Parameters without a
// gradient are skipped. Both run under NoGradGuard.
#pragma once
#include <vector>

#include "engine/tensor.h"

namespace icd {

// torch.nn.utils.clip_grad_value_: every gradient element is clamped to [-clip_value, clip_value].
void clip_grad_value(const std::vector<Tensor>& parameters, double clip_value);

// torch.nn.utils.clip_grad_norm_ with norm_type 2: total = sqrt(sum over all gradient elements of g^2);
// if scale = max_norm / (total + 1e-6) is below 1 every gradient is multiplied by it. Returns total
// (0 when no parameter has a gradient). A non-finite total leaves the gradients untouched: the caller
// sees it in the return value and must decide (torch would multiply the gradients by NaN).
double clip_grad_norm(const std::vector<Tensor>& parameters, double max_norm);

}  // namespace icd
