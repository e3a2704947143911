// The per-element arithmetic of the optimizers' updates (engine/optim/sgd.cpp and adamw.cpp state the
// math). The CPU loops and the CUDA kernels (engine/cuda/optimizer.cu) run these same bodies, so the CPU
// tests of the optimizers check the arithmetic the GPU runs.
#pragma once
#include <cmath>

#include "engine/hd.h"

namespace icd::kernels {

// SGD with momentum, one element: p and, with momentum, its buffer entry *b updated from the gradient g.
template <class T>
struct SgdUpdate {
  T lr, weight_decay, momentum, keep;  // keep = 1 - dampening
  bool nesterov, first;                // first: the buffer starts as a copy of d

  template <class U>
  ICD_HD SgdUpdate<U> as() const {
    return {U(lr), U(weight_decay), U(momentum), U(keep), nesterov, first};
  }
  ICD_HD void operator()(T& p, T g, T* b) const {
    T d = g + weight_decay * p;
    if (b) {
      const T next = first ? d : momentum * *b + keep * d;
      *b = next;
      d = nesterov ? d + momentum * next : next;
    }
    p = p - lr * d;
  }
};

// AdamW, one element: p, its first moment m and second moment v updated from the gradient g.
// neg_step = -lr / (1 - beta1^t); bias_correction2_sqrt = sqrt(1 - beta2^t); decay = 1 - lr weight_decay.
template <class T>
struct AdamWUpdate {
  T decay, beta1, one_minus_beta1, beta2, one_minus_beta2, eps, bias_correction2_sqrt, neg_step;

  template <class U>
  ICD_HD AdamWUpdate<U> as() const {
    return {U(decay),           U(beta1), U(one_minus_beta1),       U(beta2),
            U(one_minus_beta2), U(eps),   U(bias_correction2_sqrt), U(neg_step)};
  }
  ICD_HD void operator()(T& p, T g, T& m, T& v) const {
    const T decayed = p * decay;
    const T m_next = m * beta1 + one_minus_beta1 * g;
    const T v_next = v * beta2 + one_minus_beta2 * g * g;
    m = m_next;
    v = v_next;
    p = decayed + neg_step * (m_next / (std::sqrt(v_next) / bias_correction2_sqrt + eps));
  }
};

// Gradient clipping by value, one element.
template <class T>
ICD_HD T clip_to(T g, T low, T high) {
  return g < low ? low : (g > high ? high : g);
}

}  // namespace icd::kernels
