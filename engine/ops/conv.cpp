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
//
// CUDA tensors go to cuDNN instead (conv2d_cuda, engine/cuda/cudnn_conv.h): its forward, backward-data
// and backward-filter passes compute the same y, dL/dx and dL/dW; dL/db is the same sum of dY.
#include "engine/ops/conv.h"

#include <omp.h>

#include <algorithm>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "engine/autocast.h"
#include "engine/autograd.h"
#include "engine/cpu/gemm.h"
#include "engine/cpu/im2col.h"
#include "engine/cpu/strided.h"
#include "engine/cuda_ops.h"
#include "engine/dispatch.h"
#include "engine/factory.h"
#include "engine/ops/precision.h"
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
  if (threads <= 1 || count < threads) {
    // No parallel region at all here, not even an inactive one: the GEMMs' own regions inside would
    // then be nested ones, for which the OpenMP runtime starts a new team of threads every time.
    for (int64_t i = 0; i < count; ++i)
      task(i);
    return;
  }
#pragma omp parallel for schedule(static)
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

// Columns of a block of `rows` column-matrix rows that fit in the buffer budget, at most `total`.
int64_t chunk_columns(int64_t rows, int64_t total) {
  return std::clamp<int64_t>(kColumnBudget / std::max<int64_t>(rows, 1), 1, std::max<int64_t>(total, 1));
}

// The batch's column matrix. Its columns are the output positions of every image in turn: column
// j = n P + p is position p of image n, so a block of columns may span two images, and J = N P in all.
// Rows [r0, r1) and columns [c0, c1) of it, stored with row stride c1 - c0.
template <class T>
void im2col_batch(const ConvShape& s, const T* x, int64_t r0, int64_t r1, int64_t c0, int64_t c1, T* col) {
  const int64_t P = s.out_plane;
  for (int64_t n = c0 / P; n * P < c1; ++n) {
    const int64_t p0 = std::max(c0, n * P) - n * P, p1 = std::min(c1, (n + 1) * P) - n * P;
    cpu::im2col(x + n * s.in_channels * s.in_plane, s.geometry, {r0, r1, p0, p1}, col + (n * P + p0 - c0),
                c1 - c0);
  }
}

// dx += col2im of the same block.
template <class T>
void col2im_batch(const ConvShape& s, const T* col, int64_t r0, int64_t r1, int64_t c0, int64_t c1, T* dx) {
  const int64_t P = s.out_plane;
  for (int64_t n = c0 / P; n * P < c1; ++n) {
    const int64_t p0 = std::max(c0, n * P) - n * P, p1 = std::min(c1, (n + 1) * P) - n * P;
    cpu::col2im(col + (n * P + p0 - c0), s.geometry, {r0, r1, p0, p1}, dx + n * s.in_channels * s.in_plane,
                c1 - c0);
  }
}

// Output positions per task below which the threads share each GEMM instead of taking a block of
// columns each: a 7 x 7 map of a batch of 2 is 98 columns, and two GEMMs of 49 columns would each
// pack all of the weights and waste a quarter of their last 16-column tile.
constexpr int64_t kMinTaskColumns = 128;

