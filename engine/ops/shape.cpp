// Shape ops: cat, stack, split, index_select, gather, pad. They only move elements, so each backward
// sends every output gradient element back to the one input element it came from:
//
//   cat:          out = [a | b | ...] along dim        ->  da, db, ... = the matching slices of g (narrow)
//   stack:        unsqueeze each input, then cat       ->  through those two ops
//   split:        narrow views                         ->  narrow's backward (engine/ops/view.cpp)
//   index_select: out[.., k, ..] = x[.., idx[k], ..]   ->  dx[.., idx[k], ..] += g[.., k, ..]
//   gather:       out[p] = x[p with p_dim := idx[p]]   ->  dx[p with p_dim := idx[p]] += g[p]
//   pad:          out = value, with x copied into a window of it
//                                                      ->  dx = the window of g (zero where x was cropped)
//
// index_select and gather may read one x element several times (repeated indices), so their backward
// is a scatter-*add*: each read contributes its g. Indices are checked before anything is read.
//
// On a CUDA device the backward is written as a gather instead: each dx element sums the g elements that
// read it, grouped on the host in ascending order (the CPU's order of the adds), so there are no atomics
// and the result is the CPU's bit for bit (engine/kernels/index_math.h).
//
// Layout: with x viewed as [outer, size(dim), inner] (row-major), cat and index_select copy whole runs
// of `inner` elements with memcpy; OpenMP shares the outer index among threads (outer blocks are
// disjoint in both input and output, so the scatter-adds cannot race either).
#include "engine/ops/shape.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>

#include "engine/autograd.h"
#include "engine/cpu/strided.h"
#include "engine/cuda_ops.h"
#include "engine/dispatch.h"
#include "engine/factory.h"
#include "engine/kernels/index_math.h"
#include "engine/ops/elementwise.h"
#include "engine/transfer.h"

