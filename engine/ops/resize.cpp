// Resizing: nearest-neighbour and bilinear interpolation of the last two dims of x [N, C, H, W].
//
// Both are linear maps applied to each of the P = N * C planes on its own, separable into a row map A
// (out_h x H) and a column map B (out_w x W) that depend only on the sizes:
//   y[p, i, j] = sum_{h, w} A[i, h] B[j, w] x[p, h, w]
//   nearest:  A[i, h] = [h == src(i)]
//   bilinear: A[i, h0] = 1 - l, A[i, h1] += l   with h0 = floor(src(i)), h1 = min(h0 + 1, H - 1),
//             l = src(i) - h0 (B likewise along the columns), so an output mixes 4 input pixels.
// The backward is the transposed map, dx[p, h, w] = sum_{i, j} A[i, h] B[j, w] g[p, i, j]: each output
// gradient is scattered back onto the one (nearest) or four (bilinear) pixels it read, with the same
// weights, and *added*, since upsampling reads each input pixel from several outputs.
//
// Source coordinates follow torch, because they decide the exact values:
//   nearest:   src(d) = min(floor(d * s), in - 1) with s = in / out, or 1 / scale_factor when a scale is
//              given, rounded to f32 as torch does (for 26 -> 22 the f32 ratio puts d = 11 on pixel 12,
//              not 13). out == in gives src = d and out == 2 in gives src = d / 2, exactly, as in torch.
//   bilinear, align_corners = true:   src = d (in - 1) / (out - 1)   (0 when out == 1)
//   bilinear, align_corners = false:  src = max((d + 0.5) in / out - 0.5, 0)
//              The clamp matters when upsampling: outputs left of the first pixel's centre copy it.
//              At the far end h0 = in - 1 gives h1 = h0, so outputs beyond the last centre copy it too.
//   Bilinear coordinates are computed in the tensor's dtype, as torch's CPU kernel does.
// On a CUDA device the ICD_HD bodies of engine/kernels/resize_math.h compute the same indices and weights
// per element; their backward is a gather (each input pixel sums the outputs that read it), with no atomics.
// OpenMP runs over planes, which are independent in both directions (no two planes share a pixel).
#include "engine/ops/resize.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "engine/autograd.h"
#include "engine/cpu/strided.h"
#include "engine/cuda_ops.h"
#include "engine/dispatch.h"
#include "engine/factory.h"