// forward: y[:, :, block] = Wm * col[:, block] (+ b), per group, each task a block of the batch's columns.
// A block inside one image is written straight into y; one that spans two goes through a buffer.
template <class T>
void forward(const ConvShape& s, const T* x, const T* w, const T* b, T* y) {
  const int64_t P = s.out_plane, J = s.batch * P, rows = s.geometry.column_rows();
  if (J == 0) return;
  const int64_t threads = available_threads(s.batch * s.out_channels * s.patch * P);
  int64_t blocks = ceil_div(J, chunk_columns(rows, J));
  if (J >= threads * kMinTaskColumns) blocks = balanced_parts(blocks, J, threads);
  run_tasks(blocks, threads, [&](int64_t task) {
    const Range cols = part(J, blocks, task);
    const int64_t width = cols.size(), n = cols.begin / P;
    T* col = scratch<T, 0>(rows * width);
    im2col_batch(s, x, 0, rows, cols.begin, cols.end, col);
    const bool one_image = cols.end <= (n + 1) * P;
    T* out =
        one_image ? y + n * s.out_channels * P + (cols.begin - n * P) : scratch<T, 2>(s.out_channels * width);
    const int64_t ld = one_image ? P : width;
    for (int64_t g = 0; g < s.groups; ++g)
      cpu::gemm<T>(false, false, s.out_per_group, width, s.patch, T(1), w + g * s.out_per_group * s.patch,
                   s.patch, col + g * s.patch * width, width, T(0), out + g * s.out_per_group * ld, ld);
    if (one_image && !b) return;
    for (int64_t image = n; image * P < cols.end; ++image) {
      const int64_t p0 = std::max(cols.begin, image * P) - image * P;
      const int64_t p1 = std::min(cols.end, (image + 1) * P) - image * P;
      for (int64_t o = 0; o < s.out_channels; ++o) {
        T* dst = y + (image * s.out_channels + o) * P;
        const T* src = out + o * ld + (image * P - cols.begin);  // src[p] is position p of this image
        const T bias = b ? b[o] : T(0);
        for (int64_t p = p0; p < p1; ++p)
          dst[p] = src[p] + bias;
      }
    }
  });
}

// dY with the batch folded into the columns: dy_columns[o, n P + p] = dY[n, o, p], so that one GEMM
// covers a block of columns from several images. A batch of one is already laid out so. The copy lives
// in a buffer kept between calls: a fresh allocation of this size would be handed back to the OS when
// freed and page-faulted in again (zeroed by the kernel) on every backward pass.
template <class T>
const T* columns_of_output_gradient(const ConvShape& s, const T* dy) {
  if (s.batch == 1) return dy;
  const int64_t P = s.out_plane, J = s.batch * P;
  T* columns = scratch<T, 3>(s.out_channels * J);
#pragma omp parallel for schedule(static) if (s.out_channels * J >= cpu::kParallelGrain)
  for (int64_t o = 0; o < s.out_channels; ++o)
    for (int64_t n = 0; n < s.batch; ++n)
      std::copy_n(dy + (n * s.out_channels + o) * P, P, columns + o * J + n * P);
  return columns;
}

// dW: dWm[:, rows] = dY col[rows]^T summed over every column of the batch, each task a block of rows
// within one group, walking the columns in blocks that fit its buffer.
template <class T>
void weight_gradient(const ConvShape& s, const T* x, const T* dy_columns, T* dw) {
  const int64_t J = s.batch * s.out_plane;
  const int64_t threads = available_threads(s.batch * s.out_channels * s.patch * s.out_plane);
  const int64_t blocks = balanced_parts(1, s.patch, threads, s.groups);  // per group
  run_tasks(s.groups * blocks, threads, [&](int64_t task) {
    const int64_t g = task / blocks;
    const Range rows = part(s.patch, blocks, task % blocks);  // within the group's K rows
    const int64_t first_row = g * s.patch + rows.begin;       // within the whole column matrix
    const int64_t chunks = ceil_div(J, chunk_columns(rows.size(), J));
    T* col = scratch<T, 0>(rows.size() * ceil_div(J, chunks));
    for (int64_t chunk = 0; chunk < chunks; ++chunk) {
      const Range cols = part(J, chunks, chunk);
      im2col_batch(s, x, first_row, first_row + rows.size(), cols.begin, cols.end, col);
      // The first block overwrites the slice (cheaper than adding to zeros), the others accumulate.
      cpu::gemm<T>(false, true, s.out_per_group, rows.size(), cols.size(), T(1),
                   dy_columns + g * s.out_per_group * J + cols.begin, J, col, cols.size(),
                   T(chunk == 0 ? 0 : 1), dw + g * s.out_per_group * s.patch + rows.begin, s.patch);
    }
  });
}