namespace icd {
namespace {

int64_t product(const Shape& shape, int64_t begin, int64_t end) {
  int64_t p = 1;
  for (int64_t d = begin; d < end; ++d)
    p *= shape[d];
  return p;
}

// The element offset, under `strides`, of every index of `shape` in row-major order.
std::vector<int64_t> offsets_of(const Shape& shape, const Shape& strides) {
  std::vector<int64_t> offsets;
  offsets.reserve(shape_numel(shape));
  cpu::for_each_offset(shape, strides, [&](int64_t off) { offsets.push_back(off); });
  return offsets;
}

void check_index_tensor(const char* op, const Tensor& index, Device device) {
  if (!index.defined()) throw std::invalid_argument(std::string(op) + ": index is undefined");
  if (index.dtype() != DType::i64)
    throw std::invalid_argument(std::string(op) + ": index must be i64, got " + dtype_name(index.dtype()));
  if (index.device() != device)
    throw std::invalid_argument(std::string(op) + ": index is on " + index.device().str() + " but x is on " +
                                device.str());
}

// The index values on the host, where they are checked (and, for CPU tensors, read).
Tensor host_index(const Tensor& index) {
  return index.device().is_cpu() ? index : to_device(index, Device::cpu());
}

// An i64 vector as a 1-D tensor on `device`.
Tensor index_tensor_on(const std::vector<int64_t>& values, Device device) {
  return to_device(from_vector(values, {static_cast<int64_t>(values.size())}), device);
}

void check_index_value(const char* op, int64_t value, int64_t size, int64_t dim, const Tensor& x) {
  if (value < 0 || value >= size)
    throw std::out_of_range(std::string(op) + ": index " + std::to_string(value) +
                            " is out of range for dimension " + std::to_string(dim) + " of size " +
                            std::to_string(size) + " (x " + shape_str(x.shape()) + ")");
}

}  // namespace

// ---------------------------------------------------------------------------------------------------
// cat, stack, split

namespace {

// out = the inputs side by side along d, one memcpy per input and outer index; sizes = their sizes along d.
void cat_on_cpu(const std::vector<Tensor>& tensors, int64_t d, Tensor& out, std::vector<int64_t>& sizes) {
  const Shape& out_shape = out.shape();
  const int64_t ndim = out.dim();
  const int64_t outer = product(out_shape, 0, d), inner = product(out_shape, d + 1, ndim);
  const std::size_t element = dtype_size(out.dtype());
  const int64_t out_row = out_shape[d] * inner;  // elements per outer index in out
  int64_t start = 0;
  for (const Tensor& t : tensors) {
    const int64_t run = t.size(d) * inner;  // elements per outer index in t
    sizes.push_back(t.size(d));
    if (run > 0 && outer > 0) {
      const Tensor tc = t.detach().contiguous();
      const char* src = static_cast<const char*>(tc.raw_data());
      char* dst = static_cast<char*>(out.raw_data()) + start * inner * element;
#pragma omp parallel for schedule(static) if (outer > 1 && outer * run >= cpu::kParallelGrain)
      for (int64_t o = 0; o < outer; ++o)
        std::memcpy(dst + o * out_row * element, src + o * run * element, run * element);
    }
    start += t.size(d);
  }
}

}  // namespace

Tensor cat(const std::vector<Tensor>& tensors, int64_t dim) {
  if (tensors.empty()) throw std::invalid_argument("cat: no tensors to concatenate");
  const Tensor& first = tensors[0];
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const std::string name = "tensors[" + std::to_string(i) + "]";
    if (!tensors[i].defined()) throw std::invalid_argument("cat: " + name + " is undefined");
    op_device("cat", {{"tensors[0]", first}, {name.c_str(), tensors[i]}});
  }
  const int64_t ndim = first.dim();
  if (ndim == 0) throw std::invalid_argument("cat: zero-dimensional tensors cannot be concatenated");
  const int64_t d = wrap_dim(dim, ndim, "cat");
  Shape out_shape = first.shape();
  out_shape[d] = 0;
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const Shape& s = tensors[i].shape();
    bool same = static_cast<int64_t>(s.size()) == ndim;
    for (int64_t k = 0; k < ndim && same; ++k)
      same = k == d || s[k] == first.shape()[k];
    if (!same)
      throw std::invalid_argument("cat: tensors[" + std::to_string(i) + "] has shape " + shape_str(s) +
                                  " but tensors[0] has " + shape_str(first.shape()) + "; only dimension " +
                                  std::to_string(d) + " may differ");
    out_shape[d] += s[d];
  }
  Tensor out = empty(out_shape, first.options());
  std::vector<int64_t> sizes;
  if (first.device().is_cuda()) {  // each input copied into its slice of out by the strided copy kernel
    int64_t start = 0;
    for (const Tensor& t : tensors) {
      Tensor slice = out.narrow(d, start, t.size(d));
      copy_(slice, t.detach());
      sizes.push_back(t.size(d));
      start += t.size(d);
    }
  } else {
    cat_on_cpu(tensors, d, out, sizes);
  }
  autograd::record(out, "cat", tensors,
                   [sizes = std::move(sizes), d](const Tensor& g) -> std::vector<Tensor> {
                     std::vector<Tensor> grads;
                     int64_t offset = 0;
                     for (int64_t size : sizes) {
                       grads.push_back(g.narrow(d, offset, size));
                       offset += size;
                     }
                     return grads;
                   });
  return out;
}

Tensor stack(const std::vector<Tensor>& tensors, int64_t dim) {
  if (tensors.empty()) throw std::invalid_argument("stack: no tensors to stack");
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    if (!tensors[i].defined())
      throw std::invalid_argument("stack: tensors[" + std::to_string(i) + "] is undefined");
    if (tensors[i].shape() != tensors[0].shape())
      throw std::invalid_argument("stack: tensors[" + std::to_string(i) + "] has shape " +
                                  shape_str(tensors[i].shape()) + " but tensors[0] has " +
                                  shape_str(tensors[0].shape()));
  }
  const int64_t d = wrap_dim(dim, tensors[0].dim() + 1, "stack");
  std::vector<Tensor> expanded;
  expanded.reserve(tensors.size());
  for (const Tensor& t : tensors)
    expanded.push_back(t.unsqueeze(d));
  return cat(expanded, d);
}

std::vector<Tensor> split(const Tensor& x, int64_t split_size, int64_t dim) {
  const int64_t d = wrap_dim(dim, x.dim(), "split");
  const int64_t n = x.size(d);
  if (split_size <= 0 && n > 0)
    throw std::invalid_argument("split: split_size must be positive, got " + std::to_string(split_size));
  if (n == 0) return {x.narrow(d, 0, 0)};
  std::vector<Tensor> pieces;
  for (int64_t start = 0; start < n; start += split_size)
    pieces.push_back(x.narrow(d, start, std::min(split_size, n - start)));
  return pieces;
}

