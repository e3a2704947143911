// The index and weight arithmetic of upsample_nearest2d and interpolate_bilinear (engine/ops/resize.cpp
// states the math and torch's source-coordinate conventions) as ICD_HD bodies. The CUDA kernels
// (engine/cuda/resize.cu) run one output element (forward) or one input element (backward) per thread
// with them; tests/test_kernel_bodies.cpp runs them on the CPU.
//
// The backward passes are gathers: input pixel (h, w) sums the output gradients that read it. The output
// rows reading input row h form one contiguous range (source rows never decrease along the output), found
// by binary search; within it the outputs are visited in row-major order, which is the order in which the
// CPU's scatter adds them to that pixel. So there are no atomics and the result is deterministic.
//
// Layout: x is [planes, in_h, in_w] and y is [planes, out_h, out_w], both contiguous.
#pragma once
#include <cmath>
#include <cstdint>

#include "engine/hd.h"

namespace icd::kernels {

struct ResizeGeometry {
  int64_t planes = 0, in_h = 0, in_w = 0, out_h = 0, out_w = 0;
  float ratio_h = 1, ratio_w = 1;  // nearest: in / out (or 1 / scale_factor), rounded to f32 as torch does
  bool align_corners = false;      // bilinear

  ICD_HD int64_t in_plane() const { return in_h * in_w; }
  ICD_HD int64_t out_plane() const { return out_h * out_w; }
};

// ---- nearest

// The input index output d copies along one axis: d when the sizes agree, d / 2 when doubling (exact, as
// in torch), otherwise min(floor(d ratio), in - 1) in f32. Never decreases as d grows.
ICD_HD int64_t nearest_source(int64_t d, int64_t in, int64_t out, float ratio) {
  if (out == in) return d;
  if (out == 2 * in) return d / 2;
  const int64_t s = static_cast<int64_t>(std::floor(static_cast<float>(d) * ratio));
  return s < in - 1 ? s : in - 1;
}

// The first output index whose source is at least h (out if none), by binary search.
ICD_HD int64_t first_nearest_output(int64_t h, int64_t in, int64_t out, float ratio) {
  int64_t lo = 0, hi = out;
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (nearest_source(mid, in, out, ratio) >= h)
      hi = mid;
    else
      lo = mid + 1;
  }
  return lo;
}

template <class T>
ICD_HD T nearest_element(const T* x, const ResizeGeometry& g, int64_t o) {
  const int64_t j = o % g.out_w, i = (o / g.out_w) % g.out_h, p = o / g.out_plane();
  return x[p * g.in_plane() + nearest_source(i, g.in_h, g.out_h, g.ratio_h) * g.in_w +
           nearest_source(j, g.in_w, g.out_w, g.ratio_w)];
}

// Input element e: the sum of the gradients of the outputs that copy it, in row-major output order.
template <class T>
ICD_HD T nearest_grad_element(const T* grad_out, const ResizeGeometry& g, int64_t e) {
  const int64_t w = e % g.in_w, h = (e / g.in_w) % g.in_h, p = e / g.in_plane();
  const T* gp = grad_out + p * g.out_plane();
  const int64_t i_begin = first_nearest_output(h, g.in_h, g.out_h, g.ratio_h);
  const int64_t i_end = first_nearest_output(h + 1, g.in_h, g.out_h, g.ratio_h);
  const int64_t j_begin = first_nearest_output(w, g.in_w, g.out_w, g.ratio_w);
  const int64_t j_end = first_nearest_output(w + 1, g.in_w, g.out_w, g.ratio_w);
  T acc = T(0);
  for (int64_t i = i_begin; i < i_end; ++i)
    for (int64_t j = j_begin; j < j_end; ++j)
      acc += gp[i * g.out_w + j];
  return acc;
}

// ---- bilinear

// Output d mixes inputs i0 and i1 (equal at the far edge) with weights w0 + w1 = 1.
template <class T>
struct BilinearTap {
  int64_t i0, i1;
  T w0, w1;
};

