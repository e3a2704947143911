// Pooling.
//
// Each output element reads a window of its input plane. With stride s, padding p, dilation d, output
// row i reads input rows i s - p + t d for taps t = 0 .. k-1 (likewise for columns); taps that fall in
// the padding read -inf (max) or 0 (avg).
//
// max_pool2d: y = x[a], a the window's first position holding the maximum. y depends on x[a] alone,
//   with slope 1, so dL/dx[a] += dL/dy, nothing elsewhere. The forward saves a per output (as an i64
//   offset in the plane); overlapping windows may pick the same element, hence the +=.
// avg_pool2d: y = (1 / D) sum over the window of x, D the window size counted with the padding
//   (count_include_pad) or without. Every element in the window gets dL/dy / D.
// adaptive_avg_pool2d: an average over [floor(i H / out), ceil((i + 1) H / out)), same backward.
//
// On a CUDA device the same windows are computed per element by the ICD_HD bodies of
// engine/kernels/pool_math.h; the backward passes there are gathers (each input element sums the outputs
// that read it), which need no atomics and give the CPU's sums in the CPU's order.
//
// All kernels run on contiguous [planes, H, W] data (planes = N C), one plane per OpenMP iteration, so
// threads never write to the same gradient element. Window bounds depend only on the output position,
// so they are computed once per call, not per plane.
#include "engine/ops/pool.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <vector>

#include "engine/autograd.h"
#include "engine/cpu/strided.h"
#include "engine/cuda_ops.h"
#include "engine/dispatch.h"
#include "engine/factory.h"

