// Normalisation: batch norm, group norm, layer norm.
//
// All three normalise x over sets of elements and then apply an affine map:
//   mu = mean_S(x),   var = mean_S((x - mu)^2)  (biased),   sigma = sqrt(var + eps)
//   x_hat = (x - mu) / sigma,   y = x_hat * w + b
// They differ only in which elements form a set S and what w, b are indexed by:
//   batch_norm  x [N, C, *]:  one set per channel c: its N * prod(*) elements;        w, b: [C]
//   group_norm  x [N, C, *]:  one set per (sample n, group of C/G consecutive channels):
//                             (C/G) * prod(*) elements;                               w, b: [C]
//   layer_norm  x [..., D]:   one set per leading index: the prod(D) trailing elements; w, b: [D]
//
// Backward. Let g = dL/dy, M = |S| and g_hat = g * w = dL/dx_hat. Then, over each set,
//   dL/dx = (1/sigma) (g_hat - mean_S(g_hat) - x_hat mean_S(g_hat x_hat))
// Derivation: dmu/dx_j = 1/M and, from dvar/dx_j = 2 (x_j - mu)/M (the mu term sums to zero),
// dsigma/dx_j = x_hat_j / (M sigma). So dx_hat_i/dx_j = (delta_ij - 1/M - x_hat_i x_hat_j / M) / sigma,
// and dL/dx_j = sum_i g_hat_i dx_hat_i/dx_j is the line above.
//   dL/dw = sum of g * x_hat over the elements w multiplies,   dL/db = the same sum of g.
// Eval-mode batch_norm normalises with the running statistics, constants with respect to x, so only
// the first term survives: dL/dx = g * w / sigma_running.
// In the kernels dL/dx is evaluated per element as  a g + c_x (x - mu) + c_0  with per-set (batch and
// group norm: per-channel) constants a = w / sigma, c_x = -mean_S(g_hat x_hat) / sigma^2 and
// c_0 = -mean_S(g_hat) / sigma, so x_hat is never stored.
//
// Training-mode batch_norm also updates the running statistics in place, outside the graph:
//   running_mean = (1 - momentum) running_mean + momentum mu
//   running_var  = (1 - momentum) running_var  + momentum var M / (M - 1)    (unbiased, as torch does)
//
// Statistics and the sums of the backward accumulate in double (f32 inputs keep their digits over
// large sets); the per-element maps run in the tensor's dtype. Sets are independent, so OpenMP runs
// over channels (batch norm), (sample, group) pairs (group norm) or blocks of rows (layer norm). The
// reductions across sets (dw, db of group and layer norm) go through per-block partial sums added in a
// fixed order, so results do not depend on the thread count.
//
// On a CUDA device the same formulas run as the ICD_HD bodies of engine/kernels/norm_math.h: one block per
// set for the statistics and the backward's sums (a fixed-order tree, no atomics), one thread per element
// for the maps; the statistics stay on the device for the backward.
#include "engine/ops/norm.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "engine/autograd.h"
#include "engine/cpu/strided.h"
#include "engine/cuda_ops.h"
#include "engine/dispatch.h"
#include "engine/factory.h"

namespace icd {
namespace {

// ---- sums over contiguous runs, in double. Eight independent accumulators let the additions pipeline
// (and vectorise) without the compiler reassociating; the order is fixed, so the result is too.

template <class Term>
double sum_terms(int64_t n, Term term) {
  double acc[8] = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k)
      acc[k] += term(i + k);
  double total = 0.0;
  for (; i < n; ++i)
    total += term(i);
  for (double a : acc)
    total += a;
  return total;
}

struct GradSums {
  double g = 0.0;       // sum of g_hat
  double g_x_mu = 0.0;  // sum of g_hat (x - mu)
};

// The two sums of the backward over one run of n elements, where g_hat(i) gives dL/dx_hat at i.
template <class T, class GradHat>
GradSums grad_sums(int64_t n, const T* x, double mu, GradHat g_hat) {
  double sg[8] = {}, sgx[8] = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k) {
      const double gh = g_hat(i + k);
      sg[k] += gh;
      sgx[k] += gh * (static_cast<double>(x[i + k]) - mu);
    }
  GradSums sums;
  for (; i < n; ++i) {
    const double gh = g_hat(i);
    sums.g += gh;
    sums.g_x_mu += gh * (static_cast<double>(x[i]) - mu);
  }
  for (int k = 0; k < 8; ++k) {
    sums.g += sg[k];
    sums.g_x_mu += sgx[k];
  }
  return sums;
}

