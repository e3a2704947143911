// Loss functions, fused: one pass computes each element's loss and its local derivatives, and the
// backward multiplies the saved derivatives by the incoming gradient (g itself under none; the scalar g
// broadcast under sum, with 1/n folded into the saved derivative under mean).
//
// Shared pieces for a logit x (written so nothing overflows and nothing takes log(0)):
//   e = exp(-|x|) in (0, 1],  p = sigmoid(x) = 1/(1+e) or e/(1+e),  q = sigmoid(-x) = 1 - p (computed
//   directly, not as 1 - p, which would cancel to 0 for large x),  softplus(x) = max(x, 0) + log1p(e).
//
// BCE with logits: ce(x, t) = -t log p - (1-t) log q = softplus(x) - x t
//   d ce/dx = p - t = p(1-t) - q t   (the second form has no cancellation when t is 0 or 1)
//   d ce/dt = -x
// With a weight w: loss = w ce, so d/dx and d/dt scale by w, and d loss/dw = ce.
//
// Sigmoid focal loss (torchvision.ops.sigmoid_focal_loss): with m = 1 - p_t = p(1-t) + q t,
//   loss = alpha_t ce m^gamma,   alpha_t = alpha t + (1-alpha)(1-t)   (1 when alpha < 0)
//   dm/dx = p q (1-t) - q p t = p q (1 - 2t)        (dp/dx = p q, dq/dx = -p q)
//   d loss/dx = alpha_t [ (p(1-t) - q t) m^gamma + ce gamma m^(gamma-1) dm/dx ]
// The second term is evaluated as gamma m^gamma (dm/dx / m): |dm/dx / m| <= 1 for every t in [0, 1], so
// it stays finite when m underflows towards 0 (a confident, correct prediction), and it is 0 at m = 0.
// Targets are constants here (detection labels): no d/dt is formed.
//
// Regression losses on d = x - y (so d/dy = -d/dx):
//   l1: |d|, derivative sign(d) (0 at d = 0, as torch)
//   smooth l1 (beta > 0): 0.5 d^2 / beta where |d| < beta, |d| - 0.5 beta elsewhere; derivative d / beta
//     inside, sign(d) outside. beta = 0 is l1 exactly (torch switches to l1_loss there too).
//   mse: d^2, derivative 2 d
//
// Cross entropy over logits [N, C] with class indices y:
//   loss_i = lse_i - x_{i, y_i},   lse_i = m_i + log sum_j exp(x_ij - m_i),  m_i = max_j x_ij
//   d loss_i / d x_ij = softmax_ij - [j = y_i],   softmax_ij = exp(x_ij - lse_i)
// Rows whose target is ignore_index contribute no loss and no gradient; mean divides by the rows kept.
//
// On a CUDA device the same per-element bodies (engine/kernels/loss_math.h) run in engine/cuda/loss.cu,
// and the sum / mean adds the per-element (per-row) losses in double with the deterministic sum.
#include "engine/ops/loss.h"

#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "engine/autograd.h"
#include "engine/cpu/strided.h"
#include "engine/cuda_ops.h"
#include "engine/dispatch.h"
#include "engine/factory.h"
#include "engine/kernels/loss_math.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/reduce.h"
#include "engine/transfer.h"

