// The CPU launch of a kernel body: the plain loop that runs an ICD_HD functor over every element, as
// the CUDA kernels (engine/cuda/*.cu) run the same functor once per thread. Tests call these on every
// machine, so the arithmetic the GPU runs is checked where there is no GPU.
#pragma once
#include <cstdint>
#include <utility>
#include <vector>

#include "engine/hd.h"
#include "engine/kernels/reduce_sum.h"
#include "engine/kernels/strided_index.h"

namespace icd::kernels {

// out[i] = f(a[i], b[i]) for i < n over contiguous arrays; out may alias a or b.
template <class F, class T>
ICD_HD void cpu_launch_binary(F f, const T* a, const T* b, T* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i)
    out[i] = f(a[i], b[i]);
}

// Element i of a strided map: out[off0(i)] = f(in_0[off1(i)], in_1[off2(i)], ...), operand 0 being the
// output. Each pointer is its operand's first element; the result converts to the output's type on
// assignment (a copy between dtypes is f = CopyOp).
template <class F, int K, class Out, class... In, std::size_t... I>
ICD_HD void strided_map_apply(F f, const int64_t (&off)[K], Out* out, std::index_sequence<I...>,
                              const In*... in) {
  out[off[0]] = static_cast<Out>(f(in[off[I + 1]]...));
}

template <class F, int K, class Out, class... In>
ICD_HD void strided_map_element(F f, const StridedLayout<K>& layout, int64_t i, Out* out, const In*... in) {
  static_assert(K == int(sizeof...(In)) + 1, "one stride set per operand: the output and each input");
  int64_t off[K];
  layout.offsets(i, off);
  strided_map_apply(f, off, out, std::index_sequence_for<In...>{}, in...);
}

template <class F, int K, class Out, class... In>
void cpu_launch_strided_map(F f, const StridedLayout<K>& layout, Out* out, const In*... in) {
  for (int64_t i = 0; i < layout.numel; ++i)
    strided_map_element(f, layout, i, out, in...);
}

// out[o] for every output o, combining partial sums exactly as the GPU does under `plan`.
template <class T>
void cpu_launch_sum(const T* x, const SumLayout& layout, const SumPlan& plan, T* out) {
  const int64_t per_output = layout.inner.numel;
  std::vector<double> partial(plan.threads);
  for (int64_t o = 0; o < layout.outer.numel; ++o) {
    if (plan.threads == 1) {
      out[o] = static_cast<T>(sum_strided_range<double>(x, layout, o, 0, per_output, 1));
      continue;
    }
    double total = 0;
    for (int64_t c = 0; c < plan.chunks; ++c) {
      const int64_t begin = c * plan.chunk_length;
      const int64_t end = begin + plan.chunk_length < per_output ? begin + plan.chunk_length : per_output;
      for (int t = 0; t < plan.threads; ++t)
        partial[t] = sum_strided_range<double>(x, layout, o, begin + t, end, plan.threads);
      for (int s = plan.threads / 2; s > 0; s >>= 1)
        for (int t = 0; t < s; ++t)
          partial[t] += partial[t + s];
      total = plan.chunks == 1 ? partial[0] : total + partial[0];
    }
    out[o] = static_cast<T>(total);
  }
}

}  // namespace icd::kernels
