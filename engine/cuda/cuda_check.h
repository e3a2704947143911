// Every CUDA, cuBLAS and cuDNN call is wrapped in one of these macros; a failure becomes a
// std::runtime_error that names the call as written, the status's name and description, and file:line:
//   ICD_CUDA_CHECK(cudaMalloc(&p, bytes));
//   -> "cudaMalloc(&p, bytes) failed: cudaErrorMemoryAllocation (2): out of memory at device_memory.cpp:20"
// Errors from kernels surface at the next call (launches are asynchronous), so a launch is followed by
// ICD_CUDA_CHECK(cudaGetLastError()) to catch at least bad launch configurations where they happen.
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <cudnn.h>

namespace icd::cuda {

[[noreturn]] void throw_cuda_error(cudaError_t status, const char* call, const char* file, int line);
[[noreturn]] void throw_cublas_error(cublasStatus_t status, const char* call, const char* file, int line);
[[noreturn]] void throw_cudnn_error(cudnnStatus_t status, const char* call, const char* file, int line);

}  // namespace icd::cuda

#define ICD_CUDA_CHECK(expr)                                                                               \
  do {                                                                                                     \
    cudaError_t icd_status_ = (expr);                                                                      \
    if (icd_status_ != cudaSuccess) ::icd::cuda::throw_cuda_error(icd_status_, #expr, __FILE__, __LINE__); \
  } while (0)

#define ICD_CUBLAS_CHECK(expr)                                                 \
  do {                                                                         \
    cublasStatus_t icd_status_ = (expr);                                       \
    if (icd_status_ != CUBLAS_STATUS_SUCCESS)                                  \
      ::icd::cuda::throw_cublas_error(icd_status_, #expr, __FILE__, __LINE__); \
  } while (0)

#define ICD_CUDNN_CHECK(expr)                                                 \
  do {                                                                        \
    cudnnStatus_t icd_status_ = (expr);                                       \
    if (icd_status_ != CUDNN_STATUS_SUCCESS)                                  \
      ::icd::cuda::throw_cudnn_error(icd_status_, #expr, __FILE__, __LINE__); \
  } while (0)