std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim) {
  const int64_t d = wrap_dim(dim, x.dim(), "split");
  int64_t total = 0;
  for (int64_t s : sizes) {
    if (s < 0) throw std::invalid_argument("split: negative size " + std::to_string(s));
    total += s;
  }
  if (total != x.size(d))
    throw std::invalid_argument("split: sizes sum to " + std::to_string(total) + " but dimension " +
                                std::to_string(d) + " of x " + shape_str(x.shape()) + " has size " +
                                std::to_string(x.size(d)));
  std::vector<Tensor> pieces;
  int64_t start = 0;
  for (int64_t s : sizes) {
    pieces.push_back(x.narrow(d, start, s));
    start += s;
  }
  return pieces;
}

// ---------------------------------------------------------------------------------------------------
// index_select, gather

namespace {

// dx[.., idx[k], ..] += g[.., k, ..], with x viewed as [outer, D, inner] and g as [outer, K, inner].
Tensor index_select_backward(const Tensor& grad, const Shape& x_shape, int64_t d,
                             const std::vector<int64_t>& idx) {
  const Tensor g = grad.contiguous();
  if (g.device().is_cuda()) {  // each dx row sums the g rows that read it, in ascending k: no atomics
    const int64_t ndim = static_cast<int64_t>(x_shape.size());
    const kernels::TargetGroups reads = kernels::group_by_target(idx, x_shape[d]);
    Tensor dx = empty(x_shape, g.options());
    cuda_ops::index_select_backward("index_select backward", g, index_tensor_on(reads.starts, g.device()),
                                    index_tensor_on(reads.sources, g.device()), product(x_shape, 0, d),
                                    product(x_shape, d + 1, ndim), dx);
    return dx;
  }
  Tensor dx = zeros(x_shape, g.options());
  const int64_t ndim = static_cast<int64_t>(x_shape.size());
  const int64_t outer = product(x_shape, 0, d), inner = product(x_shape, d + 1, ndim);
  const int64_t D = x_shape[d], K = static_cast<int64_t>(idx.size());
  dispatch_floating(g.dtype(), "index_select backward", [&](auto tag) {
    using T = decltype(tag);
    const T* gp = g.data<T>();
    T* dxp = dx.data<T>();
#pragma omp parallel for schedule(static) if (outer > 1 && outer * K * inner >= cpu::kParallelGrain)
    for (int64_t o = 0; o < outer; ++o)
      for (int64_t k = 0; k < K; ++k) {
        T* dst = dxp + (o * D + idx[k]) * inner;
        const T* src = gp + (o * K + k) * inner;
        for (int64_t i = 0; i < inner; ++i)
          dst[i] += src[i];
      }
  });
  return dx;
}

}  // namespace

Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index) {
  const char* op = "index_select";
  const Device device = op_device(op, {{"x", x}});
  check_index_tensor(op, index, device);
  if (index.dim() > 1)
    throw std::invalid_argument("index_select: index must be 0-D or 1-D, got " + shape_str(index.shape()));
  if (x.dim() == 0) throw std::invalid_argument("index_select: x must have at least one dimension");
  const int64_t d = wrap_dim(dim, x.dim(), op);
  const int64_t D = x.size(d), K = index.numel();
  std::vector<int64_t> idx = host_index(index).to_vector<int64_t>();
  for (int64_t v : idx)
    check_index_value(op, v, D, d, x);

  Shape out_shape = x.shape();
  out_shape[d] = K;
  Tensor out = empty(out_shape, x.options());
  const int64_t outer = product(x.shape(), 0, d), inner = product(x.shape(), d + 1, x.dim());
  const std::size_t element = dtype_size(x.dtype());
  if (device.is_cuda()) {
    cuda_ops::index_select(op, x.detach().contiguous(), index.contiguous().reshape({K}), outer, inner, out);
  } else if (out.numel() > 0) {
    const Tensor xc = x.detach().contiguous();
    const char* src = static_cast<const char*>(xc.raw_data());
    char* dst = static_cast<char*>(out.raw_data());
#pragma omp parallel for schedule(static) if (outer > 1 && out.numel() >= cpu::kParallelGrain)
    for (int64_t o = 0; o < outer; ++o)
      for (int64_t k = 0; k < K; ++k)
        std::memcpy(dst + (o * K + k) * inner * element, src + (o * D + idx[k]) * inner * element,
                    inner * element);
  }
  autograd::record(out, op, {x}, [idx = std::move(idx), shape = x.shape(), d](const Tensor& g) {
    return std::vector<Tensor>{index_select_backward(g, shape, d, idx)};
  });
  return out;
}