// The same with g_hat = g (batch and group norm, where w is constant over each run and factored out).
template <class T>
GradSums unweighted_grad_sums(int64_t n, const T* x, double mu, const T* g) {
  return grad_sums(n, x, mu, [g](int64_t i) { return static_cast<double>(g[i]); });
}

struct Moments {
  double mean = 0.0;
  double var = 0.0;  // biased: divided by the number of elements
};

// Mean and biased variance of `runs` runs of `length` contiguous elements, `stride` apart. Two passes
// (mean, then squared deviations): E[x^2] - E[x]^2 cancels badly when the mean dwarfs the spread.
template <class T>
Moments set_moments(const T* x, int64_t runs, int64_t length, int64_t stride) {
  double sum = 0.0;
  for (int64_t r = 0; r < runs; ++r) {
    const T* p = x + r * stride;
    sum += sum_terms(length, [p](int64_t i) { return static_cast<double>(p[i]); });
  }
  const double count = static_cast<double>(runs * length);
  const double mean = sum / count;
  double squares = 0.0;
  for (int64_t r = 0; r < runs; ++r) {
    const T* p = x + r * stride;
    squares += sum_terms(length, [p, mean](int64_t i) {
      const double d = static_cast<double>(p[i]) - mean;
      return d * d;
    });
  }
  return {mean, squares / count};
}

// y = (x - mu) * scale + shift over a run: the forward map of batch and group norm for one channel.
template <class T>
void normalize_run(const T* x, T* y, int64_t n, T mu, T scale, T shift) {
  for (int64_t i = 0; i < n; ++i)
    y[i] = (x[i] - mu) * scale + shift;
}

// dx = a g + c_x (x - mu) + c_0 over a run (the closed form above with per-channel constants).
template <class T>
void grad_x_run(const T* g, const T* x, T* dx, int64_t n, T mu, T a, T c_x, T c_0) {
  for (int64_t i = 0; i < n; ++i)
    dx[i] = a * g[i] + c_x * (x[i] - mu) + c_0;
}

// ---- argument handling

double inverse_std(double var, double eps) {
  return 1.0 / std::sqrt(var + eps);
}

// A defined parameter as a contiguous tensor outside the graph; undefined stays undefined.
Tensor plain(const Tensor& t) {
  return t.defined() ? t.detach().contiguous() : Tensor();
}

template <class T>
const T* data_or_null(const Tensor& t) {
  return t.defined() ? t.data<T>() : nullptr;
}

template <class T>
double value_or_one(const T* p, int64_t i) {
  return p ? static_cast<double>(p[i]) : 1.0;
}

void check_param_shape(const char* op, const char* name, const Tensor& t, const Shape& expected,
                       const Tensor& x) {
  if (t.defined() && t.shape() != expected)
    throw std::invalid_argument(std::string(op) + ": " + name + " has shape " + shape_str(t.shape()) +
                                " but x " + shape_str(x.shape()) + " needs " + shape_str(expected));
}

// Elements per (sample, channel) of an [N, C, *] tensor: prod(*).
int64_t spatial_size(const Tensor& x) {
  int64_t s = 1;
  for (int64_t d = 2; d < x.dim(); ++d)
    s *= x.size(d);
  return s;
}

Tensor empty_if(bool needed, const Shape& shape, TensorOptions options) {
  return needed ? empty(shape, options) : Tensor();
}

