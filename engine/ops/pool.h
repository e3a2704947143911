// Pooling over the last two (spatial) dims of [N, C, H, W] or [C, H, W] tensors (engine/ops/pool.cpp),
// with torch's semantics for output sizes, padding, ceil_mode and ties. Every [H, W] plane is pooled
// on its own; the output keeps the leading dims and replaces H, W by the pooled sizes:
//   out = floor((in + 2 pad - dilation (kernel - 1) - 1) / stride) + 1     (ceil instead with ceil_mode,
//         but the last window must start inside the input or its left padding)
// Errors (std::invalid_argument): a rank other than 3 or 4, an empty plane, a non-positive kernel,
// stride or dilation, padding above half the kernel, an output smaller than 1.
#pragma once
#include <cstdint>

#include "engine/tensor.h"

namespace icd {

struct Pool2dOptions {
  // (height, width); one number sets both, so {.kernel = 3, .stride = 2} and {.kernel = {3, 2}} both read.
  struct Pair {
    int64_t h = 0, w = 0;
    constexpr Pair() = default;
    constexpr Pair(int64_t both) : h(both), w(both) {}  // implicit on purpose, see above
    constexpr Pair(int64_t height, int64_t width) : h(height), w(width) {}
  };
  Pair kernel{};
  Pair stride{};      // 0 (the default): the kernel size, like torch's stride=None
  Pair padding = 0;   // max_pool2d pads with -inf, avg_pool2d with zeros
  Pair dilation = 1;  // max_pool2d only
  bool ceil_mode = false;
  bool count_include_pad = true;  // avg_pool2d only: padded positions count in the divisor
};

// The maximum of each window. Its gradient goes to the element that attained the maximum (on ties the
// first in row-major window order; a NaN counts as the maximum), as in torch.
Tensor max_pool2d(const Tensor& x, const Pool2dOptions& options);

// The mean of each window: the window sum divided by the window size, clipped to the input plus its
// padding (count_include_pad) or to the input alone (otherwise).
Tensor avg_pool2d(const Tensor& x, const Pool2dOptions& options);

// Means over out_h x out_w windows that tile the plane: output row i covers input rows
// [floor(i H / out_h), ceil((i + 1) H / out_h)), likewise for columns; windows may overlap.
Tensor adaptive_avg_pool2d(const Tensor& x, int64_t out_h, int64_t out_w);

}  // namespace icd