namespace icd {
namespace {

void check_resize_args(const char* op, const Tensor& x, int64_t out_h, int64_t out_w) {
  if (x.dim() != 4)
    throw std::invalid_argument(std::string(op) + ": x must be [N, C, H, W], got " + shape_str(x.shape()));
  if (x.size(2) <= 0 || x.size(3) <= 0 || out_h <= 0 || out_w <= 0)
    throw std::invalid_argument(std::string(op) + ": input and output sizes must be positive, got x " +
                                shape_str(x.shape()) + " and output " + std::to_string(out_h) + " x " +
                                std::to_string(out_w));
}

// ---- nearest

// The input index each output index copies, along one dimension. `ratio` is in / out as an f32.
std::vector<int64_t> nearest_sources(int64_t in, int64_t out, float ratio) {
  std::vector<int64_t> src(out);
  for (int64_t d = 0; d < out; ++d) {
    if (out == in) {
      src[d] = d;
    } else if (out == 2 * in) {
      src[d] = d / 2;
    } else {
      src[d] = std::min(static_cast<int64_t>(std::floor(static_cast<float>(d) * ratio)), in - 1);
    }
  }
  return src;
}

// dx[p, src_h(i), src_w(j)] += g[p, i, j].
Tensor nearest_backward(const Tensor& grad, const Shape& x_shape, const std::vector<int64_t>& src_h,
                        const std::vector<int64_t>& src_w) {
  const Tensor g = grad.contiguous();
  Tensor dx = zeros(x_shape, g.options());
  const int64_t P = x_shape[0] * x_shape[1], H = x_shape[2], W = x_shape[3];
  const int64_t out_h = static_cast<int64_t>(src_h.size()), out_w = static_cast<int64_t>(src_w.size());
  dispatch_floating(g.dtype(), "upsample_nearest2d backward", [&](auto tag) {
    using T = decltype(tag);
    const T* gp = g.data<T>();
    T* dxp = dx.data<T>();
#pragma omp parallel for schedule(static) if (P > 1 && P * out_h * out_w >= cpu::kParallelGrain)
    for (int64_t p = 0; p < P; ++p) {
      for (int64_t i = 0; i < out_h; ++i) {
        const T* src = gp + (p * out_h + i) * out_w;
        T* dst = dxp + (p * H + src_h[i]) * W;
        for (int64_t j = 0; j < out_w; ++j)
          dst[src_w[j]] += src[j];
      }
    }
  });
  return dx;
}

Tensor nearest_forward(const Tensor& x, int64_t out_h, int64_t out_w, float ratio_h, float ratio_w) {
  const int64_t P = x.size(0) * x.size(1), H = x.size(2), W = x.size(3);
  std::vector<int64_t> src_h = nearest_sources(H, out_h, ratio_h), src_w = nearest_sources(W, out_w, ratio_w);
  const Tensor xc = x.detach().contiguous();
  Tensor y = empty({x.size(0), x.size(1), out_h, out_w}, x.options());
  dispatch_floating(x.dtype(), "upsample_nearest2d", [&](auto tag) {
    using T = decltype(tag);
    const T* xp = xc.data<T>();
    T* yp = y.data<T>();
#pragma omp parallel for schedule(static) if (P > 1 && P * out_h * out_w >= cpu::kParallelGrain)
    for (int64_t p = 0; p < P; ++p) {
      for (int64_t i = 0; i < out_h; ++i) {
        const T* src = xp + (p * H + src_h[i]) * W;
        T* dst = yp + (p * out_h + i) * out_w;
        for (int64_t j = 0; j < out_w; ++j)
          dst[j] = src[src_w[j]];
      }
    }
  });
  autograd::record(y, "upsample_nearest2d", {x},
                   [src_h = std::move(src_h), src_w = std::move(src_w), shape = x.shape()](const Tensor& g) {
                     return std::vector<Tensor>{nearest_backward(g, shape, src_h, src_w)};
                   });
  return y;
}

// ---- bilinear

template <class T>
struct LinearTap {
  int64_t i0, i1;  // the two input indices mixed (equal at the far edge)
  T w0, w1;        // their weights, summing to 1
};

template <class T>
std::vector<LinearTap<T>> linear_taps(int64_t in, int64_t out, bool align_corners) {
  const T scale = align_corners ? (out > 1 ? static_cast<T>(in - 1) / static_cast<T>(out - 1) : T(0))
                                : static_cast<T>(in) / static_cast<T>(out);
  std::vector<LinearTap<T>> taps(out);
  for (int64_t d = 0; d < out; ++d) {
    T src = align_corners ? scale * static_cast<T>(d) : scale * (static_cast<T>(d) + T(0.5)) - T(0.5);
    if (src < T(0)) src = T(0);
    const int64_t i0 = std::min(static_cast<int64_t>(src), in - 1);
    const T frac = std::min(src - static_cast<T>(i0), T(1));
    taps[d] = {i0, i0 < in - 1 ? i0 + 1 : i0, T(1) - frac, frac};
  }
  return taps;
}

// The transposed map: each g[p, i, j] goes back to the four pixels output (i, j) mixed, with the same
// weights.
Tensor bilinear_backward(const Tensor& grad, const Shape& x_shape, bool align_corners) {
  const Tensor g = grad.contiguous();
  Tensor dx = zeros(x_shape, g.options());
  const int64_t P = x_shape[0] * x_shape[1], H = x_shape[2], W = x_shape[3];
  const int64_t out_h = g.size(2), out_w = g.size(3);
  dispatch_floating(g.dtype(), "interpolate_bilinear backward", [&](auto tag) {
    using T = decltype(tag);
    const std::vector<LinearTap<T>> th = linear_taps<T>(H, out_h, align_corners);
    const std::vector<LinearTap<T>> tw = linear_taps<T>(W, out_w, align_corners);
    const T* gp = g.data<T>();
    T* dxp = dx.data<T>();
#pragma omp parallel for schedule(static) if (P > 1 && P * out_h * out_w >= cpu::kParallelGrain)
    for (int64_t p = 0; p < P; ++p) {
      for (int64_t i = 0; i < out_h; ++i) {
        const LinearTap<T>& r = th[i];
        T* row0 = dxp + (p * H + r.i0) * W;
        T* row1 = dxp + (p * H + r.i1) * W;
        const T* src = gp + (p * out_h + i) * out_w;
        for (int64_t j = 0; j < out_w; ++j) {
          const LinearTap<T>& c = tw[j];
          const T g0 = r.w0 * src[j], g1 = r.w1 * src[j];
          row0[c.i0] += c.w0 * g0;
          row0[c.i1] += c.w1 * g0;
          row1[c.i0] += c.w0 * g1;
          row1[c.i1] += c.w1 * g1;
        }
      }
    }
  });
  return dx;
}

// ---- the CUDA backend

kernels::ResizeGeometry resize_geometry(const Tensor& x, int64_t out_h, int64_t out_w) {
  kernels::ResizeGeometry g;
  g.planes = x.size(0) * x.size(1);
  g.in_h = x.size(2);
  g.in_w = x.size(3);
  g.out_h = out_h;
  g.out_w = out_w;
  return g;
}

// Runs `forward` (cuda_ops::upsample_nearest2d or interpolate_bilinear) and records `backward`.
template <class Forward, class Backward>
Tensor resize_cuda(const char* op, const Tensor& x, const kernels::ResizeGeometry& g, Forward forward,
                   Backward backward) {
  const Tensor xc = x.detach().contiguous();
  Tensor y = empty({x.size(0), x.size(1), g.out_h, g.out_w}, x.options());
  forward(op, g, xc, y);
  autograd::record(y, op, {x}, [op, g, backward, shape = x.shape()](const Tensor& grad) {
    Tensor dx = empty(shape, grad.options());
    backward(op, g, grad.contiguous(), dx);
    return std::vector<Tensor>{dx};
  });
  return y;
}

Tensor nearest_cuda(const Tensor& x, int64_t out_h, int64_t out_w, float ratio_h, float ratio_w) {
  kernels::ResizeGeometry g = resize_geometry(x, out_h, out_w);
  g.ratio_h = ratio_h;
  g.ratio_w = ratio_w;
  return resize_cuda("upsample_nearest2d", x, g, cuda_ops::upsample_nearest2d,
                     cuda_ops::upsample_nearest2d_backward);
}

}  // namespace

Tensor upsample_nearest2d(const Tensor& x, int64_t out_h, int64_t out_w) {
  const Device device = op_device("upsample_nearest2d", {{"x", x}});
  check_resize_args("upsample_nearest2d", x, out_h, out_w);
  const float ratio_h = static_cast<float>(x.size(2)) / static_cast<float>(out_h);
  const float ratio_w = static_cast<float>(x.size(3)) / static_cast<float>(out_w);
  if (device.is_cuda()) return nearest_cuda(x, out_h, out_w, ratio_h, ratio_w);
  return nearest_forward(x, out_h, out_w, ratio_h, ratio_w);
}

Tensor upsample_nearest2d(const Tensor& x, double scale_factor) {
  const Device device = op_device("upsample_nearest2d", {{"x", x}});
  if (!(scale_factor > 0) || !std::isfinite(scale_factor))
    throw std::invalid_argument("upsample_nearest2d: scale_factor must be positive and finite, got " +
                                std::to_string(scale_factor));
  if (x.dim() != 4)
    throw std::invalid_argument("upsample_nearest2d: x must be [N, C, H, W], got " + shape_str(x.shape()));
  const int64_t out_h = static_cast<int64_t>(std::floor(static_cast<double>(x.size(2)) * scale_factor));
  const int64_t out_w = static_cast<int64_t>(std::floor(static_cast<double>(x.size(3)) * scale_factor));
  check_resize_args("upsample_nearest2d", x, out_h, out_w);
  const float ratio = static_cast<float>(1.0 / scale_factor);
  if (device.is_cuda()) return nearest_cuda(x, out_h, out_w, ratio, ratio);
  return nearest_forward(x, out_h, out_w, ratio, ratio);
}

Tensor interpolate_bilinear(const Tensor& x, int64_t out_h, int64_t out_w, bool align_corners) {
  const char* op = "interpolate_bilinear";
  const Device device = op_device(op, {{"x", x}});
  check_resize_args(op, x, out_h, out_w);
  if (device.is_cuda()) {
    kernels::ResizeGeometry g = resize_geometry(x, out_h, out_w);
    g.align_corners = align_corners;
    return resize_cuda(op, x, g, cuda_ops::interpolate_bilinear, cuda_ops::interpolate_bilinear_backward);
  }
  const int64_t P = x.size(0) * x.size(1), H = x.size(2), W = x.size(3);
  const Tensor xc = x.detach().contiguous();
  Tensor y = empty({x.size(0), x.size(1), out_h, out_w}, x.options());
  dispatch_floating(x.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
    const std::vector<LinearTap<T>> th = linear_taps<T>(H, out_h, align_corners);
    const std::vector<LinearTap<T>> tw = linear_taps<T>(W, out_w, align_corners);
    const T* xp = xc.data<T>();
    T* yp = y.data<T>();
#pragma omp parallel for schedule(static) if (P > 1 && P * out_h * out_w >= cpu::kParallelGrain)
    for (int64_t p = 0; p < P; ++p) {
      for (int64_t i = 0; i < out_h; ++i) {
        const LinearTap<T>& r = th[i];
        const T* row0 = xp + (p * H + r.i0) * W;
        const T* row1 = xp + (p * H + r.i1) * W;
        T* dst = yp + (p * out_h + i) * out_w;
        for (int64_t j = 0; j < out_w; ++j) {
          const LinearTap<T>& c = tw[j];
          dst[j] =
              r.w0 * (c.w0 * row0[c.i0] + c.w1 * row0[c.i1]) + r.w1 * (c.w0 * row1[c.i0] + c.w1 * row1[c.i1]);
        }
      }
    }
  });
  autograd::record(y, op, {x}, [shape = x.shape(), align_corners](const Tensor& g) {
    return std::vector<Tensor>{bilinear_backward(g, shape, align_corners)};
  });
  return y;
}

}  // namespace icd