// What a backward needs from its forward: the input, the weight, each set's statistics, and which of
// (x, weight, bias) want a gradient.
struct Saved {
  Tensor x;       // contiguous, detached
  Tensor weight;  // contiguous, detached; undefined without one
  std::vector<double> mean, invstd;
  bool need_x, need_weight, need_bias;
};

Saved make_saved(const Tensor& xc, const Tensor& w, const Tensor& x, const Tensor& weight, const Tensor& bias,
                 std::vector<double> mean, std::vector<double> invstd) {
  return {xc,
          w,
          std::move(mean),
          std::move(invstd),
          x.requires_grad(),
          weight.defined() && weight.requires_grad(),
          bias.defined() && bias.requires_grad()};
}

// ---- batch_norm: x viewed as [N, C, S]; the set of channel c is N runs of S elements, C * S apart.

std::vector<Tensor> batch_norm_backward(const Saved& s, const Tensor& grad, bool training) {
  const Tensor g = grad.contiguous();
  const int64_t N = s.x.size(0), C = s.x.size(1), S = s.x.numel() / std::max<int64_t>(1, N * C);
  Tensor dx = empty_if(s.need_x, s.x.shape(), s.x.options());
  Tensor dw = empty_if(s.need_weight, {C}, s.x.options());
  Tensor db = empty_if(s.need_bias, {C}, s.x.options());
  const double inv_m = 1.0 / static_cast<double>(N * S);
  const bool need_sums = s.need_weight || s.need_bias || (s.need_x && training);
  dispatch_floating(s.x.dtype(), "batch_norm backward", [&](auto tag) {
    using T = decltype(tag);
    const T* xp = s.x.data<T>();
    const T* gp = g.data<T>();
    const T* wp = data_or_null<T>(s.weight);
    T* dxp = s.need_x ? dx.data<T>() : nullptr;
#pragma omp parallel for schedule(static) if (C > 1 && N * C * S >= cpu::kParallelGrain)
    for (int64_t c = 0; c < C; ++c) {
      const double mu = s.mean[c], is = s.invstd[c];
      GradSums sums;  // of g (not g_hat: w is constant over the channel and factored out)
      if (need_sums) {
        for (int64_t n = 0; n < N; ++n) {
          const GradSums run = unweighted_grad_sums<T>(S, xp + (n * C + c) * S, mu, gp + (n * C + c) * S);
          sums.g += run.g;
          sums.g_x_mu += run.g_x_mu;
        }
      }
      const double sum_g_xhat = sums.g_x_mu * is;
      if (s.need_weight) dw.data<T>()[c] = static_cast<T>(sum_g_xhat);
      if (s.need_bias) db.data<T>()[c] = static_cast<T>(sums.g);
      if (!dxp) continue;
      const double a = is * value_or_one(wp, c);
      const T c_x = static_cast<T>(training ? -a * is * sum_g_xhat * inv_m : 0.0);
      const T c_0 = static_cast<T>(training ? -a * sums.g * inv_m : 0.0);
      for (int64_t n = 0; n < N; ++n) {
        const int64_t base = (n * C + c) * S;
        grad_x_run<T>(gp + base, xp + base, dxp + base, S, static_cast<T>(mu), static_cast<T>(a), c_x, c_0);
      }
    }
  });
  return {dx, dw, db};
}

// ---- group_norm: x viewed as [N, C, S]; the set of (n, group) is the contiguous block of its channels.

