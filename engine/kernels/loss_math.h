// The per-element arithmetic of the fused losses (engine/ops/loss.cpp states the math and derives every
// formula). The CPU loops of loss.cpp and the CUDA kernels (engine/cuda/loss.cu) run these same bodies,
// and tests/test_kernel_bodies.cpp checks them on the CPU.
#pragma once
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "engine/hd.h"

namespace icd::kernels {

template <class T>
struct LossTerms {
  T loss;
  T d_input;   // d loss / d input
  T d_target;  // d loss / d target
};

template <class T>
struct SigmoidParts {
  T p;   // sigmoid(x)
  T q;   // sigmoid(-x) = 1 - p
  T ce;  // softplus(x) - x t, summed as (max(x, 0) - x t) + log1p(e): for a hard target the bracket is
         // exactly 0 or |x|, so a tiny loss such as log1p(e^-30) is not rounded away against |x|
};

template <class T>
ICD_HD SigmoidParts<T> sigmoid_parts(T x, T t) {
  const T e = std::exp(-std::abs(x));
  const T inv = T(1) / (T(1) + e);
  const T ce = ((x > T(0) ? x : T(0)) - x * t) + std::log1p(e);
  if (x >= T(0)) return {inv, e * inv, ce};
  return {e * inv, inv, ce};
}

template <class T>
ICD_HD T sign_of(T d) {
  return d > T(0) ? T(1) : (d < T(0) ? T(-1) : T(0));
}

struct BceBody {
  template <class T>
  ICD_HD LossTerms<T> operator()(T x, T t) const {
    const SigmoidParts<T> s = sigmoid_parts(x, t);
    return {s.ce, s.p * (T(1) - t) - s.q * t, -x};
  }
};

struct FocalBody {
  double alpha, gamma;
  template <class T>
  ICD_HD LossTerms<T> operator()(T x, T t) const {
    const SigmoidParts<T> s = sigmoid_parts(x, t);
    const T ce = s.ce;
    const T d_ce = s.p * (T(1) - t) - s.q * t;
    const T m = s.p * (T(1) - t) + s.q * t;  // 1 - p_t
    const T g = static_cast<T>(gamma);
    const T modulator = gamma == 2.0 ? m * m : std::pow(m, g);
    const T d_m_over_m = m > T(0) ? s.p * s.q * (T(1) - T(2) * t) / m : T(0);
    const T d_modulator = g * modulator * d_m_over_m;
    const T a = static_cast<T>(alpha);
    const T alpha_t = alpha >= 0.0 ? a * t + (T(1) - a) * (T(1) - t) : T(1);
    return {alpha_t * ce * modulator, alpha_t * (d_ce * modulator + ce * d_modulator), T(0)};
  }
};

struct L1Body {
  template <class T>
  ICD_HD LossTerms<T> operator()(T x, T y) const {
    const T d = x - y;
    const T s = sign_of(d);
    return {std::abs(d), s, -s};
  }
};

struct SmoothL1Body {
  double beta;  // > 0
  template <class T>
  ICD_HD LossTerms<T> operator()(T x, T y) const {
    const T d = x - y, b = static_cast<T>(beta);
    const T ad = std::abs(d);
    if (ad < b) return {T(0.5) * d * d / b, d / b, -d / b};
    const T s = sign_of(d);
    return {ad - T(0.5) * b, s, -s};
  }
};

struct MseBody {
  template <class T>
  ICD_HD LossTerms<T> operator()(T x, T y) const {
    const T d = x - y;
    return {d * d, T(2) * d, T(-2) * d};
  }
};

// Where one element's results go; each array is contiguous, nullptr when not wanted.
template <class T>
struct PointwiseLossOutputs {
  T* per_element;  // w loss (reduction none)
  T* d_input;      // w d loss/d input, times scale
  T* d_target;     // w d loss/d target, times scale
  T* d_weight;     // loss, times scale
};

// Element i of a pointwise loss with weight w; scale is 1/n under mean (folded into the derivatives),
// else 1. Returns w loss, which the reductions add up.
template <class Body, class T>
ICD_HD T pointwise_loss_element(const Body& body, T x, T t, T w, T scale, int64_t i,
                                const PointwiseLossOutputs<T>& out) {
  const LossTerms<T> r = body(x, t);
  const T loss = w * r.loss;
  if (out.per_element) out.per_element[i] = loss;
  if (out.d_input) out.d_input[i] = w * r.d_input * scale;
  if (out.d_target) out.d_target[i] = w * r.d_target * scale;
  if (out.d_weight) out.d_weight[i] = r.loss * scale;
  return loss;
}

// A pointwise loss by name and parameters, so that a host entry point can pick the body a kernel runs.
enum class PointwiseLoss { bce, focal, l1, smooth_l1, mse };
struct PointwiseLossCall {
  PointwiseLoss loss;
  double alpha = 0, gamma = 0;  // focal
  double beta = 0;              // smooth l1
};

inline PointwiseLossCall loss_call(const BceBody&) {
  return {PointwiseLoss::bce};
}
inline PointwiseLossCall loss_call(const FocalBody& body) {
  return {PointwiseLoss::focal, body.alpha, body.gamma};
}
inline PointwiseLossCall loss_call(const L1Body&) {
  return {PointwiseLoss::l1};
}
inline PointwiseLossCall loss_call(const SmoothL1Body& body) {
  return {PointwiseLoss::smooth_l1, 0, 0, body.beta};
}
inline PointwiseLossCall loss_call(const MseBody&) {
  return {PointwiseLoss::mse};
}

// Calls f with the body `call` names (the inverse of loss_call).
template <class F>
decltype(auto) visit_pointwise_loss(const PointwiseLossCall& call, F&& f) {
  switch (call.loss) {
    case PointwiseLoss::bce:
      return f(BceBody{});
    case PointwiseLoss::focal:
      return f(FocalBody{call.alpha, call.gamma});
    case PointwiseLoss::l1:
      return f(L1Body{});
    case PointwiseLoss::smooth_l1:
      return f(SmoothL1Body{call.beta});
    case PointwiseLoss::mse:
      return f(MseBody{});
  }
  throw std::invalid_argument("visit_pointwise_loss: unknown loss " + std::to_string(int(call.loss)));
}

// One row of cross entropy over `classes` logits: writes the row's loss lse - x[label] to *loss_out and,
// when drow is not null, its gradient (softmax - onehot(label)) times scale; returns the loss in double.
// An ignored row (kept false; its label is then not read) has loss 0 and gradient 0. The maximum is the
// first of the row's largest logits, exponentials are taken in T and summed in double.
template <class T>
ICD_HD double cross_entropy_row(const T* row, int64_t classes, int64_t label, bool kept, double scale,
                                T* loss_out, T* drow) {
  if (!kept) {
    *loss_out = T(0);
    if (drow)
      for (int64_t j = 0; j < classes; ++j)
        drow[j] = T(0);
    return 0.0;
  }
  T row_max = row[0];
  for (int64_t j = 1; j < classes; ++j)
    row_max = row[j] > row_max ? row[j] : row_max;
  double exp_sum = 0.0;
  for (int64_t j = 0; j < classes; ++j)
    exp_sum += std::exp(row[j] - row_max);
  const double lse = static_cast<double>(row_max) + std::log(exp_sum);
  const double loss = lse - static_cast<double>(row[label]);
  *loss_out = static_cast<T>(loss);
  if (drow) {
    for (int64_t j = 0; j < classes; ++j)
      drow[j] = static_cast<T>(std::exp(static_cast<double>(row[j]) - lse) * scale);
    drow[label] -= static_cast<T>(scale);
  }
  return loss;
}

}  // namespace icd::kernels