// dx: dx[channels] += col2im(Wm[:, rows]^T dY), each task a block of input channels within one group,
// walking the batch's columns in blocks that fit its buffer.
template <class T>
void input_gradient(const ConvShape& s, const T* w, const T* dy_columns, T* dx) {
  const int64_t J = s.batch * s.out_plane;
  const int64_t threads = available_threads(s.batch * s.out_channels * s.patch * s.out_plane);
  const int64_t blocks = balanced_parts(1, s.in_per_group, threads, s.groups);  // per group
  run_tasks(s.groups * blocks, threads, [&](int64_t task) {
    const int64_t g = task / blocks;
    const Range channels = part(s.in_per_group, blocks, task % blocks);  // within the group
    const int64_t rows = channels.size() * s.kernel_area;
    const int64_t first_row = (g * s.in_per_group + channels.begin) * s.kernel_area;
    const T* w_rows = w + g * s.out_per_group * s.patch + channels.begin * s.kernel_area;  // Wm[:, rows]
    const int64_t chunks = ceil_div(J, chunk_columns(rows, J));
    T* col = scratch<T, 1>(rows * ceil_div(J, chunks));
    for (int64_t chunk = 0; chunk < chunks; ++chunk) {
      const Range cols = part(J, chunks, chunk);
      cpu::gemm<T>(true, false, rows, cols.size(), s.out_per_group, T(1), w_rows, s.patch,
                   dy_columns + g * s.out_per_group * J + cols.begin, J, T(0), col, cols.size());
      col2im_batch(s, col, first_row, first_row + rows, cols.begin, cols.end, dx);
    }
  });
}

// A pointwise convolution (1 x 1, stride 1, no padding) needs no im2col: image n is its own column
// matrix, C_in x P. Each pass runs per image, straight on x, y and dY.
template <class T>
void pointwise_forward(const ConvShape& s, const T* x, const T* w, const T* b, T* y) {
  const int64_t P = s.out_plane;
  const int64_t threads = available_threads(s.batch * s.out_channels * s.patch * P);
  const int64_t chunks = balanced_parts(1, P, threads, s.batch);
  run_tasks(s.batch * chunks, threads, [&](int64_t task) {
    const int64_t n = task / chunks;
    const Range cols = part(P, chunks, task % chunks);
    const T* x_n = x + n * s.in_channels * s.in_plane + cols.begin;
    T* y_n = y + n * s.out_channels * P;
    for (int64_t g = 0; g < s.groups; ++g)
      cpu::gemm<T>(false, false, s.out_per_group, cols.size(), s.patch, T(1),
                   w + g * s.out_per_group * s.patch, s.patch, x_n + g * s.patch * P, P, T(0),
                   y_n + g * s.out_per_group * P + cols.begin, P);
    if (b)
      for (int64_t o = 0; o < s.out_channels; ++o) {
        T* out = y_n + o * P;
        for (int64_t p = cols.begin; p < cols.end; ++p)
          out[p] += b[o];
      }
  });
}

template <class T>
void pointwise_weight_gradient(const ConvShape& s, const T* x, const T* dy, T* dw) {
  const int64_t P = s.out_plane, threads = available_threads(s.batch * s.out_channels * s.patch * P);
  const int64_t blocks = balanced_parts(1, s.patch, threads, s.groups);  // per group
  run_tasks(s.groups * blocks, threads, [&](int64_t task) {
    const int64_t g = task / blocks;
    const Range rows = part(s.patch, blocks, task % blocks);  // input channels within the group
    for (int64_t n = 0; n < s.batch; ++n)
      cpu::gemm<T>(false, true, s.out_per_group, rows.size(), P, T(1),
                   dy + (n * s.out_channels + g * s.out_per_group) * P, P,
                   x + (n * s.in_channels + g * s.patch + rows.begin) * P, P, T(n == 0 ? 0 : 1),
                   dw + g * s.out_per_group * s.patch + rows.begin, s.patch);
  });
}