std::vector<Tensor> group_norm_backward(const Saved& s, const Tensor& grad, int64_t G) {
  const Tensor g = grad.contiguous();
  const int64_t N = s.x.size(0), C = s.x.size(1), group_channels = C / G;
  const int64_t S = s.x.numel() / std::max<int64_t>(1, N * C), M = group_channels * S;
  const double inv_m = 1.0 / static_cast<double>(M);
  Tensor dx = empty_if(s.need_x, s.x.shape(), s.x.options());
  Tensor dw = empty_if(s.need_weight, {C}, s.x.options());
  Tensor db = empty_if(s.need_bias, {C}, s.x.options());
  // Per (n, c): the sums of g and g (x - mu) over its S elements. Weighted by w they give the group
  // sums of the dx formula; summed over n they give dw and db.
  std::vector<GradSums> channel_sums(N * C);
  dispatch_floating(s.x.dtype(), "group_norm backward", [&](auto tag) {
    using T = decltype(tag);
    const T* xp = s.x.data<T>();
    const T* gp = g.data<T>();
    const T* wp = data_or_null<T>(s.weight);
    T* dxp = s.need_x ? dx.data<T>() : nullptr;
#pragma omp parallel for schedule(static) if (N * G > 1 && N * C * S >= cpu::kParallelGrain)
    for (int64_t ng = 0; ng < N * G; ++ng) {
      const int64_t n = ng / G, first = ng * M, first_channel = (ng % G) * group_channels;
      const double mu = s.mean[ng], is = s.invstd[ng];
      GradSums group;  // of g_hat = g w over the group
      for (int64_t j = 0; j < group_channels; ++j) {
        const int64_t c = first_channel + j;
        const GradSums run = unweighted_grad_sums<T>(S, xp + first + j * S, mu, gp + first + j * S);
        channel_sums[n * C + c] = run;
        group.g += value_or_one(wp, c) * run.g;
        group.g_x_mu += value_or_one(wp, c) * run.g_x_mu;
      }
      if (!dxp) continue;
      const T c_x = static_cast<T>(-is * is * is * group.g_x_mu * inv_m);
      const T c_0 = static_cast<T>(-is * group.g * inv_m);
      for (int64_t j = 0; j < group_channels; ++j) {
        const int64_t base = first + j * S;
        const T a = static_cast<T>(is * value_or_one(wp, first_channel + j));
        grad_x_run<T>(gp + base, xp + base, dxp + base, S, static_cast<T>(mu), a, c_x, c_0);
      }
    }
    for (int64_t c = 0; c < C; ++c) {
      double total_g = 0.0, total_g_xhat = 0.0;
      for (int64_t n = 0; n < N; ++n) {
        total_g += channel_sums[n * C + c].g;
        total_g_xhat += channel_sums[n * C + c].g_x_mu * s.invstd[n * G + c / group_channels];
      }
      if (s.need_weight) dw.data<T>()[c] = static_cast<T>(total_g_xhat);
      if (s.need_bias) db.data<T>()[c] = static_cast<T>(total_g);
    }
  });
  return {dx, dw, db};
}

// ---- layer_norm: x viewed as [R, D]; each row is a set.

