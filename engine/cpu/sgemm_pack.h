// Packing for the f32 GEMM: copies a block of op(A) or op(B) into the panel layout the micro-kernel
// streams through (see sgemm_kernel.h for why). A transposed operand and a plain one differ only in
// their strides, and only these routines see the difference.
#pragma once
#include <cstdint>

namespace icd::cpu::sgemm {

// op(X): element (r, c) is data[r * row_stride + c * col_stride]; (ld, 1) for a matrix stored as it is
// used, (1, ld) for one stored transposed. One of the two strides is 1.
struct Operand {
  const float* data;
  int64_t row_stride, col_stride;
};

// Floats past the end of the packed A block that pack_a may overwrite (it stores 8 lanes where the
// panel layout needs 6): allocate the buffer this much larger.
inline constexpr int64_t kPackSlack = 8;

// Packs rows [m0, m0 + mc) x columns [k0, k0 + kc) of op(A) into ceil(mc / kMR) panels at dst:
// panel p (at dst + p kMR kc) holds rows m0 + p kMR .. + kMR as kc columns of kMR values
// (dst[p kMR kc + k kMR + i] = op(A)[m0 + p kMR + i, k0 + k]); rows past the block are zero.
void pack_a(const Operand& a, int64_t m0, int64_t mc, int64_t k0, int64_t kc, float* dst);

// Packs rows [k0, k0 + kc) x columns [n0, n0 + nc) of op(B) into ceil(nc / kNR) panels at dst, 32-byte
// aligned: panel p (at dst + p kNR kc) holds columns n0 + p kNR .. + kNR as kc rows of kNR values
// (dst[p kNR kc + k kNR + j] = op(B)[k0 + k, n0 + p kNR + j]); columns past the block are zero.
void pack_b(const Operand& b, int64_t k0, int64_t kc, int64_t n0, int64_t nc, float* dst);

}  // namespace icd::cpu::sgemm