namespace {

// gather's addressing: position (o, k, i) of index, viewed as [outer, K, inner], reads the element of x
// at outer_offsets[o] + index * dim_stride + inner_offsets[i].
struct GatherLayout {
  std::vector<int64_t> outer_offsets, inner_offsets;
  int64_t dim_stride;
};

GatherLayout gather_layout(const Shape& index_shape, const Shape& x_strides, int64_t d) {
  const int64_t ndim = static_cast<int64_t>(index_shape.size());
  Shape outer_shape(index_shape.begin(), index_shape.begin() + d);
  Shape inner_shape(index_shape.begin() + d + 1, index_shape.end());
  Shape outer_strides(x_strides.begin(), x_strides.begin() + d);
  Shape inner_strides(x_strides.begin() + d + 1, x_strides.begin() + ndim);
  return {offsets_of(outer_shape, outer_strides), offsets_of(inner_shape, inner_strides), x_strides[d]};
}

// dx[p with p_dim := idx[p]] += g[p]: the same addressing over a zero, row-major dx.
// `index` is on the host (the CUDA path groups the reads there).
Tensor gather_backward(const Tensor& grad, const Shape& x_shape, int64_t d, const Tensor& index) {
  const Tensor g = grad.contiguous();
  const GatherLayout layout = gather_layout(index.shape(), contiguous_strides(x_shape), d);
  const int64_t outer = static_cast<int64_t>(layout.outer_offsets.size());
  const int64_t inner = static_cast<int64_t>(layout.inner_offsets.size());
  const int64_t K = index.size(d);
  const int64_t* idx = index.data<int64_t>();
  if (g.device().is_cuda()) {  // each dx element sums the g elements that read it, in ascending order
    std::vector<int64_t> target_of(g.numel());
    for (int64_t o = 0; o < outer; ++o)
      for (int64_t k = 0; k < K; ++k) {
        const int64_t row = (o * K + k) * inner;
        for (int64_t i = 0; i < inner; ++i)
          target_of[row + i] =
              layout.outer_offsets[o] + idx[row + i] * layout.dim_stride + layout.inner_offsets[i];
      }
    const kernels::TargetGroups reads = kernels::group_by_target(target_of, shape_numel(x_shape));
    Tensor dx = empty(x_shape, g.options());
    cuda_ops::segment_sum("gather backward", g, index_tensor_on(reads.starts, g.device()),
                          index_tensor_on(reads.sources, g.device()), dx);
    return dx;
  }
  Tensor dx = zeros(x_shape, g.options());
  dispatch_floating(g.dtype(), "gather backward", [&](auto tag) {
    using T = decltype(tag);
    const T* gp = g.data<T>();
    T* dxp = dx.data<T>();
    // Distinct outer positions own disjoint blocks of dx, so the adds of different threads never meet.
#pragma omp parallel for schedule(static) if (outer > 1 && g.numel() >= cpu::kParallelGrain)
    for (int64_t o = 0; o < outer; ++o)
      for (int64_t k = 0; k < K; ++k) {
        const int64_t row = (o * K + k) * inner;
        T* base = dxp + layout.outer_offsets[o];
        for (int64_t i = 0; i < inner; ++i)
          base[idx[row + i] * layout.dim_stride + layout.inner_offsets[i]] += gp[row + i];
      }
  });
  return dx;
}

}  // namespace