namespace icd {
namespace {

// The input as a stack of planes, and the pooled size of each plane.
struct PlaneGeometry {
  int64_t planes = 0, in_h = 0, in_w = 0, out_h = 0, out_w = 0;
  int64_t in_plane() const { return in_h * in_w; }
  int64_t out_plane() const { return out_h * out_w; }
};

// The input positions one output row (or column) of a window reads, along one axis.
struct Span {
  int64_t begin = 0, end = 0;  // the taps inside the input: positions begin, begin + step, ... < end
  int64_t step = 1;            // the dilation
  int64_t padded = 0;          // the window length counting padded positions (avg's count_include_pad)
};

int64_t floor_div(int64_t a, int64_t b) {
  return a / b - ((a % b != 0) && ((a < 0) != (b < 0)));
}
int64_t ceil_div(int64_t a, int64_t b) {
  return -floor_div(-a, b);
}

std::string pair_str(Pool2dOptions::Pair p) {
  std::string s = "(";  // built with += : GCC 12 warns (-Wrestrict, falsely) on "(" + std::string
  s += std::to_string(p.h) + ", " + std::to_string(p.w) + ")";
  return s;
}

// Checks the rank and returns the input's planes; the output sizes are filled in by the caller.
PlaneGeometry plane_geometry(const Tensor& x, const char* op) {
  if (x.dim() != 3 && x.dim() != 4)
    throw std::invalid_argument(std::string(op) + ": x must be [N, C, H, W] or [C, H, W], got " +
                                shape_str(x.shape()));
  for (int64_t d = x.dim() - 3; d < x.dim(); ++d)
    if (x.size(d) == 0)
      throw std::invalid_argument(std::string(op) + ": x " + shape_str(x.shape()) +
                                  " has an empty C, H or W");
  PlaneGeometry g;
  g.in_h = x.size(-2);
  g.in_w = x.size(-1);
  g.planes = x.numel() / g.in_plane();
  return g;
}

Shape pooled_shape(const Tensor& x, const PlaneGeometry& g) {
  Shape shape = x.shape();
  shape[shape.size() - 2] = g.out_h;
  shape[shape.size() - 1] = g.out_w;
  return shape;
}

// torch's pooling_output_shape.
int64_t pooled_size(int64_t in, int64_t kernel, int64_t stride, int64_t pad, int64_t dilation,
                    bool ceil_mode) {
  int64_t out =
      floor_div(in + 2 * pad - dilation * (kernel - 1) - 1 + (ceil_mode ? stride - 1 : 0), stride) + 1;
  // In ceil mode the last window must still start inside the input or its left padding.
  if (ceil_mode && (out - 1) * stride >= in + pad) --out;
  return out;
}

// Validates the window options and returns them with the default stride filled in.
Pool2dOptions resolve_window(const Tensor& x, Pool2dOptions o, PlaneGeometry& g, const char* op) {
  if (o.stride.h == 0 && o.stride.w == 0) o.stride = o.kernel;
  const std::string what = std::string(op) + ": kernel " + pair_str(o.kernel) + ", stride " +
                           pair_str(o.stride) + ", padding " + pair_str(o.padding) + ", dilation " +
                           pair_str(o.dilation);
  if (o.kernel.h <= 0 || o.kernel.w <= 0 || o.stride.h <= 0 || o.stride.w <= 0 || o.dilation.h <= 0 ||
      o.dilation.w <= 0)
    throw std::invalid_argument(what + ": kernel, stride and dilation must be positive");
  if (o.padding.h < 0 || o.padding.w < 0 || o.padding.h > o.kernel.h / 2 || o.padding.w > o.kernel.w / 2)
    throw std::invalid_argument(what + ": padding must be between 0 and half the kernel size");
  g.out_h = pooled_size(g.in_h, o.kernel.h, o.stride.h, o.padding.h, o.dilation.h, o.ceil_mode);
  g.out_w = pooled_size(g.in_w, o.kernel.w, o.stride.w, o.padding.w, o.dilation.w, o.ceil_mode);
  if (g.out_h < 1 || g.out_w < 1)
    throw std::invalid_argument(what + ": the output of x " + shape_str(x.shape()) + " would be " +
                                std::to_string(g.out_h) + " x " + std::to_string(g.out_w) + ", too small");
  return o;
}

// The spans of all output positions along one axis for a strided, padded, dilated window.
std::vector<Span> window_spans(int64_t in, int64_t out, int64_t kernel, int64_t stride, int64_t pad,
                               int64_t dilation) {
  std::vector<Span> spans(out);
  for (int64_t i = 0; i < out; ++i) {
    const int64_t start = i * stride - pad;  // position of tap 0
    const int64_t first_tap = start < 0 ? ceil_div(-start, dilation) : 0;
    const int64_t end_tap = std::min(kernel, ceil_div(in - start, dilation));
    Span& s = spans[i];
    s.step = dilation;
    s.begin = start + first_tap * dilation;
    s.end = std::max(s.begin, start + (end_tap - 1) * dilation + 1);
    // avg_pool2d (dilation 1): the window clipped to the input plus padding, as torch counts it.
    s.padded = std::min(start + kernel, in + pad) - start;
  }
  return spans;
}

// Adaptive windows: [floor(i in / out), ceil((i + 1) in / out)).
std::vector<Span> adaptive_spans(int64_t in, int64_t out) {
  std::vector<Span> spans(out);
  for (int64_t i = 0; i < out; ++i) {
    spans[i].begin = (i * in) / out;
    spans[i].end = ((i + 1) * in + out - 1) / out;
    spans[i].padded = spans[i].end - spans[i].begin;
  }
  return spans;
}

int64_t span_count(const Span& s) {
  return s.end > s.begin ? (s.end - s.begin + s.step - 1) / s.step : 0;
}

// Runs plane(p) for every plane, in parallel when the job is big enough to pay for the threads.
template <class Body>
void for_each_plane(int64_t planes, int64_t work_per_plane, Body&& plane) {
#pragma omp parallel for schedule(static) if (planes > 1 && planes * work_per_plane >= cpu::kParallelGrain)
  for (int64_t p = 0; p < planes; ++p)
    plane(p);
}

// ---- max_pool2d

// Which tap of a window torch's rule (`v > best || isnan(v)`, in tap order) picks, given the window's
// maximum: the first tap equal to it or, in a window with NaN, the last NaN. A window of -inf values gives
// its first tap; a window outside the input gives -1.
struct TapRange {
  int64_t begin, end, step;
};

template <class T>
int64_t chosen_tap(const T* in, int64_t in_w, TapRange rows, TapRange cols, T maximum, bool nan_seen) {
  int64_t chosen = rows.end > rows.begin && cols.end > cols.begin ? rows.begin * in_w + cols.begin : -1;
  for (int64_t h = rows.begin; h < rows.end; h += rows.step)
    for (int64_t w = cols.begin; w < cols.end; w += cols.step) {
      const T v = in[h * in_w + w];
      if (nan_seen ? v != v : v == maximum) {
        chosen = h * in_w + w;
        if (!nan_seen) return chosen;
      }
    }
  return chosen;
}

// The maxima are computed branch-free (which tap wins is data dependent: a branch on it mispredicts
// often); argmax, when not null (a gradient will be needed), is found by a second scan of the window that
// stops at the first tap equal to the maximum. Torch propagates NaN: a window holding one gives NaN.
template <class T>
void max_pool_forward(const T* x, const PlaneGeometry& g, const std::vector<Span>& rows,
                      const std::vector<Span>& cols, T* y, int64_t* argmax) {
  // Everything the loop reads goes into locals first: stores through `at` (int64_t) could otherwise alias
  // the geometry's fields and force a reload of each on every tap.
  const int64_t in_w = g.in_w, out_h = g.out_h, out_w = g.out_w, in_plane = g.in_plane(),
                out_plane = g.out_plane();
  const Span* row_spans = rows.data();
  const Span* col_spans = cols.data();
  for_each_plane(g.planes, out_plane * span_count(rows[0]) * span_count(cols[0]), [=](int64_t p) {
    const T* in = x + p * in_plane;
    T* out = y + p * out_plane;
    int64_t* at = argmax ? argmax + p * out_plane : nullptr;
    for (int64_t oh = 0; oh < out_h; ++oh) {
      const int64_t h_begin = row_spans[oh].begin, h_end = row_spans[oh].end, h_step = row_spans[oh].step;
      for (int64_t ow = 0; ow < out_w; ++ow) {
        const int64_t w_begin = col_spans[ow].begin, w_end = col_spans[ow].end, w_step = col_spans[ow].step;
        // Pass 1: the maximum and whether the window holds a NaN, branch-free.
        T best = -std::numeric_limits<T>::infinity();
        bool nan_seen = false;
        for (int64_t h = h_begin; h < h_end; h += h_step) {
          const T* row = in + h * in_w;
          for (int64_t w = w_begin; w < w_end; w += w_step) {
            const T v = row[w];
            best = v > best ? v : best;
            nan_seen |= v != v;
          }
        }
        out[oh * out_w + ow] = nan_seen ? std::numeric_limits<T>::quiet_NaN() : best;
        if (!at) continue;
        at[oh * out_w + ow] =
            chosen_tap(in, in_w, {h_begin, h_end, h_step}, {w_begin, w_end, w_step}, best, nan_seen);
      }
    }
  });
}

Tensor max_pool_backward(const Tensor& grad_out, const Tensor& argmax, const PlaneGeometry& g,
                         const Shape& x_shape) {
  Tensor grad = zeros(x_shape, grad_out.options());
  const Tensor gc = grad_out.contiguous();
  dispatch_floating(grad.dtype(), "max_pool2d backward", [&](auto tag) {
    using T = decltype(tag);
    const T* src = gc.data<T>();
    const int64_t* at = argmax.data<int64_t>();
    T* dst = grad.data<T>();
    for_each_plane(g.planes, g.out_plane(), [&](int64_t p) {
      T* plane = dst + p * g.in_plane();
      for (int64_t o = p * g.out_plane(), end = o + g.out_plane(); o < end; ++o)
        if (at[o] >= 0) plane[at[o]] += src[o];
    });
  });
  return grad;
}

// ---- avg_pool2d and adaptive_avg_pool2d: window sums over spans with unit step

int64_t window_divisor(const Span& r, const Span& c, bool count_padding) {
  return count_padding ? r.padded * c.padded : (r.end - r.begin) * (c.end - c.begin);
}

template <class T>
void avg_pool_forward(const T* x, const PlaneGeometry& g, const std::vector<Span>& rows,
                      const std::vector<Span>& cols, bool count_padding, T* y) {
  const int64_t window = (rows[0].padded + 1) * (cols[0].padded + 1);
  for_each_plane(g.planes, g.out_plane() * window, [&](int64_t p) {
    const T* in = x + p * g.in_plane();
    T* out = y + p * g.out_plane();
    for (int64_t oh = 0; oh < g.out_h; ++oh) {
      const Span& r = rows[oh];
      for (int64_t ow = 0; ow < g.out_w; ++ow) {
        const Span& c = cols[ow];
        double sum = 0.0;
        for (int64_t h = r.begin; h < r.end; ++h)
          for (int64_t w = c.begin; w < c.end; ++w)
            sum += in[h * g.in_w + w];
        const int64_t divisor = window_divisor(r, c, count_padding);
        out[oh * g.out_w + ow] = divisor > 0 ? static_cast<T>(sum / static_cast<double>(divisor)) : T(0);
      }
    }
  });
}

Tensor avg_pool_backward(const Tensor& grad_out, const PlaneGeometry& g, const std::vector<Span>& rows,
                         const std::vector<Span>& cols, bool count_padding, const Shape& x_shape) {
  Tensor grad = zeros(x_shape, grad_out.options());
  const Tensor gc = grad_out.contiguous();
  dispatch_floating(grad.dtype(), "avg_pool2d backward", [&](auto tag) {
    using T = decltype(tag);
    const T* src = gc.data<T>();
    T* dst = grad.data<T>();
    const int64_t window = (rows[0].padded + 1) * (cols[0].padded + 1);
    for_each_plane(g.planes, g.out_plane() * window, [&](int64_t p) {
      const T* g_plane = src + p * g.out_plane();
      T* plane = dst + p * g.in_plane();
      for (int64_t oh = 0; oh < g.out_h; ++oh) {
        const Span& r = rows[oh];
        for (int64_t ow = 0; ow < g.out_w; ++ow) {
          const Span& c = cols[ow];
          const int64_t divisor = window_divisor(r, c, count_padding);
          if (divisor == 0) continue;
          const T share = g_plane[oh * g.out_w + ow] / static_cast<T>(divisor);
          for (int64_t h = r.begin; h < r.end; ++h)
            for (int64_t w = c.begin; w < c.end; ++w)
              plane[h * g.in_w + w] += share;
        }
      }
    });
  });
  return grad;
}

// The averaging op shared by avg_pool2d and adaptive_avg_pool2d, with its backward.
Tensor average_windows(const Tensor& x, const PlaneGeometry& g, std::vector<Span> rows,
                       std::vector<Span> cols, bool count_padding, const char* op) {
  const Tensor xc = x.detach().contiguous();
  Tensor y = empty(pooled_shape(x, g), x.options());
  dispatch_floating(x.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
    avg_pool_forward(xc.data<T>(), g, rows, cols, count_padding, y.data<T>());
  });
  autograd::record(y, op, {x},
                   [g, rows = std::move(rows), cols = std::move(cols), count_padding,
                    x_shape = x.shape()](const Tensor& grad_out) -> std::vector<Tensor> {
                     return {avg_pool_backward(grad_out, g, rows, cols, count_padding, x_shape)};
                   });
  return y;
}

// ---- the CUDA backend: the same windows, as the kernels' geometry

kernels::WindowAxis window_axis(int64_t in, int64_t out, int64_t kernel, int64_t stride, int64_t pad,
                                int64_t dilation) {
  return {in, out, kernel, stride, pad, dilation, false};
}

kernels::PoolGeometry pool_geometry(const PlaneGeometry& g, const Pool2dOptions& o) {
  return {g.planes, window_axis(g.in_h, g.out_h, o.kernel.h, o.stride.h, o.padding.h, o.dilation.h),
          window_axis(g.in_w, g.out_w, o.kernel.w, o.stride.w, o.padding.w, o.dilation.w),
          o.count_include_pad};
}

kernels::PoolGeometry adaptive_geometry(const PlaneGeometry& g) {
  kernels::PoolGeometry k;
  k.planes = g.planes;
  k.rows = {g.in_h, g.out_h, 1, 1, 0, 1, true};
  k.cols = {g.in_w, g.out_w, 1, 1, 0, 1, true};
  k.count_padding = false;
  return k;
}

Tensor max_pool2d_cuda(const Tensor& x, const kernels::PoolGeometry& kg, const Shape& out_shape) {
  const Tensor xc = x.detach().contiguous();
  Tensor y = empty(out_shape, x.options());
  const bool needs_grad = autograd::any_requires_grad({x});
  Tensor argmax = needs_grad ? empty(out_shape, {DType::i64, x.device()}) : Tensor();
  cuda_ops::max_pool2d("max_pool2d", kg, xc, y, needs_grad ? &argmax : nullptr);
  autograd::record(
      y, "max_pool2d", {x}, [argmax, kg, x_shape = x.shape()](const Tensor& grad_out) -> std::vector<Tensor> {
        Tensor grad = empty(x_shape, grad_out.options());
        cuda_ops::max_pool2d_backward("max_pool2d backward", kg, grad_out.contiguous(), argmax, grad);
        return {grad};
      });
  return y;
}

Tensor average_windows_cuda(const Tensor& x, const kernels::PoolGeometry& kg, const Shape& out_shape,
                            const char* op) {
  const Tensor xc = x.detach().contiguous();
  Tensor y = empty(out_shape, x.options());
  cuda_ops::avg_pool2d(op, kg, xc, y);
  autograd::record(y, op, {x}, [kg, op, x_shape = x.shape()](const Tensor& grad_out) -> std::vector<Tensor> {
    Tensor grad = empty(x_shape, grad_out.options());
    cuda_ops::avg_pool2d_backward(op, kg, grad_out.contiguous(), grad);
    return {grad};
  });
  return y;
}

}  // namespace