std::vector<Tensor> layer_norm_backward(const Saved& s, const Tensor& grad, const Shape& normalized_shape) {
  const Tensor g = grad.contiguous();
  const int64_t D = shape_numel(normalized_shape), R = s.x.numel() / D;
  Tensor dx = empty_if(s.need_x, s.x.shape(), s.x.options());
  Tensor dw = empty_if(s.need_weight, normalized_shape, s.x.options());
  Tensor db = empty_if(s.need_bias, normalized_shape, s.x.options());
  const double inv_d = 1.0 / static_cast<double>(D);
  // Rows are processed in at most 64 blocks; each block sums its rows' contributions to dw and db
  // into its own partial row, and the partials are added in block order afterwards.
  const int64_t blocks = std::min<int64_t>(R, 64);
  const int64_t rows_per_block = blocks > 0 ? (R + blocks - 1) / blocks : 0;
  const bool need_partials = s.need_weight || s.need_bias;
  std::vector<double> partial_dw(need_partials ? blocks * D : 0), partial_db(need_partials ? blocks * D : 0);
  dispatch_floating(s.x.dtype(), "layer_norm backward", [&](auto tag) {
    using T = decltype(tag);
    const T* xp = s.x.data<T>();
    const T* gp = g.data<T>();
    const T* wp = data_or_null<T>(s.weight);
    T* dxp = s.need_x ? dx.data<T>() : nullptr;
#pragma omp parallel for schedule(static) if (blocks > 1 && R * D >= cpu::kParallelGrain)
    for (int64_t block = 0; block < blocks; ++block) {
      double* pdw = need_partials ? partial_dw.data() + block * D : nullptr;
      double* pdb = need_partials ? partial_db.data() + block * D : nullptr;
      const int64_t row_end = std::min(R, (block + 1) * rows_per_block);
      for (int64_t r = block * rows_per_block; r < row_end; ++r) {
        const T* xr = xp + r * D;
        const T* gr = gp + r * D;
        const double mu = s.mean[r], is = s.invstd[r];
        if (need_partials) {
          for (int64_t j = 0; j < D; ++j) {
            const double gj = static_cast<double>(gr[j]);
            pdw[j] += gj * (static_cast<double>(xr[j]) - mu) * is;
            pdb[j] += gj;
          }
        }
        if (!dxp) continue;
        const GradSums sums =
            wp ? grad_sums(D, xr, mu, [gr, wp](int64_t j) { return static_cast<double>(gr[j]) * wp[j]; })
               : unweighted_grad_sums<T>(D, xr, mu, gr);
        const T c_x = static_cast<T>(-is * is * is * sums.g_x_mu * inv_d);
        const T c_0 = static_cast<T>(-is * sums.g * inv_d);
        const T is_t = static_cast<T>(is), mu_t = static_cast<T>(mu);
        T* dxr = dxp + r * D;
        if (wp) {
          for (int64_t j = 0; j < D; ++j)
            dxr[j] = is_t * wp[j] * gr[j] + c_x * (xr[j] - mu_t) + c_0;
        } else {
          grad_x_run<T>(gr, xr, dxr, D, mu_t, is_t, c_x, c_0);
        }
      }
    }
    for (int64_t j = 0; j < D && need_partials; ++j) {
      double total_w = 0.0, total_b = 0.0;
      for (int64_t block = 0; block < blocks; ++block) {
        total_w += partial_dw[block * D + j];
        total_b += partial_db[block * D + j];
      }
      if (s.need_weight) dw.data<T>()[j] = static_cast<T>(total_w);
      if (s.need_bias) db.data<T>()[j] = static_cast<T>(total_b);
    }
  });
  return {dx, dw, db};
}

// ---- the CUDA backend

// What a CUDA backward needs: the input, the weight, the statistics on the device ([2, sets]: means and
// inverse standard deviations) and which of (x, weight, bias) want a gradient.
struct SavedOnDevice {
  Tensor x, weight, stats;
  bool need_x, need_weight, need_bias;
};

SavedOnDevice saved_on_device(const Tensor& xc, const Tensor& w, const Tensor& stats, const Tensor& x,
                              const Tensor& weight, const Tensor& bias) {
  return {xc,
          w,
          stats,
          x.requires_grad(),
          weight.defined() && weight.requires_grad(),
          bias.defined() && bias.requires_grad()};
}

// The gradients a CUDA backward writes: each allocated only when wanted.
struct DeviceGrads {
  Tensor dx, dw, db;
  DeviceGrads(const SavedOnDevice& s, const Shape& param_shape)
      : dx(empty_if(s.need_x, s.x.shape(), s.x.options())),
        dw(empty_if(s.need_weight, param_shape, s.x.options())),
        db(empty_if(s.need_bias, param_shape, s.x.options())) {}
  std::vector<Tensor> list() const { return {dx, dw, db}; }
};

