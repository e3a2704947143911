// The f32 GEMM micro-kernel: a 6 x 16 block of C from packed panels of A and B (AVX2 + FMA).
//
// How a fast GEMM is built (GotoBLAS / BLIS). C += A B does M N K multiply-adds on M K + K N + M N
// values: each value of A is used N times and each value of B M times, so the work is limited by
// arithmetic, not memory, *if* every value is reused from the fastest level of memory that can hold it. The
// loops are therefore cut into blocks, each sized for one level of the memory hierarchy (Zen 4 per core: 16
// ymm registers, 32 KB L1d, 1 MB L2; 32 MB L3 shared):
//
//   for jc over N in steps of NC                     B block  KC x NC   lives in L3
//     for pc over K in steps of KC    pack B block
//       for ic over M in steps of MC  pack A block   A block  MC x KC   lives in L2
//         for jr over NC in steps of NR              B panel  KC x NR   lives in L1 (reused MC/MR times)
//           for ir over MC in steps of MR            A panel  MR x KC   streams from L2
//             micro-kernel: C[ir.., jr..] (MR x NR) += A panel * B panel    C tile lives in registers
//
// The micro-kernel keeps an MR x NR tile of C in registers for the whole KC loop. Per step k it loads
// one row of the B panel (NR = 16 floats = 2 ymm), broadcasts the MR = 6 values of column k of the A
// panel one at a time, and issues 6 x 2 = 12 FMAs: 12 accumulators + 2 B registers + 1 broadcast = 15 of
// the 16 ymm registers. Zen 4 retires 2 FMAs per cycle with a latency of 4 cycles, so at least 8
// independent accumulators are needed to keep both pipes busy; 12 gives slack. Each step does 8 loads
// (2 of B, 6 broadcasts) for 12 FMAs (6 cycles), well within the 2-3 loads per cycle the core can issue.
// An 8 x 16 tile would need 16 accumulators (no registers left for B); 4 x 24 also fits (12 + 3 + 1)
// and needs fewer loads, but M is the dimension that is often small here (64 output channels), and
// 6 x 16 is the classic Haswell/Zen shape (BLIS, OpenBLAS).
//
// Why packing. The micro-kernel wants both operands as contiguous streams in exactly the order it reads
// them: the A panel as KC columns of MR values (a[k MR + i] = A[i, k]), the B panel as KC rows of NR
// values (b[k NR + j] = B[k, j]), 64-byte aligned. Copying the blocks into this layout once costs
// O(MC KC + KC NC) and is amortised over O(MC KC NC) multiply-adds; it also turns a transposed input or
// a large leading dimension into the same contiguous stream (no TLB misses, no cache-set conflicts from
// power-of-two strides), and pads partial panels with zeros so the kernel never needs a bounds check.
//
// Block sizes. KC = 256: the B panel (KC x 16 floats = 16 KB) stays in half of L1 while the A panel
// (6 KB) streams through the other half. MC = 144 (a multiple of MR): the A block (144 x 256 floats =
// 144 KB) fits comfortably in L2 alongside the B panels passing through. NC = 4080 (a multiple of NR):
// the B block (4 MB) sits in the shared L3. The GEMM driver (gemm.cpp) splits K, M and N into equal
// blocks no larger than these, so a dimension slightly above a block size is not cut into a big and a
// tiny block. On this machine KC from 192 to 384 and MC from 96 to 288 measured within 2-3% of each
// other; the rest of the speed comes from the register tile and from cheap packing (sgemm_pack.cpp).
//
// Edges. Panels are zero-padded, so a partial tile (the last rows or columns of C) could run the full
// kernel into a scratch tile. But a 2-column tail (98 = 6 x 16 + 2 output positions in a conv2d task)
// would then cost a whole tile. kernel_edge computes only the rows and 8-column halves that hold results,
// each with enough independent accumulators to keep the FMA pipes busy.
#pragma once
#include <cstdint>

namespace icd::cpu::sgemm {

inline constexpr int64_t kMR = 6;     // rows of the register tile
inline constexpr int64_t kNR = 16;    // columns of the register tile (2 ymm of 8 floats)
inline constexpr int64_t kKC = 256;   // depth of a packed block (the micro-kernel's loop)
inline constexpr int64_t kMC = 144;   // rows of a packed A block
inline constexpr int64_t kNC = 4080;  // columns of a packed B block

// C[0..6, 0..16) = alpha * (a_panel * b_panel) + beta * C, with C at `c` and row stride `ldc`.
// a_panel: kc columns of kMR floats (a_panel[k kMR + i] = A[i, k]); b_panel: kc rows of kNR floats
// (b_panel[k kNR + j] = B[k, j]), 32-byte aligned. beta == 0 does not read C (NaNs are ignored).
// kc may be 0 (then C = beta C).
void kernel_6x16(int64_t kc, const float* a_panel, const float* b_panel, float* c, int64_t ldc, float alpha,
                 float beta);

// A partial tile at the bottom or right edge of C: tile[i kNR + j] = alpha * (a_panel * b_panel)[i, j]
// for i < rows <= kMR and j < cols <= kNR (or up to the next multiple of 8; the rest of the kMR x kNR
// tile, 32-byte aligned, is left as it was). The caller merges the valid part into C. Only the rows and
// 8-column halves that hold results are computed, so a 2-column tail costs half a full tile.
void kernel_edge(int64_t kc, const float* a_panel, const float* b_panel, int64_t rows, int64_t cols,
                 float alpha, float* tile);

}  // namespace icd::cpu::sgemm
