#include "engine/cuda/blas.h"

#include <climits>
#include <cstddef>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "engine/cuda/cublas_library.h"
#include "engine/cuda/cuda_check.h"
#include "engine/cuda/device_memory.h"
#include "engine/kernels/gemm_plan.h"

namespace icd::cuda {
namespace {

// The handles of all devices, created on demand. The one instance is constructed on the first call of
// cublas_handle, after that call has started the CUDA runtime (through cuda_stream) and opened cuBLAS
// (engine/cuda/cublas_library.h), so exit, which runs teardown in the reverse order of registration,
// destroys the handles before cuBLAS's and the runtime's own teardown. The streams they are bound to are
// never destroyed (engine/cuda/device_memory.h). A failure while destroying at exit is ignored: nothing
// could act on it.
class CublasHandles {
 public:
  CublasHandles() = default;
  CublasHandles(const CublasHandles&) = delete;
  CublasHandles& operator=(const CublasHandles&) = delete;
  ~CublasHandles() {
    for (std::size_t device = 0; device < handles_.size(); ++device)
      if (handles_[device] && cudaSetDevice(static_cast<int>(device)) == cudaSuccess)
        cublas().destroy(handles_[device]);
  }

  // `device` is current and `stream` is its stream.
  cublasHandle_t get(int device, cudaStream_t stream) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (handles_.size() <= static_cast<std::size_t>(device)) handles_.resize(device + 1, nullptr);
    cublasHandle_t& handle = handles_[device];
    if (!handle) {
      cublasHandle_t created = nullptr;
      ICD_CUBLAS_CHECK(cublas().create(&created));
      try {
        ICD_CUBLAS_CHECK(cublas().set_stream(created, stream));
        // No TF32 and no emulation (see blas.h, Precision); and 16-bit GEMMs (autocast) must not add
        // split-K partial sums in their 16-bit output type, so each result is rounded once from f32.
        ICD_CUBLAS_CHECK(cublas().set_math_mode(
            created, static_cast<cublasMath_t>(CUBLAS_DEFAULT_MATH |
                                               CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION)));
      } catch (...) {
        cublas().destroy(created);
        throw;
      }
      handle = created;
    }
    return handle;
  }