Tensor batch_norm_cuda(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& running_mean,
                       const Tensor& running_var, bool training, double momentum, double eps) {
  const int64_t C = x.size(1);
  const Tensor xc = x.detach().contiguous(), w = plain(weight), b = plain(bias);
  Tensor y = empty(x.shape(), x.options());
  Tensor stats = empty({2, C}, {DType::f64, x.device()});
  cuda_ops::batch_norm_forward("batch_norm", xc, w, b, running_mean, running_var, training, momentum, eps, y,
                               stats);
  autograd::record(y, "batch_norm", {x, weight, bias},
                   [saved = saved_on_device(xc, w, stats, x, weight, bias), training, C](const Tensor& g) {
                     DeviceGrads grads(saved, {C});
                     cuda_ops::batch_norm_backward("batch_norm backward", saved.x, saved.weight, saved.stats,
                                                   g.contiguous(), training, grads.dx, grads.dw, grads.db);
                     return grads.list();
                   });
  return y;
}

Tensor group_norm_cuda(const Tensor& x, int64_t G, const Tensor& weight, const Tensor& bias, double eps) {
  const int64_t C = x.size(1);
  const Tensor xc = x.detach().contiguous(), w = plain(weight), b = plain(bias);
  Tensor y = empty(x.shape(), x.options());
  Tensor stats = empty({2, x.size(0) * G}, {DType::f64, x.device()});
  cuda_ops::group_norm_forward("group_norm", xc, G, w, b, eps, y, stats);
  autograd::record(y, "group_norm", {x, weight, bias},
                   [saved = saved_on_device(xc, w, stats, x, weight, bias), G, C](const Tensor& g) {
                     DeviceGrads grads(saved, {C});
                     cuda_ops::group_norm_backward("group_norm backward", saved.x, G, saved.weight,
                                                   saved.stats, g.contiguous(), grads.dx, grads.dw, grads.db);
                     return grads.list();
                   });
  return y;
}

Tensor layer_norm_cuda(const Tensor& x, const Shape& normalized_shape, const Tensor& weight,
                       const Tensor& bias, double eps) {
  const int64_t D = shape_numel(normalized_shape);
  const Tensor xc = x.detach().contiguous(), w = plain(weight), b = plain(bias);
  Tensor y = empty(x.shape(), x.options());
  Tensor stats = empty({2, x.numel() / D}, {DType::f64, x.device()});
  cuda_ops::layer_norm_forward("layer_norm", xc, D, w, b, eps, y, stats);
  autograd::record(
      y, "layer_norm", {x, weight, bias},
      [saved = saved_on_device(xc, w, stats, x, weight, bias), D, normalized_shape](const Tensor& g) {
        DeviceGrads grads(saved, normalized_shape);
        cuda_ops::layer_norm_backward("layer_norm backward", saved.x, D, saved.weight, saved.stats,
                                      g.contiguous(), grads.dx, grads.dw, grads.db);
        return grads.list();
      });
  return y;
}

}  // namespace

