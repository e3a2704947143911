// Elementwise ops with NumPy broadcasting, and their gradients (engine/ops/elementwise.cpp).
// All tensor arguments share one dtype and device. Comparisons return 1/0 in that dtype and carry no
// gradient. In-place ops (ending in _) never record a graph; they refuse a tensor that requires grad
// while grad mode is on, since changing it would corrupt the values its backward needs.
#pragma once
#include "engine/tensor.h"

namespace icd {

// The broadcast of two shapes: align right, sizes must match or be 1. `op` names the caller in errors.
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op);

Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor pow(const Tensor& a, const Tensor& b);  // a > 0 where b's gradient is needed
Tensor maximum(const Tensor& a, const Tensor& b);
Tensor minimum(const Tensor& a, const Tensor& b);
Tensor add(const Tensor& a, double b);
Tensor sub(const Tensor& a, double b);
Tensor mul(const Tensor& a, double b);
Tensor div(const Tensor& a, double b);
Tensor pow(const Tensor& x, double exponent);

Tensor neg(const Tensor& x);
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor sqrt(const Tensor& x);
Tensor abs(const Tensor& x);
Tensor relu(const Tensor& x);
Tensor sigmoid(const Tensor& x);
Tensor tanh(const Tensor& x);
Tensor clamp(const Tensor& x, double low, double high);

// condition != 0 ? a : b, broadcasting all three; no gradient flows into the condition.
Tensor where(const Tensor& condition, const Tensor& a, const Tensor& b);
// x where mask == 0, value where mask != 0 (mask broadcasts to x).
Tensor masked_fill(const Tensor& x, const Tensor& mask, double value);

Tensor eq(const Tensor& a, const Tensor& b);
Tensor ne(const Tensor& a, const Tensor& b);
Tensor lt(const Tensor& a, const Tensor& b);
Tensor le(const Tensor& a, const Tensor& b);
Tensor gt(const Tensor& a, const Tensor& b);
Tensor ge(const Tensor& a, const Tensor& b);
Tensor gt(const Tensor& a, double b);
Tensor lt(const Tensor& a, double b);

// In place, no graph: dst += alpha * src (src broadcasts to dst); dst = src; dst = value; dst *= s.
void add_(Tensor& dst, const Tensor& src, double alpha = 1.0);
void copy_(Tensor& dst, const Tensor& src);  // converts dtype if needed
void fill_(Tensor& dst, double value);
void mul_(Tensor& dst, double s);

inline Tensor operator+(const Tensor& a, const Tensor& b) {
  return add(a, b);
}
inline Tensor operator-(const Tensor& a, const Tensor& b) {
  return sub(a, b);
}
inline Tensor operator*(const Tensor& a, const Tensor& b) {
  return mul(a, b);
}
inline Tensor operator/(const Tensor& a, const Tensor& b) {
  return div(a, b);
}
inline Tensor operator+(const Tensor& a, double b) {
  return add(a, b);
}
inline Tensor operator-(const Tensor& a, double b) {
  return sub(a, b);
}
inline Tensor operator*(const Tensor& a, double b) {
  return mul(a, b);
}
inline Tensor operator/(const Tensor& a, double b) {
  return div(a, b);
}
inline Tensor operator*(double a, const Tensor& b) {
  return mul(b, a);
}
inline Tensor operator-(const Tensor& x) {
  return neg(x);
}

}  // namespace icd
