// 2-D convolution as im2col + GEMM.
//
// Forward, for one image and one group (with G groups, each group does this on its own channel slice).
// Let K = C_in kH kW (one filter's length) and P = OH OW (the number of output positions).
//   col = im2col(x)          K x P      column p holds the K input values under the window of output p
//                                       (zeros where the window hangs over the padding); see im2col.h
//   Wm  = weight.view(C_out, K)         row o is output channel o's filter, flattened in the same order
//   y   = Wm * col + b       C_out x P  one GEMM computes every filter against every window at once;
//                                       y.view(C_out, OH, OW) is the output image
// A 1x1 convolution with stride 1 and no padding has col = x.view(C_in, H W): a plain GEMM, no im2col.
//
// Backward, given dY = dL/dy (C_out x P). y[o,p] = sum_k Wm[o,k] col[k,p] + b[o] is linear in each factor:
//   dL/dWm = dY * col^T      C_out x K   since dy[o,p]/dWm[o,k] = col[k,p]:
//                                        dWm[o,k] = sum_p dY[o,p] col[k,p], and the images of a batch
//                                        share Wm, so their terms add up
//   dL/dcol = Wm^T * dY      K x P       since dy[o,p]/dcol[k,p] = Wm[o,k]:
//                                        dcol[k,p] = sum_o Wm[o,k] dY[o,p]
//   dL/dx = col2im(dcol)                 im2col copies each x[c,ih,iw] into every column entry whose window
//                                        covers it; the gradient of a value copied several times is the sum
//                                        of the copies' gradients, and summing them back is col2im, the
//                                        transpose of im2col (overlapping windows accumulate)
//   dL/db = sum of dY over N, OH, OW     b[o] is added to every output of channel o
//
// Threads. Each pass splits into independent tasks, one thread per task, each task calling a
// single-threaded GEMM on its own slice; no two tasks write the same memory, so there are no locks and
// no reductions:
//   forward: tasks = (image, chunk of output positions). A task im2cols its chunk into its own buffer
//            and writes y[:, chunk] = Wm col[:, chunk].
//   dW:      tasks = blocks of the K rows of col (= columns of dWm). A task im2cols only its rows, for
//            every image, and accumulates its slice dWm[:, rows] += dY col[rows]^T.
//   dx:      tasks = blocks of input channels. A task computes dcol for its channels' rows,
//            Wm[:, rows]^T dY, and col2ims them into its own channel planes of dx.
// Chunks are sized so every thread gets equal work and each buffer stays within kColumnBudget. Small
// convolutions (below kParallelMultiplyAdds) run on one thread.
#include "engine/ops/conv.h"

#include <omp.h>

#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

#include "engine/autograd.h"
#include "engine/cpu/gemm.h"
#include "engine/cpu/im2col.h"
#include "engine/cpu/strided.h"
#include "engine/dispatch.h"
#include "engine/factory.h"
#include "engine/ops/reduce.h"