Tensor batch_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& running_mean,
                  const Tensor& running_var, bool training, double momentum, double eps) {
  const char* op = "batch_norm";
  const Device device = op_device(op, {{"x", x},
                                       {"weight", weight},
                                       {"bias", bias},
                                       {"running_mean", running_mean},
                                       {"running_var", running_var}});
  if (x.dim() < 2)
    throw std::invalid_argument("batch_norm: x must be [N, C, *], got " + shape_str(x.shape()));
  const int64_t N = x.size(0), C = x.size(1), S = spatial_size(x), M = N * S;
  check_param_shape(op, "weight", weight, {C}, x);
  check_param_shape(op, "bias", bias, {C}, x);
  check_param_shape(op, "running_mean", running_mean, {C}, x);
  check_param_shape(op, "running_var", running_var, {C}, x);
  if (running_mean.defined() != running_var.defined())
    throw std::invalid_argument("batch_norm: give both running_mean and running_var, or neither");
  if (!training && !running_mean.defined())
    throw std::invalid_argument(
        "batch_norm: eval mode (training = false) needs running_mean and running_var");
  if (training && M <= 1)
    throw std::invalid_argument("batch_norm: training needs more than one value per channel, got x " +
                                shape_str(x.shape()));
  if (running_mean.defined() && (running_mean.requires_grad() || running_var.requires_grad()))
    throw std::invalid_argument("batch_norm: running statistics are buffers and must not require grad");
  if (device.is_cuda())
    return batch_norm_cuda(x, weight, bias, running_mean, running_var, training, momentum, eps);

  const Tensor xc = x.detach().contiguous(), w = plain(weight), b = plain(bias);
  Tensor y = empty(x.shape(), x.options());
  std::vector<double> mean(C), invstd(C), var(C);
  dispatch_floating(x.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
    const T* xp = xc.data<T>();
    T* yp = y.data<T>();
    const T* wp = data_or_null<T>(w);
    const T* bp = data_or_null<T>(b);
    if (!training) {
      const T* rm = running_mean.data<T>();
      const T* rv = running_var.data<T>();
      for (int64_t c = 0; c < C; ++c) {
        mean[c] = rm[c * running_mean.stride(0)];
        invstd[c] = inverse_std(rv[c * running_var.stride(0)], eps);
      }
    }
#pragma omp parallel for schedule(static) if (C > 1 && N * C * S >= cpu::kParallelGrain)
    for (int64_t c = 0; c < C; ++c) {
      if (training) {
        const Moments m = set_moments(xp + c * S, N, S, C * S);
        mean[c] = m.mean;
        var[c] = m.var;
        invstd[c] = inverse_std(m.var, eps);
      }
      const T mu = static_cast<T>(mean[c]), scale = static_cast<T>(invstd[c] * value_or_one(wp, c));
      const T shift = bp ? bp[c] : T(0);
      for (int64_t n = 0; n < N; ++n)
        normalize_run<T>(xp + (n * C + c) * S, yp + (n * C + c) * S, S, mu, scale, shift);
    }
    if (training && running_mean.defined()) {
      T* rm = running_mean.data<T>();
      T* rv = running_var.data<T>();
      const double unbias = static_cast<double>(M) / static_cast<double>(M - 1);
      for (int64_t c = 0; c < C; ++c) {
        T& m = rm[c * running_mean.stride(0)];
        T& v = rv[c * running_var.stride(0)];
        m = static_cast<T>((1.0 - momentum) * m + momentum * mean[c]);
        v = static_cast<T>((1.0 - momentum) * v + momentum * var[c] * unbias);
      }
    }
  });
  autograd::record(y, op, {x, weight, bias},
                   [saved = make_saved(xc, w, x, weight, bias, std::move(mean), std::move(invstd)),
                    training](const Tensor& g) { return batch_norm_backward(saved, g, training); });
  return y;
}

Tensor group_norm(const Tensor& x, int64_t num_groups, const Tensor& weight, const Tensor& bias, double eps) {
  const char* op = "group_norm";
  const Device device = op_device(op, {{"x", x}, {"weight", weight}, {"bias", bias}});
  if (x.dim() < 2)
    throw std::invalid_argument("group_norm: x must be [N, C, *], got " + shape_str(x.shape()));
  const int64_t N = x.size(0), C = x.size(1), S = spatial_size(x), G = num_groups;
  if (G <= 0 || C % G != 0)
    throw std::invalid_argument("group_norm: num_groups " + std::to_string(G) +
                                " must be positive and divide the " + std::to_string(C) + " channels of x " +
                                shape_str(x.shape()));
  check_param_shape(op, "weight", weight, {C}, x);
  check_param_shape(op, "bias", bias, {C}, x);
  const int64_t group_channels = C / G, M = group_channels * S;
  if (M == 0) throw std::invalid_argument("group_norm: empty groups in x " + shape_str(x.shape()));
  if (device.is_cuda()) return group_norm_cuda(x, G, weight, bias, eps);

  const Tensor xc = x.detach().contiguous(), w = plain(weight), b = plain(bias);
  Tensor y = empty(x.shape(), x.options());
  std::vector<double> mean(N * G), invstd(N * G);
  dispatch_floating(x.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
    const T* xp = xc.data<T>();
    T* yp = y.data<T>();
    const T* wp = data_or_null<T>(w);
    const T* bp = data_or_null<T>(b);
#pragma omp parallel for schedule(static) if (N * G > 1 && N * C * S >= cpu::kParallelGrain)
    for (int64_t ng = 0; ng < N * G; ++ng) {
      const int64_t first = ng * M;  // (n * C + group * C/G) * S
      const Moments m = set_moments(xp + first, 1, M, 0);
      mean[ng] = m.mean;
      invstd[ng] = inverse_std(m.var, eps);
      for (int64_t j = 0; j < group_channels; ++j) {
        const int64_t c = (ng % G) * group_channels + j;
        const T scale = static_cast<T>(invstd[ng] * value_or_one(wp, c));
        normalize_run<T>(xp + first + j * S, yp + first + j * S, S, static_cast<T>(m.mean), scale,
                         bp ? bp[c] : T(0));
      }
    }
  });
  autograd::record(y, op, {x, weight, bias},
                   [saved = make_saved(xc, w, x, weight, bias, std::move(mean), std::move(invstd)),
                    G](const Tensor& g) { return group_norm_backward(saved, g, G); });
  return y;
}

