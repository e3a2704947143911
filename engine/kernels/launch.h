// The CPU launch of a kernel body: the plain loop that runs an ICD_HD functor over every element, as
// the CUDA kernels (engine/cuda/elementwise.cu) run the same functor once per thread. Tests call these
// on every machine, so the arithmetic the GPU runs is checked where there is no GPU.
#pragma once
#include <cstdint>

#include "engine/hd.h"

namespace icd::kernels {

// out[i] = f(a[i], b[i]) for i < n over contiguous arrays; out may alias a or b.
template <class F, class T>
ICD_HD void cpu_launch_binary(F f, const T* a, const T* b, T* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i)
    out[i] = f(a[i], b[i]);
}

}  // namespace icd::kernels
