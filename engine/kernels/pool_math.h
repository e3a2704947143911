// The window arithmetic of max_pool2d, avg_pool2d and adaptive_avg_pool2d (engine/ops/pool.cpp states the
// math) as ICD_HD bodies. The CUDA kernels (engine/cuda/pool.cu) run one output element (forward) or one
// input element (backward) per thread with them; tests/test_kernel_bodies.cpp runs them on the CPU.
//
// The backward passes are gathers, not scatters: input element (h, w) sums the gradients of the outputs
// whose windows read it, visiting them in row-major output order, which is the order in which the CPU's
// scatter adds them to that element. So no atomics are needed, the result does not depend on thread
// scheduling, and it is the CPU's bit for bit (the additions are the same, in the same order).
//
// Layout: x is [planes, in_h, in_w] and y is [planes, out_h, out_w], both contiguous; element indices
// are row-major over those shapes.
#pragma once
#include <cmath>
#include <cstdint>

#include "engine/hd.h"

namespace icd::kernels {

ICD_HD int64_t floor_div_int(int64_t a, int64_t b) {
  return a / b - ((a % b != 0) && ((a < 0) != (b < 0)));
}
ICD_HD int64_t ceil_div_int(int64_t a, int64_t b) {
  return -floor_div_int(-a, b);
}

// The input positions output i reads along one axis: begin, begin + step, ... below end. `padded` is the
// window's length counting padded positions but clipped to the input plus its padding (avg_pool2d's
// count_include_pad divisor, as torch counts it).
struct WindowSpan {
  int64_t begin = 0, end = 0, step = 1, padded = 0;
  ICD_HD bool contains(int64_t h) const { return h >= begin && h < end && (h - begin) % step == 0; }
  ICD_HD int64_t taps() const { return end > begin ? (end - begin + step - 1) / step : 0; }
};

// One axis of a pooling: the windows of a strided, padded, dilated kernel, or (adaptive) the windows
// [floor(i in / out), ceil((i + 1) in / out)) of adaptive_avg_pool2d.
struct WindowAxis {
  int64_t in = 0, out = 0;
  int64_t kernel = 1, stride = 1, pad = 0, dilation = 1;
  bool adaptive = false;

  ICD_HD WindowSpan span(int64_t i) const {
    WindowSpan s;
    if (adaptive) {
      s.begin = (i * in) / out;
      s.end = ((i + 1) * in + out - 1) / out;
      s.padded = s.end - s.begin;
      return s;
    }
    const int64_t start = i * stride - pad;  // position of tap 0
    const int64_t first_tap = start < 0 ? ceil_div_int(-start, dilation) : 0;
    const int64_t taps_before_end = ceil_div_int(in - start, dilation);
    const int64_t end_tap = kernel < taps_before_end ? kernel : taps_before_end;
    const int64_t last_plus_one = start + (end_tap - 1) * dilation + 1;
    s.step = dilation;
    s.begin = start + first_tap * dilation;
    s.end = last_plus_one > s.begin ? last_plus_one : s.begin;
    s.padded = (start + kernel < in + pad ? start + kernel : in + pad) - start;
    return s;
  }

  // The outputs [first, last] whose windows can contain input position h. For dilated windows this is a
  // superset (a window may step over h): callers test WindowSpan::contains or, for max pooling, the
  // saved argmax.
  ICD_HD void outputs_reading(int64_t h, int64_t& first, int64_t& last) const {
    if (adaptive) {
      // floor(i in / out) <= h  <=>  i < (h + 1) out / in;   ceil((i + 1) in / out) > h  <=>  i >= floor(h
      // out / in)
      first = (h * out) / in;
      last = ((h + 1) * out + in - 1) / in - 1;
    } else {
      // i stride - pad <= h <= i stride - pad + (kernel - 1) dilation
      first = ceil_div_int(h + pad - (kernel - 1) * dilation, stride);
      last = floor_div_int(h + pad, stride);
    }
    if (first < 0) first = 0;
    if (last > out - 1) last = out - 1;
  }
};

struct PoolGeometry {
  int64_t planes = 0;
  WindowAxis rows, cols;
  bool count_padding = false;  // avg_pool2d's count_include_pad (false for adaptive windows)

