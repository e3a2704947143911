// The arithmetic of every elementwise op and of its derivative, one element at a time. These bodies
// run unchanged in the CPU loops (engine/ops/elementwise.cpp) and in the CUDA kernels.
#pragma once
#include <cmath>

#include "engine/hd.h"

namespace icd::kernels {

// ---- binary forward: out = f(a, b)
struct AddOp {
  template <class T>
  ICD_HD T operator()(T a, T b) const {
    return a + b;
  }
};
struct SubOp {
  template <class T>
  ICD_HD T operator()(T a, T b) const {
    return a - b;
  }
};
struct MulOp {
  template <class T>
  ICD_HD T operator()(T a, T b) const {
    return a * b;
  }
};
struct DivOp {
  template <class T>
  ICD_HD T operator()(T a, T b) const {
    return a / b;
  }
};
struct PowOp {
  template <class T>
  ICD_HD T operator()(T a, T b) const {
    return std::pow(a, b);
  }
};
// NaN in either argument gives NaN, as torch.maximum / torch.minimum (a NaN compares false with everything,
// so a plain `a > b ? a : b` would drop a NaN in a).
struct MaximumOp {
  template <class T>
  ICD_HD T operator()(T a, T b) const {
    return a > b || a != a ? a : b;
  }
};
struct MinimumOp {
  template <class T>
  ICD_HD T operator()(T a, T b) const {
    return a < b || a != a ? a : b;
  }
};

// ---- comparisons: 1 where true, 0 where false, in the inputs' dtype
struct EqOp {
  template <class T>
  ICD_HD T operator()(T a, T b) const {
    return a == b ? T(1) : T(0);
  }
};
struct NeOp {
  template <class T>
  ICD_HD T operator()(T a, T b) const {
    return a != b ? T(1) : T(0);
  }
};
struct LtOp {
  template <class T>
  ICD_HD T operator()(T a, T b) const {
    return a < b ? T(1) : T(0);
  }
};
struct LeOp {
  template <class T>
  ICD_HD T operator()(T a, T b) const {
    return a <= b ? T(1) : T(0);
  }
};
struct GtOp {
  template <class T>
  ICD_HD T operator()(T a, T b) const {
    return a > b ? T(1) : T(0);
  }
};
struct GeOp {
  template <class T>
  ICD_HD T operator()(T a, T b) const {
    return a >= b ? T(1) : T(0);
  }
};

// ---- unary forward: y = f(x)
struct NegOp {
  template <class T>
  ICD_HD T operator()(T x) const {
    return -x;
  }
};
struct ExpOp {
  template <class T>
  ICD_HD T operator()(T x) const {
    return std::exp(x);
  }
};
struct LogOp {
  template <class T>
  ICD_HD T operator()(T x) const {
    return std::log(x);
  }
};
struct SqrtOp {
  template <class T>
  ICD_HD T operator()(T x) const {
    return std::sqrt(x);
  }
};
struct AbsOp {
  template <class T>
  ICD_HD T operator()(T x) const {
    return std::abs(x);
  }
};
struct ReluOp {
  template <class T>
  ICD_HD T operator()(T x) const {
    return x > T(0) ? x : T(0);
  }
};
struct TanhOp {
  template <class T>
  ICD_HD T operator()(T x) const {
    return std::tanh(x);
  }
};
// 1 / (1 + e^-x), written so that neither branch overflows.
struct SigmoidOp {
  template <class T>
  ICD_HD T operator()(T x) const {
    if (x >= T(0)) return T(1) / (T(1) + std::exp(-x));
    T e = std::exp(x);
    return e / (T(1) + e);
  }
};
struct PowScalarOp {
  double exponent;
  template <class T>
  ICD_HD T operator()(T x) const {
    return std::pow(x, static_cast<T>(exponent));
  }
};
struct ClampOp {
  double low, high;
  template <class T>
  ICD_HD T operator()(T x) const {
    return x < T(low) ? T(low) : (x > T(high) ? T(high) : x);
  }
};

// ---- in-place updates: dst = f(dst[, src]) (add_ and mul_)
struct AddScaledOp {
  double alpha;
  template <class T>
  ICD_HD T operator()(T dst, T src) const {
    return dst + static_cast<T>(alpha) * src;
  }
};
struct ScaleOp {
  double factor;
  template <class T>
  ICD_HD T operator()(T x) const {
    return x * static_cast<T>(factor);
  }
};

// ---- backward bodies: dL/dx from the incoming gradient g and a saved value (x or y)
struct ReluGradOp {
  template <class T>
  ICD_HD T operator()(T g, T x) const {
    return x > T(0) ? g : T(0);
  }
};
// d sigmoid / dx = y (1 - y), d tanh / dx = 1 - y^2: both from the saved output y.
struct SigmoidGradOp {
  template <class T>
  ICD_HD T operator()(T g, T y) const {
    return g * y * (T(1) - y);
  }
};
struct TanhGradOp {
  template <class T>
  ICD_HD T operator()(T g, T y) const {
    return g * (T(1) - y * y);
  }
};
struct SqrtGradOp {
  template <class T>
  ICD_HD T operator()(T g, T y) const {
    return g / (T(2) * y);
  }
};
struct AbsGradOp {
  template <class T>
  ICD_HD T operator()(T g, T x) const {
    return x > T(0) ? g : (x < T(0) ? -g : T(0));
  }
};
struct PowScalarGradOp {
  double exponent;
  template <class T>
  ICD_HD T operator()(T g, T x) const {
    return g * static_cast<T>(exponent) * std::pow(x, static_cast<T>(exponent - 1));
  }
};
// The gradient passes where the input was strictly inside [low, high] or on a bound it did not cross.
struct ClampGradOp {
  double low, high;
  template <class T>
  ICD_HD T operator()(T g, T x) const {
    return (x >= T(low) && x <= T(high)) ? g : T(0);
  }
};

// ---- data movement: copies (converting the dtype on assignment) and fills
struct CopyOp {
  template <class T>
  ICD_HD T operator()(T x) const {
    return x;
  }
};
template <class T>
struct ConstantOp {
  T value;
  ICD_HD T operator()() const { return value; }
};

// ---- selection
struct WhereOp {
  template <class T>
  ICD_HD T operator()(T condition, T a, T b) const {
    return condition != T(0) ? a : b;
  }
};

}  // namespace icd::kernels