Tensor max_pool2d(const Tensor& x, const Pool2dOptions& options) {
  const Device device = op_device("max_pool2d", {{"x", x}});
  PlaneGeometry g = plane_geometry(x, "max_pool2d");
  const Pool2dOptions o = resolve_window(x, options, g, "max_pool2d");
  if (device.is_cuda()) return max_pool2d_cuda(x, pool_geometry(g, o), pooled_shape(x, g));
  const std::vector<Span> rows =
      window_spans(g.in_h, g.out_h, o.kernel.h, o.stride.h, o.padding.h, o.dilation.h);
  const std::vector<Span> cols =
      window_spans(g.in_w, g.out_w, o.kernel.w, o.stride.w, o.padding.w, o.dilation.w);
  const Tensor xc = x.detach().contiguous();
  const Shape out_shape = pooled_shape(x, g);
  Tensor y = empty(out_shape, x.options());
  // Where each maximum came from is needed only for the backward pass.
  const bool needs_grad = autograd::any_requires_grad({x});
  Tensor argmax = needs_grad ? empty(out_shape, {DType::i64, x.device()}) : Tensor();
  dispatch_floating(x.dtype(), "max_pool2d", [&](auto tag) {
    using T = decltype(tag);
    max_pool_forward(xc.data<T>(), g, rows, cols, y.data<T>(), needs_grad ? argmax.data<int64_t>() : nullptr);
  });
  autograd::record(y, "max_pool2d", {x},
                   [argmax, g, x_shape = x.shape()](const Tensor& grad_out) -> std::vector<Tensor> {
                     return {max_pool_backward(grad_out, argmax, g, x_shape)};
                   });
  return y;
}

