// Rounding to the 16-bit floating formats of mixed precision, bit by bit, as the GPU converts
// (__float2half_rn, __float2bfloat16_rn: round to nearest, ties to even). The values stay f32: a
// rounded value is the f32 that the 16-bit number equals exactly, so f32 arithmetic on rounded operands
// is what a tensor core does with 16-bit inputs and f32 accumulation (the product of two 16-bit
// mantissas fits an f32 mantissa).
//
//   f16  IEEE binary16: sign, 5 exponent bits (bias 15), 10 mantissa bits. Largest finite 65504;
//        normal down to 2^-14, subnormal down to 2^-24; from 65520 (65504 plus half an ulp) on: inf.
//   bf16 bfloat16: the top half of an f32 (sign, the same 8 exponent bits, 7 mantissa bits), so the
//        range is f32's and only the mantissa is rounded.
// NaN stays NaN (quiet), infinities stay infinite, the sign of zero is kept.
#pragma once
#include <cstdint>
#include <cstring>

#include "engine/hd.h"

namespace icd::kernels {

ICD_HD uint32_t float_bits(float x) {
  uint32_t u;
  memcpy(&u, &x, sizeof u);
  return u;
}

ICD_HD float bits_float(uint32_t u) {
  float x;
  memcpy(&x, &u, sizeof x);
  return x;
}

ICD_HD uint16_t f32_to_bf16_bits(float x) {
  const uint32_t u = float_bits(x);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x0040u);  // quiet NaN
  // Adding 0x7fff (plus 1 when the kept part is odd) carries into bit 16 exactly when the dropped half
  // is above the midpoint, or at it with an odd kept part: ties to even. A carry into the exponent is
  // the right rounding up, up to infinity.
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

ICD_HD float bf16_bits_to_f32(uint16_t b) {
  return bits_float(static_cast<uint32_t>(b) << 16);
}

ICD_HD uint16_t f32_to_f16_bits(float x) {
  const uint32_t u = float_bits(x);
  const uint32_t sign = (u >> 16) & 0x8000u, a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u);   // NaN
  if (a >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // >= 65520: rounds to inf
  if (a < 0x38800000u) {
    // Below 2^-14: a subnormal f16 m 2^-24 (or zero). x = mantissa 2^(e - 150), so m = mantissa >>
    // (126 - e), rounded to nearest even on the bits shifted out; m = 0x400 is the smallest normal.
    const uint32_t e = a >> 23;
    const uint32_t shift = 126u - e;
    if (shift > 24u) return static_cast<uint16_t>(sign);  // below 2^-25: rounds to zero
    const uint32_t mantissa = (a & 0x7fffffu) | 0x800000u;
    uint32_t m = mantissa >> shift;
    const uint32_t rest = mantissa & ((1u << shift) - 1u), half = 1u << (shift - 1u);
    if (rest > half || (rest == half && (m & 1u))) ++m;
    return static_cast<uint16_t>(sign | m);
  }
  // Normal: the exponent rebiased from 127 to 15, the 13 low mantissa bits rounded away (ties to even);
  // a carry into the exponent is the right rounding up.
  const uint32_t rounded = a + 0x0fffu + ((a >> 13) & 1u);
  return static_cast<uint16_t>(sign | ((rounded - (112u << 23)) >> 13));
}

ICD_HD float f16_bits_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
  if (e == 0) {  // zero or subnormal: m 2^-24, exact in f32
    const float magnitude = static_cast<float>(m) * 5.9604644775390625e-8f;
    return sign ? -magnitude : magnitude;
  }
  if (e == 31) return bits_float(sign | 0x7f800000u | (m << 13));  // inf, NaN
  return bits_float(sign | ((e + 112u) << 23) | (m << 13));
}

// The nearest f16 / bf16 value, as an f32.
ICD_HD float round_to_f16(float x) {
  return f16_bits_to_f32(f32_to_f16_bits(x));
}
ICD_HD float round_to_bf16(float x) {
  return bf16_bits_to_f32(f32_to_bf16_bits(x));
}

// Unary functors for the elementwise machinery (engine/kernels/unary_op.h). Defined for f32, the only
// dtype mixed precision rounds; the f64 instantiation the dispatch needs goes through f32 as well.
struct RoundF16Op {
  template <class T>
  ICD_HD T operator()(T x) const {
    return static_cast<T>(round_to_f16(static_cast<float>(x)));
  }
};
struct RoundBf16Op {
  template <class T>
  ICD_HD T operator()(T x) const {
    return static_cast<T>(round_to_bf16(static_cast<float>(x)));
  }
};

// Conversions between f32 and 16-bit storage (the bits of an f16 / bf16 in a uint16_t), for copies
// between tensors of those dtypes on the GPU.
struct F32ToF16Bits {
  ICD_HD uint16_t operator()(float x) const { return f32_to_f16_bits(x); }
};
struct F16BitsToF32 {
  ICD_HD float operator()(uint16_t h) const { return f16_bits_to_f32(h); }
};
struct F32ToBf16Bits {
  ICD_HD uint16_t operator()(float x) const { return f32_to_bf16_bits(x); }
};
struct Bf16BitsToF32 {
  ICD_HD float operator()(uint16_t b) const { return bf16_bits_to_f32(b); }
};

}  // namespace icd::kernels
