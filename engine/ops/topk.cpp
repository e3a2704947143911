#include "engine/ops/topk.h"

#include <algorithm>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

#include "engine/cuda_ops.h"
#include "engine/dispatch.h"
#include "engine/factory.h"
#include "engine/kernels/sort_key.h"

namespace icd {

ValuesIndices topk(const Tensor& x, int64_t k) {
  const Device device = op_device("topk", {{"x", x}});
  if (x.dim() != 1) throw std::invalid_argument("topk: x must be 1-D, got " + shape_str(x.shape()));
  if (k < 0) throw std::invalid_argument("topk: k must be >= 0, got " + std::to_string(k));
  k = std::min(k, x.size(0));
  ValuesIndices out{empty({k}, x.options()), empty({k}, {DType::i64, device})};
  if (device.is_cuda()) {
    cuda_ops::topk("topk", x.detach().contiguous(), k, out.values, out.indices);
    return out;
  }
  dispatch_floating(x.dtype(), "topk", [&](auto tag) {
    using T = decltype(tag);
    const Tensor source = x.detach().contiguous();
    const T* values = source.data<T>();
    const int64_t n = source.numel();
    std::vector<T> keys(static_cast<std::size_t>(n));
    for (int64_t i = 0; i < n; ++i)
      keys[static_cast<std::size_t>(i)] = kernels::topk_key(values[i]);
    std::vector<int64_t> order(static_cast<std::size_t>(n));
    std::iota(order.begin(), order.end(), int64_t{0});
    std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int64_t i, int64_t j) {
      return kernels::topk_before(keys[static_cast<std::size_t>(i)], i, keys[static_cast<std::size_t>(j)], j);
    });
    T* top = out.values.template data<T>();
    int64_t* index = out.indices.template data<int64_t>();
    for (int64_t r = 0; r < k; ++r) {
      index[r] = order[static_cast<std::size_t>(r)];
      top[r] = values[index[r]];
    }
  });
  return out;
}

}  // namespace icd