namespace icd {
namespace {

// The per-element bodies (LossTerms, BceBody, FocalBody, ...) live in engine/kernels/loss_math.h: the
// CUDA kernels run them too.
using kernels::BceBody;
using kernels::FocalBody;
using kernels::L1Body;
using kernels::MseBody;
using kernels::SmoothL1Body;

// ---- the driver shared by all pointwise losses

struct PointwiseCall {
  const char* op;
  const char* input_name;
  const char* target_name;
  Reduction reduction;
  bool target_differentiable;
};

template <class Body>
Tensor pointwise_loss(const PointwiseCall& call, const Tensor& input, const Tensor& target,
                      const Tensor& weight, Body body) {
  const std::string op = call.op;
  if (!input.defined() || !target.defined())
    throw std::invalid_argument(op + ": " + call.input_name + " and " + call.target_name +
                                " must be defined");
  const Device device =
      op_device(call.op, {{call.input_name, input}, {call.target_name, target}, {"weight", weight}});
  if (input.shape() != target.shape())
    throw std::invalid_argument(op + ": " + call.input_name + " " + shape_str(input.shape()) + " and " +
                                call.target_name + " " + shape_str(target.shape()) +
                                " must have the same shape");
  if (weight.defined() && broadcast_shapes(weight.shape(), input.shape(), call.op) != input.shape())
    throw std::invalid_argument(op + ": weight " + shape_str(weight.shape()) + " does not broadcast to " +
                                call.input_name + " " + shape_str(input.shape()));
  const bool grad_mode = autograd::grad_enabled();
  if (!call.target_differentiable && grad_mode && target.requires_grad())
    throw std::invalid_argument(op + ": no gradient flows into " + call.target_name +
                                ", but it requires grad; pass " + call.target_name + ".detach()");
  const bool need_d_input = grad_mode && input.requires_grad();
  const bool need_d_target = grad_mode && target.requires_grad();
  const bool need_d_weight = grad_mode && weight.defined() && weight.requires_grad();

  const Shape& shape = input.shape();
  const int64_t n = input.numel();
  const Tensor x = input.detach().contiguous(), t = target.detach().contiguous();
  const Tensor w = weight.defined() ? weight.detach().expand(shape).contiguous() : Tensor();
  Tensor per_element = call.reduction == Reduction::none ? empty(shape, input.options()) : Tensor();
  Tensor d_input = need_d_input ? empty(shape, input.options()) : Tensor();
  Tensor d_target = need_d_target ? empty(shape, input.options()) : Tensor();
  Tensor d_weight = need_d_weight ? empty(shape, input.options()) : Tensor();
  // Under mean, every element's share of the output is 1/n: fold it into the saved derivatives.
  const double scale = call.reduction == Reduction::mean ? 1.0 / static_cast<double>(n) : 1.0;

  Tensor result;
  if (device.is_cuda()) {
    // Each element's loss in double, added up by the deterministic sum (as the CPU, in double).
    Tensor losses = per_element.defined() ? Tensor() : empty(shape, {DType::f64, device});
    cuda_ops::pointwise_loss(call.op, kernels::loss_call(body), x, t, w, scale, per_element, losses, d_input,
                             d_target, d_weight);
    result = per_element.defined() ? per_element : mul(sum(losses), scale).to(input.dtype());
  } else {
    const double total = dispatch_floating(input.dtype(), call.op, [&](auto tag) {
      using T = decltype(tag);
      const T* xp = x.data<T>();
      const T* tp = t.data<T>();
      const T* wp = w.defined() ? w.data<T>() : nullptr;
      const kernels::PointwiseLossOutputs<T> outputs{per_element.defined() ? per_element.data<T>() : nullptr,
                                                     d_input.defined() ? d_input.data<T>() : nullptr,
                                                     d_target.defined() ? d_target.data<T>() : nullptr,
                                                     d_weight.defined() ? d_weight.data<T>() : nullptr};
      const T s = static_cast<T>(scale);
      double sum = 0.0;
#pragma omp parallel for reduction(+ : sum) schedule(static) if (n >= cpu::kParallelGrain)
      for (int64_t i = 0; i < n; ++i)
        sum += kernels::pointwise_loss_element(body, xp[i], tp[i], wp ? wp[i] : T(1), s, i, outputs);
      return sum;
    });
    result = per_element.defined() ? per_element : scalar_tensor(total * scale, input.options());
  }
  autograd::record(
      result, call.op, {input, target, weight},
      [d_input, d_target, d_weight,
       weight_shape = weight.defined() ? weight.shape() : Shape{}](const Tensor& g) -> std::vector<Tensor> {
        auto times_g = [&g](const Tensor& local) { return local.defined() ? mul(local, g) : Tensor(); };
        Tensor grad_weight = d_weight.defined() ? sum_to(mul(d_weight, g), weight_shape) : Tensor();
        return {times_g(d_input), times_g(d_target), grad_weight};
      });
  return result;
}

}  // namespace

Tensor sigmoid_focal_loss(const Tensor& logits, const Tensor& targets, double alpha, double gamma,
                          Reduction reduction) {
  if (!(gamma >= 0.0))
    throw std::invalid_argument("sigmoid_focal_loss: gamma must be >= 0, got " + std::to_string(gamma));
  return pointwise_loss({"sigmoid_focal_loss", "logits", "targets", reduction, false}, logits, targets,
                        Tensor(), FocalBody{alpha, gamma});
}

Tensor binary_cross_entropy_with_logits(const Tensor& logits, const Tensor& targets, Reduction reduction,
                                        const Tensor& weight) {
  return pointwise_loss({"binary_cross_entropy_with_logits", "logits", "targets", reduction, true}, logits,
                        targets, weight, BceBody{});
}

Tensor l1_loss(const Tensor& input, const Tensor& target, Reduction reduction) {
  return pointwise_loss({"l1_loss", "input", "target", reduction, true}, input, target, Tensor(), L1Body{});
}

Tensor smooth_l1_loss(const Tensor& input, const Tensor& target, double beta, Reduction reduction) {
  if (!(beta >= 0.0))
    throw std::invalid_argument("smooth_l1_loss: beta must be >= 0, got " + std::to_string(beta));
  const PointwiseCall call{"smooth_l1_loss", "input", "target", reduction, true};
  if (beta == 0.0) return pointwise_loss(call, input, target, Tensor(), L1Body{});
  return pointwise_loss(call, input, target, Tensor(), SmoothL1Body{beta});
}

Tensor mse_loss(const Tensor& input, const Tensor& target, Reduction reduction) {
  return pointwise_loss({"mse_loss", "input", "target", reduction, true}, input, target, Tensor(), MseBody{});
}

Tensor cross_entropy(const Tensor& logits, const Tensor& target, Reduction reduction,
                     std::optional<int64_t> ignore_index) {
  if (!logits.defined() || !target.defined())
    throw std::invalid_argument("cross_entropy: logits and target must be defined");
  const Device device = op_device("cross_entropy", {{"logits", logits}});
  if (target.device() != device)
    throw std::invalid_argument("cross_entropy: target is on " + target.device().str() +
                                " but logits is on " + device.str());
  if (logits.dim() != 2)
    throw std::invalid_argument("cross_entropy: logits must be [N, C], got " + shape_str(logits.shape()));
  const int64_t rows = logits.size(0), classes = logits.size(1);
  if (target.dtype() != DType::i64)
    throw std::invalid_argument(std::string("cross_entropy: target must hold i64 class indices, got ") +
                                dtype_name(target.dtype()));
  if (target.shape() != Shape{rows})
    throw std::invalid_argument("cross_entropy: target " + shape_str(target.shape()) +
                                " must be [N] for logits " + shape_str(logits.shape()));
  if (classes == 0) throw std::invalid_argument("cross_entropy: logits have zero classes");

  // The labels are checked (and, on the CPU, read) on the host.
  const std::vector<int64_t> labels =
      (device.is_cuda() ? to_device(target, Device::cpu()) : target).to_vector<int64_t>();
  std::vector<char> kept(rows, 1);
  int64_t kept_count = 0;
  for (int64_t i = 0; i < rows; ++i) {
    if (ignore_index && labels[i] == *ignore_index) {
      kept[i] = 0;
      continue;
    }
    if (labels[i] < 0 || labels[i] >= classes)
      throw std::invalid_argument("cross_entropy: target[" + std::to_string(i) +
                                  "] = " + std::to_string(labels[i]) + " is not a class index in [0, " +
                                  std::to_string(classes) + ")");
    ++kept_count;
  }

  const bool need_grad = autograd::grad_enabled() && logits.requires_grad();
  const Tensor x = logits.detach().contiguous();
  Tensor per_row = empty({rows}, logits.options());
  Tensor d_logits = need_grad ? empty(logits.shape(), logits.options()) : Tensor();
  const double scale =
      reduction == Reduction::mean ? (kept_count > 0 ? 1.0 / static_cast<double>(kept_count) : 0.0) : 1.0;

  Tensor result;
  if (device.is_cuda()) {
    // Each row's loss in double, added up by the deterministic sum (as the CPU, in double).
    Tensor row_losses = empty({rows}, {DType::f64, device});
    cuda_ops::cross_entropy("cross_entropy", x, target.contiguous(), ignore_index, scale, per_row, row_losses,
                            d_logits);
    if (reduction == Reduction::none)
      result = per_row;
    else if (reduction == Reduction::sum)
      result = sum(row_losses).to(logits.dtype());
    else  // mean with every row ignored is 0/0 = NaN, as in torch
      result = div(sum(row_losses), static_cast<double>(kept_count)).to(logits.dtype());
  } else {
    const double total = dispatch_floating(logits.dtype(), "cross_entropy", [&](auto tag) {
      using T = decltype(tag);
      const T* xp = x.data<T>();
      T* out = per_row.data<T>();
      T* dx = d_logits.defined() ? d_logits.data<T>() : nullptr;
      double sum = 0.0;
#pragma omp parallel for reduction(+ : sum) schedule(static) if (rows * classes >= cpu::kParallelGrain)
      for (int64_t i = 0; i < rows; ++i)
        sum += kernels::cross_entropy_row(xp + i * classes, classes, labels[i], kept[i] != 0, scale, out + i,
                                          dx ? dx + i * classes : nullptr);
      return sum;
    });
    if (reduction == Reduction::none) {
      result = per_row;
    } else {
      // mean with every row ignored is 0/0 = NaN, as in torch
      const double value = reduction == Reduction::sum ? total : total / static_cast<double>(kept_count);
      result = scalar_tensor(value, logits.options());
    }
  }
  autograd::record(result, "cross_entropy", {logits},
                   [d_logits, reduction, rows](const Tensor& g) -> std::vector<Tensor> {
                     return {mul(d_logits, reduction == Reduction::none ? g.reshape({rows, 1}) : g)};
                   });
  return result;
}

}  // namespace icd