  ICD_HD int64_t in_plane() const { return rows.in * cols.in; }
  ICD_HD int64_t out_plane() const { return rows.out * cols.out; }
  ICD_HD int64_t out_numel() const { return planes * out_plane(); }
  ICD_HD int64_t in_numel() const { return planes * in_plane(); }
};

// ---- max_pool2d

// Output o: the window's maximum, NaN if the window holds one (torch propagates NaN). When argmax is not
// null, also the plane offset (h in_w + w) torch's rule `v > best || isnan(v)`, in tap order, picks: the
// first tap equal to the maximum or, in a window with NaN, the last NaN; -1 for a window that reads
// nothing (then y is -inf).
template <class T>
ICD_HD void max_pool_element(const T* x, const PoolGeometry& g, int64_t o, T* y, int64_t* argmax) {
  const int64_t in_w = g.cols.in;
  const int64_t ow = o % g.cols.out, oh = (o / g.cols.out) % g.rows.out, p = o / g.out_plane();
  const T* in = x + p * g.in_plane();
  const WindowSpan r = g.rows.span(oh), c = g.cols.span(ow);
  T best = -T(INFINITY);
  bool nan_seen = false;
  for (int64_t h = r.begin; h < r.end; h += r.step)
    for (int64_t w = c.begin; w < c.end; w += c.step) {
      const T v = in[h * in_w + w];
      best = v > best ? v : best;
      nan_seen = nan_seen || v != v;
    }
  y[o] = nan_seen ? T(NAN) : best;
  if (!argmax) return;
  int64_t chosen = r.end > r.begin && c.end > c.begin ? r.begin * in_w + c.begin : -1;
  bool found = false;
  for (int64_t h = r.begin; h < r.end && !found; h += r.step)
    for (int64_t w = c.begin; w < c.end; w += c.step) {
      const T v = in[h * in_w + w];
      if (nan_seen ? v != v : v == best) {
        chosen = h * in_w + w;
        if (!nan_seen) {
          found = true;
          break;
        }
      }
    }
  argmax[o] = chosen;
}

// Input element i: the sum of the output gradients whose argmax is i's position in its plane.
template <class T>
ICD_HD T max_pool_grad_element(const T* grad_out, const int64_t* argmax, const PoolGeometry& g, int64_t i) {
  const int64_t in_w = g.cols.in, out_w = g.cols.out;
  const int64_t w = i % in_w, h = (i / in_w) % g.rows.in, p = i / g.in_plane();
  const int64_t target = h * in_w + w;
  const T* gp = grad_out + p * g.out_plane();
  const int64_t* at = argmax + p * g.out_plane();
  int64_t oh_first, oh_last, ow_first, ow_last;
  g.rows.outputs_reading(h, oh_first, oh_last);
  g.cols.outputs_reading(w, ow_first, ow_last);
  T acc = T(0);
  for (int64_t oh = oh_first; oh <= oh_last; ++oh)
    for (int64_t ow = ow_first; ow <= ow_last; ++ow)
      if (at[oh * out_w + ow] == target) acc += gp[oh * out_w + ow];
  return acc;
}

// ---- avg_pool2d and adaptive_avg_pool2d (unit step)

ICD_HD int64_t window_divisor(const WindowSpan& r, const WindowSpan& c, bool count_padding) {
  return count_padding ? r.padded * c.padded : (r.end - r.begin) * (c.end - c.begin);
}

// Output o: the window's sum, accumulated in double in row-major order, over its divisor (0 for a window
// with none).
template <class T>
ICD_HD T avg_pool_element(const T* x, const PoolGeometry& g, int64_t o) {
  const int64_t in_w = g.cols.in;
  const int64_t ow = o % g.cols.out, oh = (o / g.cols.out) % g.rows.out, p = o / g.out_plane();
  const T* in = x + p * g.in_plane();
  const WindowSpan r = g.rows.span(oh), c = g.cols.span(ow);
  double sum = 0.0;
  for (int64_t h = r.begin; h < r.end; ++h)
    for (int64_t w = c.begin; w < c.end; ++w)
      sum += in[h * in_w + w];
  const int64_t divisor = window_divisor(r, c, g.count_padding);
  return divisor > 0 ? static_cast<T>(sum / static_cast<double>(divisor)) : T(0);
}

// Input element i: the sum over the windows that read it of (output gradient / window divisor).
template <class T>
ICD_HD T avg_pool_grad_element(const T* grad_out, const PoolGeometry& g, int64_t i) {
  const int64_t in_w = g.cols.in, out_w = g.cols.out;
  const int64_t w = i % in_w, h = (i / in_w) % g.rows.in, p = i / g.in_plane();
  const T* gp = grad_out + p * g.out_plane();
  int64_t oh_first, oh_last, ow_first, ow_last;
  g.rows.outputs_reading(h, oh_first, oh_last);
  g.cols.outputs_reading(w, ow_first, ow_last);
  T acc = T(0);
  for (int64_t oh = oh_first; oh <= oh_last; ++oh) {
    const WindowSpan r = g.rows.span(oh);
    if (!r.contains(h)) continue;
    for (int64_t ow = ow_first; ow <= ow_last; ++ow) {
      const WindowSpan c = g.cols.span(ow);
      if (!c.contains(w)) continue;
      const int64_t divisor = window_divisor(r, c, g.count_padding);
      if (divisor > 0) acc += gp[oh * out_w + ow] / static_cast<T>(divisor);
    }
  }
  return acc;
}

}  // namespace icd::kernels