// The tap of output d along an axis of `in` inputs and `out` outputs, computed in T as torch's CPU kernel
// does (resize.cpp's linear_taps). i0 never decreases as d grows.
template <class T>
ICD_HD BilinearTap<T> bilinear_tap(int64_t d, int64_t in, int64_t out, bool align_corners) {
  const T scale = align_corners ? (out > 1 ? static_cast<T>(in - 1) / static_cast<T>(out - 1) : T(0))
                                : static_cast<T>(in) / static_cast<T>(out);
  T src = align_corners ? scale * static_cast<T>(d) : scale * (static_cast<T>(d) + T(0.5)) - T(0.5);
  if (src < T(0)) src = T(0);
  const int64_t truncated = static_cast<int64_t>(src);
  const int64_t i0 = truncated < in - 1 ? truncated : in - 1;
  const T distance = src - static_cast<T>(i0);
  const T frac = distance < T(1) ? distance : T(1);
  return {i0, i0 < in - 1 ? i0 + 1 : i0, T(1) - frac, frac};
}

// The first output index whose tap has i0 >= h (out if none), by binary search.
template <class T>
ICD_HD int64_t first_bilinear_output(int64_t h, int64_t in, int64_t out, bool align_corners) {
  int64_t lo = 0, hi = out;
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (bilinear_tap<T>(mid, in, out, align_corners).i0 >= h)
      hi = mid;
    else
      lo = mid + 1;
  }
  return lo;
}

template <class T>
ICD_HD T bilinear_element(const T* x, const ResizeGeometry& g, int64_t o) {
  const int64_t j = o % g.out_w, i = (o / g.out_w) % g.out_h, p = o / g.out_plane();
  const BilinearTap<T> r = bilinear_tap<T>(i, g.in_h, g.out_h, g.align_corners);
  const BilinearTap<T> c = bilinear_tap<T>(j, g.in_w, g.out_w, g.align_corners);
  const T* row0 = x + p * g.in_plane() + r.i0 * g.in_w;
  const T* row1 = x + p * g.in_plane() + r.i1 * g.in_w;
  return r.w0 * (c.w0 * row0[c.i0] + c.w1 * row0[c.i1]) + r.w1 * (c.w0 * row1[c.i0] + c.w1 * row1[c.i1]);
}

// Input element e: the transposed map. Output (i, j) sends c.wb (r.wa g) to each of its four taps
// (row a, column b), in the order (0, 0), (0, 1), (1, 0), (1, 1); the outputs reading row h are those with
// i0 in {h - 1, h}, likewise for columns.
template <class T>
ICD_HD T bilinear_grad_element(const T* grad_out, const ResizeGeometry& g, int64_t e) {
  const int64_t w = e % g.in_w, h = (e / g.in_w) % g.in_h, p = e / g.in_plane();
  const T* gp = grad_out + p * g.out_plane();
  const int64_t i_begin = first_bilinear_output<T>(h - 1, g.in_h, g.out_h, g.align_corners);
  const int64_t i_end = first_bilinear_output<T>(h + 1, g.in_h, g.out_h, g.align_corners);
  const int64_t j_begin = first_bilinear_output<T>(w - 1, g.in_w, g.out_w, g.align_corners);
  const int64_t j_end = first_bilinear_output<T>(w + 1, g.in_w, g.out_w, g.align_corners);
  T acc = T(0);
  for (int64_t i = i_begin; i < i_end; ++i) {
    const BilinearTap<T> r = bilinear_tap<T>(i, g.in_h, g.out_h, g.align_corners);
    if (r.i0 != h && r.i1 != h) continue;
    for (int64_t j = j_begin; j < j_end; ++j) {
      const BilinearTap<T> c = bilinear_tap<T>(j, g.in_w, g.out_w, g.align_corners);
      const T grad = gp[i * g.out_w + j];
      const T g0 = r.w0 * grad, g1 = r.w1 * grad;
      if (r.i0 == h) {
        if (c.i0 == w) acc += c.w0 * g0;
        if (c.i1 == w) acc += c.w1 * g0;
      }
      if (r.i1 == h) {
        if (c.i0 == w) acc += c.w0 * g1;
        if (c.i1 == w) acc += c.w1 * g1;
      }
    }
  }
  return acc;
}

}  // namespace icd::kernels