template <class T>
void pointwise_input_gradient(const ConvShape& s, const T* w, const T* dy, T* dx) {
  const int64_t P = s.out_plane, threads = available_threads(s.batch * s.out_channels * s.patch * P);
  const int64_t blocks = balanced_parts(1, s.in_per_group, threads, s.groups);  // per group
  run_tasks(s.groups * blocks, threads, [&](int64_t task) {
    const int64_t g = task / blocks;
    const Range channels = part(s.in_per_group, blocks, task % blocks);  // within the group
    const int64_t first = g * s.in_per_group + channels.begin;
    for (int64_t n = 0; n < s.batch; ++n)
      cpu::gemm<T>(true, false, channels.size(), P, s.out_per_group, T(1),
                   w + g * s.out_per_group * s.patch + channels.begin, s.patch,
                   dy + (n * s.out_channels + g * s.out_per_group) * P, P, T(0),
                   dx + (n * s.in_channels + first) * P, P);
  });
}

// conv2d of CUDA tensors, on cuDNN (engine/cuda_ops.h); the shapes are checked (s).
Tensor conv2d_cuda(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dOptions& options,
                   const ConvShape& s) {
  const Tensor x_data = x.detach().contiguous(), w_data = weight.detach().contiguous();
  const Tensor b_data = bias.defined() ? bias.detach().contiguous() : Tensor();
  Tensor y = empty({s.batch, s.out_channels, s.geometry.out_h, s.geometry.out_w}, x.options());
  cuda_ops::conv2d_forward("conv2d", x_data, w_data, b_data, options, y);
  const bool need_x = x.requires_grad(), need_w = weight.requires_grad();
  const bool need_b = bias.defined() && bias.requires_grad();
  autograd::record(
      y, "conv2d", {x, weight, bias},
      [x_data, w_data, options, need_x, need_w, need_b](const Tensor& grad_output) -> std::vector<Tensor> {
        const Tensor dy = grad_output.contiguous();
        Tensor dx, dw;
        if (need_x) {
          dx = empty(x_data.shape(), x_data.options());
          cuda_ops::conv2d_backward_data("conv2d backward", dy, w_data, options, dx);
        }
        if (need_w) {
          dw = empty(w_data.shape(), w_data.options());
          cuda_ops::conv2d_backward_filter("conv2d backward", x_data, dy, options, dw);
        }
        Tensor db = need_b ? sum(dy, {0, 2, 3}) : Tensor();
        return {dx, dw, db};
      });
  return y;
}

