// The arithmetic of batch, group and layer norm (engine/ops/norm.cpp states the math and derives the
// backward) as ICD_HD bodies. The CUDA kernels (engine/cuda/norm.cu) run them; tests/test_kernel_bodies.cpp
// runs them on the CPU. Statistics and the backward's sums accumulate in double, the per-element maps run
// in the tensor's dtype, as on the CPU.
//
// A "set" is the group of elements normalised together: a channel (batch norm), a (sample, group) pair
// (group norm) or a row (layer norm). Each is `count` elements made of runs of `run` contiguous elements,
// `run_stride` apart, the first at set * set_stride.
#pragma once
#include <cmath>
#include <cstdint>

#include "engine/hd.h"

namespace icd::kernels {

struct NormSets {
  int64_t sets = 0, count = 0, run = 1, run_stride = 0, set_stride = 0;

  ICD_HD int64_t offset(int64_t set, int64_t k) const {
    return set * set_stride + (k / run) * run_stride + k % run;
  }
};

// Partial sums over one set's elements first, first + step, ... (one thread's share; a block adds the
// shares of its threads).
template <class T>
ICD_HD double set_partial_sum(const T* x, const NormSets& s, int64_t set, int64_t first, int64_t step) {
  double acc = 0.0;
  for (int64_t k = first; k < s.count; k += step)
    acc += static_cast<double>(x[s.offset(set, k)]);
  return acc;
}

template <class T>
ICD_HD double set_partial_squares(const T* x, const NormSets& s, int64_t set, int64_t first, int64_t step,
                                  double mean) {
  double acc = 0.0;
  for (int64_t k = first; k < s.count; k += step) {
    const double d = static_cast<double>(x[s.offset(set, k)]) - mean;
    acc += d * d;
  }
  return acc;
}

// The backward's two sums over a share of one set: of g_hat and of g_hat (x - mu), with g_hat = g w_k for a
// weight indexed by the element's place in its set (layer norm), or g (weight_by_k null).
struct NormGradSums {
  double g = 0.0, g_x_mu = 0.0;
};

template <class T>
ICD_HD NormGradSums set_partial_grad_sums(const T* x, const T* grad, const T* weight_by_k, const NormSets& s,
                                          int64_t set, int64_t first, int64_t step, double mu) {
  NormGradSums acc;
  for (int64_t k = first; k < s.count; k += step) {
    const int64_t at = s.offset(set, k);
    const double g_hat = weight_by_k ? static_cast<double>(grad[at]) * static_cast<double>(weight_by_k[k])
                                     : static_cast<double>(grad[at]);
    acc.g += g_hat;
    acc.g_x_mu += g_hat * (static_cast<double>(x[at]) - mu);
  }
  return acc;
}

ICD_HD double norm_inverse_std(double var, double eps) {
  return 1.0 / std::sqrt(var + eps);
}

// x [N, C, S] for batch norm (a set per channel, groups == 0) or group norm (groups groups per sample).
struct ChannelNorm {
  int64_t N = 0, C = 0, S = 0, groups = 0;