Tensor avg_pool2d(const Tensor& x, const Pool2dOptions& options) {
  const Device device = op_device("avg_pool2d", {{"x", x}});
  if (options.dilation.h != 1 || options.dilation.w != 1)
    throw std::invalid_argument("avg_pool2d: dilation " + pair_str(options.dilation) +
                                " is not supported (only 1)");
  PlaneGeometry g = plane_geometry(x, "avg_pool2d");
  const Pool2dOptions o = resolve_window(x, options, g, "avg_pool2d");
  if (device.is_cuda()) return average_windows_cuda(x, pool_geometry(g, o), pooled_shape(x, g), "avg_pool2d");
  return average_windows(x, g, window_spans(g.in_h, g.out_h, o.kernel.h, o.stride.h, o.padding.h, 1),
                         window_spans(g.in_w, g.out_w, o.kernel.w, o.stride.w, o.padding.w, 1),
                         o.count_include_pad, "avg_pool2d");
}

Tensor adaptive_avg_pool2d(const Tensor& x, int64_t out_h, int64_t out_w) {
  const Device device = op_device("adaptive_avg_pool2d", {{"x", x}});
  PlaneGeometry g = plane_geometry(x, "adaptive_avg_pool2d");
  if (out_h < 1 || out_w < 1)
    throw std::invalid_argument("adaptive_avg_pool2d: output size " + std::to_string(out_h) + " x " +
                                std::to_string(out_w) + " must be positive");
  g.out_h = out_h;
  g.out_w = out_w;
  if (device.is_cuda())
    return average_windows_cuda(x, adaptive_geometry(g), pooled_shape(x, g), "adaptive_avg_pool2d");
  return average_windows(x, g, adaptive_spans(g.in_h, out_h), adaptive_spans(g.in_w, out_w), false,
                         "adaptive_avg_pool2d");
}

}  // namespace icd
