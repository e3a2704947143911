// cuBLAS for the CUDA backend: one handle per device and the row-major GEMMs the matrix-product ops
// use (engine/ops/matmul.cpp through engine/cuda_ops.h).
//
// The GEMMs have the contract of cpu::gemm (engine/cpu/gemm.h), on device memory:
//   C = alpha op(A) op(B) + beta C,  op(X) = X or X^T,  op(A): M x K,  op(B): K x N,  C: M x N, row-major,
// lda/ldb/ldc the row strides in elements as stored. They are mapped onto cuBLAS's column-major GEMM by
// kernels::column_major_gemm (engine/kernels/gemm_plan.h). beta = 0 ignores C's old contents.
//
// Precision: f32 products go to cublasSgemm with the handle in CUBLAS_DEFAULT_MATH, i.e. full FP32
// multiplies and FP32 accumulation. TF32 tensor cores (CUBLAS_TF32_TENSOR_OP_MATH) and the BF16x9
// emulation (CUBLAS_FP32_EMULATED_BF16X9_MATH) would round the inputs to fewer mantissa bits and break
// parity with the CPU backend (tests/test_cuda_parity.cpp), so they are never requested. f64 products go
// to cublasDgemm. f16 and bf16 (mixed precision, engine/autocast.h) go to cublasGemmStridedBatchedEx with
// 16-bit operands and output and CUBLAS_COMPUTE_32F: f32 accumulation, on tensor cores.
//
// Work is queued on the device's stream (engine/cuda/device_memory.h); the calls return at once. Errors:
// std::invalid_argument (naming `op`) for a dtype other than f32/f64 or inconsistent sizes, and
// std::runtime_error naming the cuBLAS call and its status when cuBLAS fails.
#pragma once
#include <cublas_v2.h>

#include <cstdint>

#include "engine/dtype.h"

namespace icd::cuda {

// The cuBLAS handle of `device`, created on first use with the device current, bound to the device's
// stream, in CUBLAS_DEFAULT_MATH. The handle's configuration never changes afterwards, which is what
// makes one handle safe to share among host threads (cuBLAS's thread-safety rule). Handles are destroyed
// at process exit, before the CUDA runtime's own teardown (see blas.cpp). Makes `device` current.
cublasHandle_t cublas_handle(int device);

// One product (see the contract above). K = 0 makes C = beta C: supported for beta = 0 (C is zeroed)
// and beta = 1 (C is left alone); other values of beta with K = 0 throw std::invalid_argument.
void gemm(const char* op, int device, DType dtype, bool trans_a, bool trans_b, int64_t M, int64_t N,
          int64_t K, double alpha, const void* A, int64_t lda, const void* B, int64_t ldb, double beta,
          void* C, int64_t ldc);

// `count` products of the same shape: product i reads A + i stride_a, B + i stride_b and writes
// C + i stride_c (strides in elements; stride_a or stride_b may be 0 to repeat one matrix, stride_c
// must keep the outputs apart). One cublas{S,D}gemmStridedBatched call.
void gemm_strided_batched(const char* op, int device, DType dtype, bool trans_a, bool trans_b, int64_t M,
                          int64_t N, int64_t K, double alpha, const void* A, int64_t lda, int64_t stride_a,
                          const void* B, int64_t ldb, int64_t stride_b, double beta, void* C, int64_t ldc,
                          int64_t stride_c, int64_t count);

}  // namespace icd::cuda
