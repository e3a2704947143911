// cuBLAS, opened on first use rather than linked. Linking libcublas makes every program load
// libcublasLt at start-up, whose initialisation touches about 150 MB of memory: every run of every app,
// GPU or not, would carry it (measured: VmRSS 3 MB -> 154 MB for a program that only loads it). Opened
// with dlopen the first time a GEMM runs on the GPU, it costs nothing elsewhere.
//
// Each entry has the type of the cuBLAS function it stands for (declared by cublas_v2.h), so calls are
// checked by the compiler as if they went to cuBLAS directly: cublas().sgemm(handle, ...).
#pragma once
#include <cublas_v2.h>

namespace icd::cuda {

// cublas_api.h overloads cublasGemmStridedBatchedEx (an inline wrapper taking the legacy cudaDataType
// compute type), so its entry names the exported one by type; the static_cast in decltype (unevaluated: no
// link-time reference) has the compiler check that cuBLAS declares exactly this function.
using GemmStridedBatchedExFn = cublasStatus_t (*)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int,
                                                  int, int, const void*, const void*, cudaDataType, int,
                                                  long long int, const void*, cudaDataType, int,
                                                  long long int, const void*, void*, cudaDataType, int,
                                                  long long int, int, cublasComputeType_t, cublasGemmAlgo_t);

struct CublasLibrary {
  decltype(&cublasCreate_v2) create;
  decltype(&cublasDestroy_v2) destroy;
  decltype(&cublasSetStream_v2) set_stream;
  decltype(&cublasSetMathMode) set_math_mode;
  decltype(&cublasSgemm_v2) sgemm;
  decltype(&cublasDgemm_v2) dgemm;
  decltype(&cublasSgemmStridedBatched) sgemm_strided_batched;
  decltype(&cublasDgemmStridedBatched) dgemm_strided_batched;
  decltype(static_cast<GemmStridedBatchedExFn>(&cublasGemmStridedBatchedEx)) gemm_strided_batched_ex;
  decltype(&cublasGetStatusName) status_name;
  decltype(&cublasGetStatusString) status_string;
};

// The library, opened and resolved on the first call (thread-safe). Throws std::runtime_error naming the
// library file and the loader's reason when it is missing or lacks one of the functions.
const CublasLibrary& cublas();

}  // namespace icd::cuda
