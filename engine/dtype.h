// Element types a tensor can hold. The CPU backend computes in f32 and f64 (f64 is what the gradient
// checks run in); i64 holds indices (argmax, gather, index_select) and is never differentiated;
// f16 and bf16 are storage types reserved for the CUDA backend's mixed precision.
#pragma once
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>

namespace icd {

enum class DType { f32, f64, i64, f16, bf16 };

inline std::size_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::f32:
      return 4;
    case DType::f64:
      return 8;
    case DType::i64:
      return 8;
    case DType::f16:
      return 2;
    case DType::bf16:
      return 2;
  }
  return 0;
}

inline const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::f32:
      return "f32";
    case DType::f64:
      return "f64";
    case DType::i64:
      return "i64";
    case DType::f16:
      return "f16";
    case DType::bf16:
      return "bf16";
  }
  return "?";
}

template <class T>
constexpr DType dtype_of();
template <>
constexpr DType dtype_of<float>() {
  return DType::f32;
}
template <>
constexpr DType dtype_of<double>() {
  return DType::f64;
}
template <>
constexpr DType dtype_of<int64_t>() {
  return DType::i64;
}

// Calls f(float{}) or f(double{}) according to `dtype`, so one generic lambda serves both CPU types:
//   dispatch_floating(x.dtype(), "relu", [&](auto tag) { using T = decltype(tag); ... });
template <class F>
decltype(auto) dispatch_floating(DType dtype, const char* op, F&& f) {
  switch (dtype) {
    case DType::f32:
      return f(float{});
    case DType::f64:
      return f(double{});
    default:
      break;
  }
  throw std::invalid_argument(std::string(op) + ": dtype " + dtype_name(dtype) +
                              " is not supported on this backend (f32 and f64 are)");
}

// As dispatch_floating, and also int64_t for i64 (for ops that only move data: copies, gathers).
template <class F>
decltype(auto) dispatch_all(DType dtype, const char* op, F&& f) {
  if (dtype == DType::i64) return f(int64_t{});
  return dispatch_floating(dtype, op, std::forward<F>(f));
}

}  // namespace icd