// conv2d under autocast on CUDA tensors: the values of the rounded composition in conv2d below, with the
// operands handed to cuDNN as 16-bit storage (`low`) so that it accumulates in f32 on tensor cores. The
// conversions round to nearest even (engine/kernels/half_math.h), as round_to_precision does. One
// difference: cuDNN writes the convolution as 16-bit values and then adds the bias to them, rounding
// twice where the CPU rounds conv + bias once (PyTorch's autocast adds its bias the same way), so with a
// bias an output may differ from the CPU's by one 16-bit ulp.
Tensor conv2d_cuda_16bit(const Tensor& x, const Tensor& weight, const Tensor& bias,
                         const Conv2dOptions& options, const ConvShape& s, DType low) {
  const Tensor x16 = x.detach().to(low), w16 = weight.detach().to(low);
  const Tensor b16 = bias.defined() ? bias.detach().to(low) : Tensor();
  Tensor y16 = empty({s.batch, s.out_channels, s.geometry.out_h, s.geometry.out_w}, {low, x.device()});
  cuda_ops::conv2d_forward("conv2d", x16, w16, b16, options, y16);
  Tensor y = y16.to(DType::f32);
  const bool need_x = x.requires_grad(), need_w = weight.requires_grad();
  const bool need_b = bias.defined() && bias.requires_grad();
  autograd::record(
      y, "conv2d", {x, weight, bias},
      [x16, w16, options, low, need_x, need_w, need_b](const Tensor& grad_output) -> std::vector<Tensor> {
        const Tensor dy16 = grad_output.contiguous().to(low);
        Tensor dx, dw, db;
        if (need_x) {
          Tensor dx16 = empty(x16.shape(), x16.options());
          cuda_ops::conv2d_backward_data("conv2d backward", dy16, w16, options, dx16);
          dx = dx16.to(DType::f32);
        }
        if (need_w) {
          Tensor dw16 = empty(w16.shape(), w16.options());
          cuda_ops::conv2d_backward_filter("conv2d backward", x16, dy16, options, dw16);
          dw = dw16.to(DType::f32);
        }
        if (need_b) db = round_to_precision(sum(dy16.to(DType::f32), {0, 2, 3}), low);
        return {dx, dw, db};
      });
  return y;
}

}  // namespace

Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dOptions& options) {
  const Device device = op_device("conv2d", {{"x", x}, {"weight", weight}, {"bias", bias}});
  if (const std::optional<DType> low = autocast_precision_for(x)) {  // engine/autocast.h
    if (device.is_cuda())
      return conv2d_cuda_16bit(x, weight, bias, options, conv_shape(x, weight, bias, options), *low);
    AutocastGuard f32(DType::f32);
    const Tensor b = bias.defined() ? round_to_precision(bias, *low) : Tensor();
    return round_to_precision(
        conv2d(round_to_precision(x, *low), round_to_precision(weight, *low), b, options), *low);
  }
  const ConvShape s = conv_shape(x, weight, bias, options);
  if (device.is_cuda()) return conv2d_cuda(x, weight, bias, options, s);
  // The kernels read raw row-major memory; the graph is recorded on the original x, weight and bias.
  Tensor x_data = x.detach().contiguous(), w_data = weight.detach().contiguous();
  Tensor b_data = bias.defined() ? bias.detach().contiguous() : Tensor();
  Tensor y = empty({s.batch, s.out_channels, s.geometry.out_h, s.geometry.out_w}, x.options());
  dispatch_floating(x.dtype(), "conv2d", [&](auto tag) {
    using T = decltype(tag);
    const T* b = b_data.defined() ? b_data.data<T>() : nullptr;
    if (s.pointwise)
      pointwise_forward<T>(s, x_data.data<T>(), w_data.data<T>(), b, y.data<T>());
    else
      forward<T>(s, x_data.data<T>(), w_data.data<T>(), b, y.data<T>());
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
        // Every pass below overwrites dW; an empty batch contributes nothing to it.
        Tensor dw = !need_w        ? Tensor()
                    : s.batch == 0 ? zeros(w_data.shape(), w_data.options())
                                   : empty(w_data.shape(), w_data.options());
        Tensor db = need_b ? sum(dy, {0, 2, 3}) : Tensor();
        if (s.batch == 0) return {dx, dw, db};
        dispatch_floating(dy.dtype(), "conv2d backward", [&](auto tag) {
          using T = decltype(tag);
          if (s.pointwise) {
            if (need_w) pointwise_weight_gradient<T>(s, x_data.data<T>(), dy.data<T>(), dw.data<T>());
            if (need_x) pointwise_input_gradient<T>(s, w_data.data<T>(), dy.data<T>(), dx.data<T>());
            return;
          }
          const T* dy_columns = columns_of_output_gradient<T>(s, dy.data<T>());
          if (need_w) weight_gradient<T>(s, x_data.data<T>(), dy_columns, dw.data<T>());
          if (need_x) input_gradient<T>(s, w_data.data<T>(), dy_columns, dx.data<T>());
        });
        return {dx, dw, db};
      });
  return y;
}

}  // namespace icd