 private:
  std::mutex mutex_;
  std::vector<cublasHandle_t> handles_;
};

// C_i = beta C_i for K = 0 (an empty sum): zeros for beta = 0, nothing for beta = 1.
void scale_without_products(const char* op, int device, std::size_t element, int64_t M, int64_t N,
                            double beta, void* C, int64_t ldc, int64_t stride_c, int64_t count) {
  if (beta == 1.0) return;
  if (beta != 0.0)
    throw std::invalid_argument(std::string(op) + " (cuBLAS GEMM): K = 0 with beta = " +
                                std::to_string(beta) + " is not supported (only beta 0 or 1)");
  cudaStream_t stream = cuda_stream(device);
  if (ldc == N && stride_c == M * N) {
    ICD_CUDA_CHECK(cudaMemsetAsync(C, 0, element * static_cast<std::size_t>(count * M * N), stream));
    return;
  }
  for (int64_t i = 0; i < count; ++i)
    ICD_CUDA_CHECK(cudaMemset2DAsync(static_cast<char*>(C) + element * static_cast<std::size_t>(i * stride_c),
                                     element * static_cast<std::size_t>(ldc), 0,
                                     element * static_cast<std::size_t>(N), static_cast<std::size_t>(M),
                                     stream));
}

void run_gemm(const char* op, int device, DType dtype, bool trans_a, bool trans_b, int64_t M, int64_t N,
              int64_t K, double alpha, const void* A, int64_t lda, int64_t stride_a, const void* B,
              int64_t ldb, int64_t stride_b, double beta, void* C, int64_t ldc, int64_t stride_c,
              int64_t count) {
  if (dtype != DType::f32 && dtype != DType::f64 && dtype != DType::f16 && dtype != DType::bf16)
    throw std::invalid_argument(std::string(op) + " (cuBLAS GEMM): takes f32, f64, f16 or bf16, got " +
                                dtype_name(dtype));
  const kernels::ColumnMajorGemm g = kernels::column_major_gemm(trans_a, trans_b, M, N, K, lda, ldb, ldc, op);
  if (count < 0)
    throw std::invalid_argument(std::string(op) + " (cuBLAS GEMM): negative batch count " +
                                std::to_string(count));
  if (M == 0 || N == 0 || count == 0) return;
  if (count > 1 && stride_c < (M - 1) * ldc + N)
    throw std::invalid_argument(std::string(op) + " (cuBLAS GEMM): output stride " +
                                std::to_string(stride_c) + " makes the " + std::to_string(M) + " x " +
                                std::to_string(N) + " outputs overlap");
  if (K == 0) {
    scale_without_products(op, device, dtype_size(dtype), M, N, beta, C, ldc, stride_c, count);
    return;
  }
  // cuBLAS's GEMMs take int sizes (only the batch strides are 64-bit).
  for (int64_t value : {g.m, g.n, g.k, g.ld_first, g.ld_second, g.ldc, count})
    if (value > INT_MAX)
      throw std::invalid_argument(std::string(op) + " (cuBLAS GEMM): a size or leading dimension of " +
                                  std::to_string(value) + " exceeds cuBLAS's 32-bit limit");
  auto i = [](int64_t value) { return static_cast<int>(value); };
  cublasHandle_t handle = cublas_handle(device);
  const cublasOperation_t op_first = g.trans_first ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_second = g.trans_second ? CUBLAS_OP_T : CUBLAS_OP_N;
  // Column-major C^T = op(B)^T op(A)^T: B is cuBLAS's first operand (see engine/kernels/gemm_plan.h).
  // cublasSgemm in the handle's CUBLAS_DEFAULT_MATH computes in full FP32 (see blas.h, Precision).
  if (dtype == DType::f32) {
    const float alpha32 = static_cast<float>(alpha), beta32 = static_cast<float>(beta);
    const float* first = static_cast<const float*>(B);
    const float* second = static_cast<const float*>(A);
    float* out = static_cast<float*>(C);
    if (count == 1)
      ICD_CUBLAS_CHECK(cublas().sgemm(handle, op_first, op_second, i(g.m), i(g.n), i(g.k), &alpha32, first,
                                      i(g.ld_first), second, i(g.ld_second), &beta32, out, i(g.ldc)));
    else
      ICD_CUBLAS_CHECK(cublas().sgemm_strided_batched(
          handle, op_first, op_second, i(g.m), i(g.n), i(g.k), &alpha32, first, i(g.ld_first), stride_b,
          second, i(g.ld_second), stride_a, &beta32, out, i(g.ldc), stride_c, i(count)));
  } else if (dtype == DType::f16 || dtype == DType::bf16) {
    // Mixed precision (engine/autocast.h): 16-bit operands and output, f32 accumulation (tensor cores
    // allowed: with 16-bit inputs they lose nothing), each output rounded once from its f32 sum.
    const float alpha32 = static_cast<float>(alpha), beta32 = static_cast<float>(beta);
    const cudaDataType type = dtype == DType::f16 ? CUDA_R_16F : CUDA_R_16BF;
    ICD_CUBLAS_CHECK(cublas().gemm_strided_batched_ex(
        handle, op_first, op_second, i(g.m), i(g.n), i(g.k), &alpha32, B, type, i(g.ld_first), stride_b, A,
        type, i(g.ld_second), stride_a, &beta32, C, type, i(g.ldc), stride_c, i(count), CUBLAS_COMPUTE_32F,
        CUBLAS_GEMM_DEFAULT));
  } else {
    const double* first = static_cast<const double*>(B);
    const double* second = static_cast<const double*>(A);
    double* out = static_cast<double*>(C);
    if (count == 1)
      ICD_CUBLAS_CHECK(cublas().dgemm(handle, op_first, op_second, i(g.m), i(g.n), i(g.k), &alpha, first,
                                      i(g.ld_first), second, i(g.ld_second), &beta, out, i(g.ldc)));
    else
      ICD_CUBLAS_CHECK(cublas().dgemm_strided_batched(
          handle, op_first, op_second, i(g.m), i(g.n), i(g.k), &alpha, first, i(g.ld_first), stride_b, second,
          i(g.ld_second), stride_a, &beta, out, i(g.ldc), stride_c, i(count)));
  }
}

}  // namespace

cublasHandle_t cublas_handle(int device) {
  cudaStream_t stream = cuda_stream(device);  // checks the device, makes it current, starts the runtime
  cublas();                                   // opens cuBLAS (or throws saying why it cannot)
  static CublasHandles handles;               // constructed after both: see CublasHandles
  return handles.get(device, stream);
}

void gemm(const char* op, int device, DType dtype, bool trans_a, bool trans_b, int64_t M, int64_t N,
          int64_t K, double alpha, const void* A, int64_t lda, const void* B, int64_t ldb, double beta,
          void* C, int64_t ldc) {
  run_gemm(op, device, dtype, trans_a, trans_b, M, N, K, alpha, A, lda, 0, B, ldb, 0, beta, C, ldc, M * ldc,
           1);
}

void gemm_strided_batched(const char* op, int device, DType dtype, bool trans_a, bool trans_b, int64_t M,
                          int64_t N, int64_t K, double alpha, const void* A, int64_t lda, int64_t stride_a,
                          const void* B, int64_t ldb, int64_t stride_b, double beta, void* C, int64_t ldc,
                          int64_t stride_c, int64_t count) {
  run_gemm(op, device, dtype, trans_a, trans_b, M, N, K, alpha, A, lda, stride_a, B, ldb, stride_b, beta, C,
           ldc, stride_c, count);
}

}  // namespace icd::cuda