  ICD_HD int64_t numel() const { return N * C * S; }
  ICD_HD int64_t channel(int64_t i) const { return (i / S) % C; }
  ICD_HD int64_t set(int64_t i) const {
    return groups == 0 ? channel(i) : (i / (C * S)) * groups + channel(i) / (C / groups);
  }
  // The sets whose statistics the forward computes.
  ICD_HD NormSets stat_sets() const {
    if (groups == 0) return {C, N * S, S, C * S, S};
    const int64_t m = (C / groups) * S;
    return {N * groups, m, m, 0, m};
  }
};

// y = (x - mu) scale + shift with scale = invstd w (w = 1 without a weight), shift = b (0 without a bias).
template <class T>
ICD_HD T channel_norm_forward_element(const T* x, const ChannelNorm& cn, const double* mean,
                                      const double* invstd, const T* weight, const T* bias, int64_t i) {
  const int64_t c = cn.channel(i), set = cn.set(i);
  const T mu = static_cast<T>(mean[set]);
  const T scale = static_cast<T>(invstd[set] * (weight ? static_cast<double>(weight[c]) : 1.0));
  const T shift = bias ? bias[c] : T(0);
  return (x[i] - mu) * scale + shift;
}

// dx = a g + c_x (x - mu) + c_0 with a = invstd w and the set's constants c_x, c_0.
template <class T>
ICD_HD T channel_norm_grad_element(const T* grad, const T* x, const ChannelNorm& cn, const double* mean,
                                   const double* invstd, const T* weight, const double* c_x,
                                   const double* c_0, int64_t i) {
  const int64_t c = cn.channel(i), set = cn.set(i);
  const T a = static_cast<T>(invstd[set] * (weight ? static_cast<double>(weight[c]) : 1.0));
  return a * grad[i] + static_cast<T>(c_x[set]) * (x[i] - static_cast<T>(mean[set])) +
         static_cast<T>(c_0[set]);
}

// Layer norm over rows of D elements: y = (x - mu) invstd w + b, each factor only when present.
template <class T>
ICD_HD T layer_norm_forward_element(const T* x, int64_t D, const double* mean, const double* invstd,
                                    const T* weight, const T* bias, int64_t i) {
  const int64_t r = i / D, j = i % D;
  const T mu = static_cast<T>(mean[r]), is = static_cast<T>(invstd[r]);
  if (weight && bias) return (x[i] - mu) * is * weight[j] + bias[j];
  if (weight) return (x[i] - mu) * is * weight[j];
  if (bias) return (x[i] - mu) * is + bias[j];
  return (x[i] - mu) * is + T(0);
}

template <class T>
ICD_HD T layer_norm_grad_element(const T* grad, const T* x, int64_t D, const double* mean,
                                 const double* invstd, const T* weight, const double* c_x, const double* c_0,
                                 int64_t i) {
  const int64_t r = i / D, j = i % D;
  const T is = static_cast<T>(invstd[r]), mu = static_cast<T>(mean[r]);
  const T cx = static_cast<T>(c_x[r]), c0 = static_cast<T>(c_0[r]);
  if (weight) return is * weight[j] * grad[i] + cx * (x[i] - mu) + c0;
  return is * grad[i] + cx * (x[i] - mu) + c0;
}

// The per-set constants of dx = a g + c_x (x - mu) + c_0.
struct GradConstants {
  double c_x = 0.0, c_0 = 0.0;
};

// Batch norm, from the channel's sums of g and g (x - mu) (w is constant over the channel and factored
// out). Eval mode normalises with constants: only the a g term survives.
ICD_HD GradConstants batch_norm_grad_constants(NormGradSums sums, double invstd, double w, double inv_m,
                                               bool training) {
  if (!training) return {0.0, 0.0};
  const double a = invstd * w, sum_g_xhat = sums.g_x_mu * invstd;
  return {-a * invstd * sum_g_xhat * inv_m, -a * sums.g * inv_m};
}

// Group and layer norm, from the set's sums of g_hat = g w and g_hat (x - mu).
ICD_HD GradConstants set_grad_constants(NormGradSums sums, double invstd, double inv_m) {
  return {-invstd * invstd * invstd * sums.g_x_mu * inv_m, -invstd * sums.g * inv_m};
}

// Running statistics, in place: (1 - momentum) old + momentum new (the variance unbiased by M / (M - 1)).
template <class T>
ICD_HD void update_running_stats(T& running_mean, T& running_var, double mean, double var, double momentum,
                                 double unbias) {
  running_mean = static_cast<T>((1.0 - momentum) * running_mean + momentum * mean);
  running_var = static_cast<T>((1.0 - momentum) * running_var + momentum * var * unbias);
}

// Layer norm's dw[j] and db[j] over rows [row_begin, row_end), added in row order onto dw, db.
template <class T>
ICD_HD void layer_norm_param_partial(const T* grad, const T* x, int64_t D, const double* mean,
                                     const double* invstd, int64_t row_begin, int64_t row_end, int64_t j,
                                     double& dw, double& db) {
  for (int64_t r = row_begin; r < row_end; ++r) {
    const double gj = static_cast<double>(grad[r * D + j]);
    dw += gj * (static_cast<double>(x[r * D + j]) - mean[r]) * invstd[r];
    db += gj;
  }
}

// Layer norm's parameter gradients are summed over rows in at most this many blocks of consecutive rows
// (each block's partial sums then added in block order), as the CPU does.
constexpr int64_t kLayerNormRowBlocks = 64;

}  // namespace icd::kernels