Tensor layer_norm(const Tensor& x, const Shape& normalized_shape, const Tensor& weight, const Tensor& bias,
                  double eps) {
  const char* op = "layer_norm";
  const Device device = op_device(op, {{"x", x}, {"weight", weight}, {"bias", bias}});
  const int64_t k = static_cast<int64_t>(normalized_shape.size());
  if (k == 0 || k > x.dim() ||
      !std::equal(normalized_shape.begin(), normalized_shape.end(), x.shape().end() - k))
    throw std::invalid_argument("layer_norm: normalized_shape " + shape_str(normalized_shape) +
                                " must be a non-empty suffix of x's shape " + shape_str(x.shape()));
  check_param_shape(op, "weight", weight, normalized_shape, x);
  check_param_shape(op, "bias", bias, normalized_shape, x);
  const int64_t D = shape_numel(normalized_shape);
  if (D == 0)
    throw std::invalid_argument("layer_norm: empty normalized_shape " + shape_str(normalized_shape));
  if (device.is_cuda()) return layer_norm_cuda(x, normalized_shape, weight, bias, eps);
  const int64_t R = x.numel() / D;

  const Tensor xc = x.detach().contiguous(), w = plain(weight), b = plain(bias);
  Tensor y = empty(x.shape(), x.options());
  std::vector<double> mean(R), invstd(R);
  dispatch_floating(x.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
    const T* xp = xc.data<T>();
    T* yp = y.data<T>();
    const T* wp = data_or_null<T>(w);
    const T* bp = data_or_null<T>(b);
#pragma omp parallel for schedule(static) if (R > 1 && R * D >= cpu::kParallelGrain)
    for (int64_t r = 0; r < R; ++r) {
      const T* src = xp + r * D;
      T* dst = yp + r * D;
      const Moments m = set_moments(src, 1, D, 0);
      mean[r] = m.mean;
      invstd[r] = inverse_std(m.var, eps);
      const T mu = static_cast<T>(m.mean), is = static_cast<T>(invstd[r]);
      if (wp && bp) {
        for (int64_t j = 0; j < D; ++j)
          dst[j] = (src[j] - mu) * is * wp[j] + bp[j];
      } else if (wp) {
        for (int64_t j = 0; j < D; ++j)
          dst[j] = (src[j] - mu) * is * wp[j];
      } else if (bp) {
        for (int64_t j = 0; j < D; ++j)
          dst[j] = (src[j] - mu) * is + bp[j];
      } else {
        normalize_run<T>(src, dst, D, mu, is, T(0));
      }
    }
  });
  autograd::record(
      y, op, {x, weight, bias},
      [saved = make_saved(xc, w, x, weight, bias, std::move(mean), std::move(invstd)),
       normalized_shape](const Tensor& g) { return layer_norm_backward(saved, g, normalized_shape); });
  return y;
}

}  // namespace icd