Tensor gather(const Tensor& x, int64_t dim, const Tensor& index) {
  const char* op = "gather";
  const Device device = op_device(op, {{"x", x}});
  check_index_tensor(op, index, device);
  if (index.dim() != x.dim())
    throw std::invalid_argument("gather: index " + shape_str(index.shape()) +
                                " must have as many dimensions as x " + shape_str(x.shape()));
  if (x.dim() == 0) throw std::invalid_argument("gather: x must have at least one dimension");
  const int64_t d = wrap_dim(dim, x.dim(), op);
  for (int64_t k = 0; k < x.dim(); ++k)
    if (k != d && index.size(k) > x.size(k))
      throw std::invalid_argument("gather: index " + shape_str(index.shape()) + " is larger than x " +
                                  shape_str(x.shape()) + " in dimension " + std::to_string(k));
  const Tensor ic = host_index(index.contiguous());
  const int64_t* idx = ic.data<int64_t>();
  const int64_t D = x.size(d), K = index.size(d), n = index.numel();
  for (int64_t e = 0; e < n; ++e)
    check_index_value(op, idx[e], D, d, x);

  Tensor out = empty(index.shape(), x.options());
  if (device.is_cuda()) {
    cuda_ops::gather(op, x.detach(), d, index.contiguous(), out);
    autograd::record(out, op, {x}, [ic, shape = x.shape(), d](const Tensor& g) {
      return std::vector<Tensor>{gather_backward(g, shape, d, ic)};
    });
    return out;
  }
  const GatherLayout layout = gather_layout(index.shape(), x.strides(), d);
  const int64_t outer = static_cast<int64_t>(layout.outer_offsets.size());
  const int64_t inner = static_cast<int64_t>(layout.inner_offsets.size());
  dispatch_all(x.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
    const T* xp = x.data<T>();
    T* out_p = out.data<T>();
#pragma omp parallel for schedule(static) if (outer > 1 && n >= cpu::kParallelGrain)
    for (int64_t o = 0; o < outer; ++o)
      for (int64_t k = 0; k < K; ++k) {
        const int64_t row = (o * K + k) * inner;
        const T* base = xp + layout.outer_offsets[o];
        for (int64_t i = 0; i < inner; ++i)
          out_p[row + i] = base[idx[row + i] * layout.dim_stride + layout.inner_offsets[i]];
      }
  });
  autograd::record(out, op, {x}, [ic, shape = x.shape(), d](const Tensor& g) {
    return std::vector<Tensor>{gather_backward(g, shape, d, ic)};
  });
  return out;
}

// ---------------------------------------------------------------------------------------------------
// pad

Tensor pad(const Tensor& x, const std::vector<int64_t>& pads, double value) {
  op_device("pad", {{"x", x}});  // full and copy_ below run on x's device
  const int64_t pairs = static_cast<int64_t>(pads.size()) / 2;
  if (pads.size() % 2 != 0 || pairs > x.dim())
    throw std::invalid_argument("pad: pads must hold (before, after) pairs for at most " +
                                std::to_string(x.dim()) + " dimensions of x " + shape_str(x.shape()) +
                                ", got " + std::to_string(pads.size()) + " values");
  Shape out_shape = x.shape();
  // Per padded dim: where the surviving part of x starts in x and in out, and its length.
  struct Window {
    int64_t dim, x_start, out_start, length;
  };
  std::vector<Window> windows;
  bool crops = false;
  for (int64_t k = 0; k < pairs; ++k) {
    const int64_t d = x.dim() - 1 - k, before = pads[2 * k], after = pads[2 * k + 1];
    out_shape[d] = x.size(d) + before + after;
    if (out_shape[d] < 0)
      throw std::invalid_argument("pad: padding (" + std::to_string(before) + ", " + std::to_string(after) +
                                  ") leaves a negative size in dimension " + std::to_string(d) + " of x " +
                                  shape_str(x.shape()));
    const int64_t x_start = std::max<int64_t>(0, -before);
    const int64_t length = std::max<int64_t>(0, x.size(d) - x_start - std::max<int64_t>(0, -after));
    crops = crops || length < x.size(d);
    windows.push_back(
        {d, std::min(x_start, x.size(d)), std::min(std::max<int64_t>(0, before), out_shape[d]), length});
  }
  Tensor out = full(out_shape, value, x.options());
  Tensor out_window = out, x_window = x.detach();
  for (const Window& w : windows) {
    out_window = out_window.narrow(w.dim, w.out_start, w.length);
    x_window = x_window.narrow(w.dim, w.x_start, w.length);
  }
  copy_(out_window, x_window);
  autograd::record(out, "pad", {x},
                   [windows, crops, shape = x.shape()](const Tensor& g) -> std::vector<Tensor> {
                     Tensor g_window = g;
                     for (const Window& w : windows)
                       g_window = g_window.narrow(w.dim, w.out_start, w.length);
                     if (!crops) return {g_window};
                     Tensor dx = zeros(shape, g.options());
                     Tensor dx_window = dx;
                     for (const Window& w : windows)
                       dx_window = dx_window.narrow(w.dim, w.x_start, w.length);
                     copy_(dx_window, g_window);
                     return {dx};
                   });
  return out;
}

}  // namespace icd