namespace icd {

int64_t conv2d_output_size(int64_t input, int64_t kernel, int64_t stride, int64_t padding, int64_t dilation) {
  const int64_t span = input + 2 * padding - dilation * (kernel - 1) - 1;  // last window start, if >= 0
  return span < 0 ? 0 : span / stride + 1;
}

namespace {

// Elements of one task's column buffer (4 MB in f32): big enough that a GEMM over it amortises packing
// the weights, small enough that large images do not need a column matrix of hundreds of MB.
constexpr int64_t kColumnBudget = int64_t{1} << 20;

struct ConvShape {
  int64_t batch = 0, in_channels = 0, out_channels = 0, groups = 1;
  int64_t in_per_group = 0, out_per_group = 0;
  int64_t kernel_area = 0;       // kH * kW
  int64_t patch = 0;             // K of one group: in_per_group * kH * kW, one filter's length
  int64_t in_plane = 0;          // H * W
  int64_t out_plane = 0;         // P = OH * OW
  cpu::Im2colGeometry geometry;  // one image, all input channels
  bool pointwise = false;        // 1x1, stride 1, no padding: col is the image itself
};

[[noreturn]] void fail(const std::string& message) {
  throw std::invalid_argument("conv2d: " + message);
}

std::string pair_str(int64_t h, int64_t w) {
  std::string text = "(";  // appended piece by piece: GCC 12 misreports "(" + to_string(...) (-Wrestrict)
  text += std::to_string(h);
  text += ", ";
  text += std::to_string(w);
  return text + ")";
}

ConvShape conv_shape(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dOptions& o) {
  if (o.stride_h < 1 || o.stride_w < 1) fail("stride must be >= 1, got " + pair_str(o.stride_h, o.stride_w));
  if (o.dilation_h < 1 || o.dilation_w < 1)
    fail("dilation must be >= 1, got " + pair_str(o.dilation_h, o.dilation_w));
  if (o.padding_h < 0 || o.padding_w < 0)
    fail("padding must be >= 0, got " + pair_str(o.padding_h, o.padding_w));
  if (o.groups < 1) fail("groups must be >= 1, got " + std::to_string(o.groups));
  if (x.dim() != 4) fail("x must be 4-D [N, C_in, H, W], got " + shape_str(x.shape()));
  if (weight.dim() != 4)
    fail("weight must be 4-D [C_out, C_in / groups, kH, kW], got " + shape_str(weight.shape()));
  ConvShape s;
  s.batch = x.size(0);
  s.in_channels = x.size(1);
  s.out_channels = weight.size(0);
  s.groups = o.groups;
  const int64_t kernel_h = weight.size(2), kernel_w = weight.size(3);
  if (kernel_h < 1 || kernel_w < 1) fail("weight has an empty kernel: " + shape_str(weight.shape()));
  const std::string groups_str = std::to_string(o.groups);
  if (s.in_channels % o.groups != 0)
    fail("groups = " + groups_str + " does not divide the " + std::to_string(s.in_channels) +
         " input channels of x " + shape_str(x.shape()));
  if (s.out_channels % o.groups != 0)
    fail("groups = " + groups_str + " does not divide the " + std::to_string(s.out_channels) +
         " output channels of weight " + shape_str(weight.shape()));
  s.in_per_group = s.in_channels / o.groups;
  s.out_per_group = s.out_channels / o.groups;
  if (weight.size(1) != s.in_per_group)
    fail("weight " + shape_str(weight.shape()) + " expects " + std::to_string(weight.size(1) * o.groups) +
         " input channels (C_in / groups = " + std::to_string(weight.size(1)) + " with groups = " +
         groups_str + ") but x " + shape_str(x.shape()) + " has " + std::to_string(s.in_channels));
  if (bias.defined() && (bias.dim() != 1 || bias.size(0) != s.out_channels))
    fail("bias must be [" + std::to_string(s.out_channels) + "] (one per output channel of weight " +
         shape_str(weight.shape()) + "), got " + shape_str(bias.shape()));
  const int64_t out_h = conv2d_output_size(x.size(2), kernel_h, o.stride_h, o.padding_h, o.dilation_h);
  const int64_t out_w = conv2d_output_size(x.size(3), kernel_w, o.stride_w, o.padding_w, o.dilation_w);
  if (out_h <= 0 || out_w <= 0)
    fail("the kernel " + pair_str(kernel_h, kernel_w) + " with dilation " +
         pair_str(o.dilation_h, o.dilation_w) + " is larger than the padded input: x " +
         shape_str(x.shape()) + " with padding " + pair_str(o.padding_h, o.padding_w));
  s.kernel_area = kernel_h * kernel_w;
  s.patch = s.in_per_group * s.kernel_area;
  s.in_plane = x.size(2) * x.size(3);
  s.out_plane = out_h * out_w;
  s.geometry = {s.in_channels, x.size(2),   x.size(3),    kernel_h,     kernel_w, o.stride_h, o.stride_w,
                o.padding_h,   o.padding_w, o.dilation_h, o.dilation_w, out_h,    out_w};
  s.pointwise =
      s.kernel_area == 1 && o.stride_h == 1 && o.stride_w == 1 && o.padding_h == 0 && o.padding_w == 0;
  return s;
}

// A per-thread buffer of at least `size` elements, kept between calls (Slot tells apart buffers that are
// alive at the same time). Its contents are whatever the last user left.
template <class T, int Slot>
T* scratch(int64_t size) {
  thread_local std::vector<T> buffer;
  if (static_cast<int64_t>(buffer.size()) < size) buffer.resize(size);
  return buffer.data();
}

// a / b rounded up, for a >= 0 and b > 0.
int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

// Part k of [0, total) cut into `parts` ranges whose sizes differ by at most one.
struct Range {
  int64_t begin, end;
  int64_t size() const { return end - begin; }
};
Range part(int64_t total, int64_t parts, int64_t k) {
  return {total * k / parts, total * (k + 1) / parts};
}

// Multiply-adds below which a pass runs on one thread: waking the others would cost more than it saves.
constexpr int64_t kParallelMultiplyAdds = int64_t{1} << 18;

// The threads a pass of `multiply_adds` may use: one for small work, and no extra ones when conv2d is
// itself called from a parallel region.
int64_t available_threads(int64_t multiply_adds) {
  if (multiply_adds < kParallelMultiplyAdds || omp_in_parallel()) return 1;
  return omp_get_max_threads();
}

// Runs task(0 .. count-1), one task per thread at a time. With fewer tasks than threads (or one thread)
// the tasks run in turn, and the GEMMs inside them use all the threads instead.
template <class Task>
void run_tasks(int64_t count, int64_t threads, Task&& task) {
  const bool parallel = threads > 1 && count >= threads;
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t i = 0; i < count; ++i)
    task(i);
}

// How many parts to cut `units` of work into so that every thread gets the same amount: at least
// `minimum` parts, at most `units`, and a multiple of the thread count unless there are plenty of parts.
int64_t balanced_parts(int64_t minimum, int64_t units, int64_t threads, int64_t multiplier = 1) {
  int64_t parts = std::max<int64_t>(minimum, ceil_div(threads, multiplier));
  while ((parts * multiplier) % threads != 0 && parts * multiplier < 4 * threads && parts < units)
    ++parts;
  return std::clamp<int64_t>(parts, 1, units);
}

// Columns of a block of `rows` column-matrix rows that fit in the buffer budget.
int64_t chunk_columns(const ConvShape& s, int64_t rows) {
  return std::clamp<int64_t>(kColumnBudget / std::max<int64_t>(rows, 1), 1, s.out_plane);
}

// forward: y[n, :, chunk] = Wm * col[:, chunk] (+ b), per group.
template <class T>
void forward(const ConvShape& s, const T* x, const T* w, const T* b, T* y) {
  if (s.batch == 0) return;
  const int64_t P = s.out_plane, rows = s.geometry.column_rows();
  const int64_t threads = available_threads(s.batch * s.out_channels * s.patch * P);
  const int64_t min_chunks = s.pointwise ? 1 : ceil_div(P, chunk_columns(s, rows));
  const int64_t chunks = balanced_parts(min_chunks, P, threads, s.batch);
  run_tasks(s.batch * chunks, threads, [&](int64_t task) {
    const int64_t n = task / chunks;
    const Range cols = part(P, chunks, task % chunks);
    const T* x_n = x + n * s.in_channels * s.in_plane;
    T* y_n = y + n * s.out_channels * P;
    const T* col = x_n + cols.begin;  // pointwise: the image is its own column matrix (row length P)
    int64_t col_stride = P;
    if (!s.pointwise) {
      T* buffer = scratch<T, 0>(rows * cols.size());
      cpu::im2col(x_n, s.geometry, {0, rows, cols.begin, cols.end}, buffer);
      col = buffer;
      col_stride = cols.size();
    }
    for (int64_t g = 0; g < s.groups; ++g)
      cpu::gemm<T>(false, false, s.out_per_group, cols.size(), s.patch, T(1),
                   w + g * s.out_per_group * s.patch, s.patch, col + g * s.patch * col_stride, col_stride,
                   T(0), y_n + g * s.out_per_group * P + cols.begin, P);
    if (b)
      for (int64_t o = 0; o < s.out_channels; ++o) {
        T* out = y_n + o * P;
        for (int64_t p = cols.begin; p < cols.end; ++p)
          out[p] += b[o];
      }
  });
}

// dW: dWm[:, rows] += sum over images of dY * col[rows]^T, each task a block of rows within one group.
template <class T>
void weight_gradient(const ConvShape& s, const T* x, const T* dy, T* dw) {
  const int64_t P = s.out_plane, threads = available_threads(s.batch * s.out_channels * s.patch * P);
  const int64_t blocks = balanced_parts(1, s.patch, threads, s.groups);  // per group
  run_tasks(s.groups * blocks, threads, [&](int64_t task) {
    const int64_t g = task / blocks;
    const Range rows = part(s.patch, blocks, task % blocks);  // within the group's K rows
    const int64_t first_row = g * s.patch + rows.begin;       // within the whole column matrix
    const int64_t width = s.pointwise ? P : chunk_columns(s, rows.size());
    T* buffer = s.pointwise ? nullptr : scratch<T, 0>(rows.size() * width);
    T beta = T(0);  // the first product overwrites the slice (cheaper in Eigen than adding to zeros)
    for (int64_t n = 0; n < s.batch; ++n) {
      const T* x_n = x + n * s.in_channels * s.in_plane;
      const T* dy_g = dy + (n * s.out_channels + g * s.out_per_group) * P;
      for (int64_t begin = 0; begin < P; begin += width) {
        const int64_t end = std::min(P, begin + width);
        const T* col = x_n + first_row * P + begin;  // pointwise: row r of col is channel r of x
        int64_t col_stride = P;
        if (!s.pointwise) {
          cpu::im2col(x_n, s.geometry, {first_row, first_row + rows.size(), begin, end}, buffer);
          col = buffer;
          col_stride = end - begin;
        }
        cpu::gemm<T>(false, true, s.out_per_group, rows.size(), end - begin, T(1), dy_g + begin, P, col,
                     col_stride, beta, dw + g * s.out_per_group * s.patch + rows.begin, s.patch);
        beta = T(1);
      }
    }
  });
}

// dx: dx[channels] += col2im(Wm[:, rows]^T dY), each task a block of input channels within one group.
template <class T>
void input_gradient(const ConvShape& s, const T* w, const T* dy, T* dx) {
  const int64_t P = s.out_plane, threads = available_threads(s.batch * s.out_channels * s.patch * P);
  const int64_t blocks = balanced_parts(1, s.in_per_group, threads, s.groups);  // per group
  run_tasks(s.groups * blocks, threads, [&](int64_t task) {
    const int64_t g = task / blocks;
    const Range channels = part(s.in_per_group, blocks, task % blocks);  // within the group
    const int64_t rows = channels.size() * s.kernel_area;
    const int64_t first_row = (g * s.in_per_group + channels.begin) * s.kernel_area;
    const T* w_rows = w + g * s.out_per_group * s.patch + channels.begin * s.kernel_area;  // Wm[:, rows]
    const int64_t width = s.pointwise ? P : chunk_columns(s, rows);
    T* buffer = s.pointwise ? nullptr : scratch<T, 1>(rows * width);
    for (int64_t n = 0; n < s.batch; ++n) {
      T* dx_n = dx + n * s.in_channels * s.in_plane;
      const T* dy_g = dy + (n * s.out_channels + g * s.out_per_group) * P;
      if (s.pointwise) {  // dx is dcol itself
        cpu::gemm<T>(true, false, rows, P, s.out_per_group, T(1), w_rows, s.patch, dy_g, P, T(0),
                     dx_n + first_row * P, P);
        continue;
      }
      for (int64_t begin = 0; begin < P; begin += width) {
        const int64_t end = std::min(P, begin + width);
        cpu::gemm<T>(true, false, rows, end - begin, s.out_per_group, T(1), w_rows, s.patch, dy_g + begin, P,
                     T(0), buffer, end - begin);
        cpu::col2im(buffer, s.geometry, {first_row, first_row + rows, begin, end}, dx_n);
      }
    }
  });
}

}  // namespace

Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dOptions& options) {
  require_cpu("conv2d", {{"x", x}, {"weight", weight}, {"bias", bias}});
  const ConvShape s = conv_shape(x, weight, bias, options);
  // The kernels read raw row-major memory; the graph is recorded on the original x, weight and bias.
  Tensor x_data = x.detach().contiguous(), w_data = weight.detach().contiguous();
  Tensor b_data = bias.defined() ? bias.detach().contiguous() : Tensor();
  Tensor y = empty({s.batch, s.out_channels, s.geometry.out_h, s.geometry.out_w}, x.options());
  dispatch_floating(x.dtype(), "conv2d", [&](auto tag) {
    using T = decltype(tag);
    forward<T>(s, x_data.data<T>(), w_data.data<T>(), b_data.defined() ? b_data.data<T>() : nullptr,
               y.data<T>());
  });

  const bool need_x = x.requires_grad(), need_w = weight.requires_grad();
  const bool need_b = bias.defined() && bias.requires_grad();
  autograd::record(
      y, "conv2d", {x, weight, bias},
      [s, x_data, w_data, need_x, need_w, need_b](const Tensor& grad_output) -> std::vector<Tensor> {
        Tensor dy = grad_output.contiguous();
        // col2im accumulates into dx; a pointwise conv's GEMM overwrites all of it instead (beta 0).
        Tensor dx = !need_x       ? Tensor()
                    : s.pointwise ? empty(x_data.shape(), x_data.options())
                                  : zeros(x_data.shape(), x_data.options());
        Tensor dw = need_w ? zeros(w_data.shape(), w_data.options()) : Tensor();
        Tensor db = need_b ? sum(dy, {0, 2, 3}) : Tensor();
        dispatch_floating(dy.dtype(), "conv2d backward", [&](auto tag) {
          using T = decltype(tag);
          if (need_w) weight_gradient<T>(s, x_data.data<T>(), dy.data<T>(), dw.data<T>());
          if (need_x) input_gradient<T>(s, w_data.data<T>(), dy.data<T>(), dx.data<T>());
        });
        return {dx, dw, db};
      });
  return y;
}

}  // namespace icd
