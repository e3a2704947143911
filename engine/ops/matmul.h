// Matrix products (engine/ops/matmul.cpp), through engine/cpu/gemm.h on the CPU and cuBLAS
// (engine/cuda/blas.h) on CUDA tensors.
//
// Transposed inputs and sub-matrices with a row stride (a.transpose(-1, -2), w.t(), narrow of columns)
// go to the GEMM as they are, with a transpose flag and a leading dimension: no copy. Only a matrix
// whose elements are strided in both directions (or broadcast inside the matrix) is copied first.
// All arguments share one dtype (f32 or f64) and device. Outputs are new row-major tensors. Inside an
// AutocastGuard (engine/autocast.h) f32 operands and results are rounded to bf16/f16.
#pragma once
#include "engine/tensor.h"

namespace icd {

// torch.matmul:
//   1-D x 1-D: the dot product, a 0-d tensor.      2-D x 2-D: the matrix product [M, K] x [K, N] -> [M, N].
//   1-D a: treated as [1, K], the 1 removed after.  1-D b: treated as [K, 1], the 1 removed after.
//   N-D: batched over the leading dims, which broadcast (NumPy rules): [..., M, K] x [..., K, N].
Tensor matmul(const Tensor& a, const Tensor& b);

// Batched product without broadcasting: [B, M, K] x [B, K, N] -> [B, M, N].
Tensor bmm(const Tensor& a, const Tensor& b);

// A fully connected layer in torch's layout: y = x W^T + b, x [..., in], weight [out, in], bias [out]
// or undefined (no bias); y [..., out].
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor());

}  // namespace icd
