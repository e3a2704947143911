#include "engine/cuda/cublas_library.h"

#include <dlfcn.h>

#include <stdexcept>
#include <string>

namespace icd::cuda {
namespace {

// The soname of the cuBLAS this build was compiled against (CUBLAS_VER_MAJOR from cublas_api.h).
const std::string kLibraryName = "libcublas.so." + std::to_string(CUBLAS_VER_MAJOR);

template <class Function>
void resolve(void* library, const char* symbol, Function& slot) {
  void* address = dlsym(library, symbol);
  if (!address) throw std::runtime_error(kLibraryName + " has no " + symbol + ": " + dlerror());
  slot = reinterpret_cast<Function>(address);
}

CublasLibrary open_cublas() {
  void* library = dlopen(kLibraryName.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!library) throw std::runtime_error("cannot open " + kLibraryName + " (cuBLAS): " + dlerror());
  // Kept open for the life of the process: handles created through it live until exit.
  CublasLibrary api{};
  resolve(library, "cublasCreate_v2", api.create);
  resolve(library, "cublasDestroy_v2", api.destroy);
  resolve(library, "cublasSetStream_v2", api.set_stream);
  resolve(library, "cublasSetMathMode", api.set_math_mode);
  resolve(library, "cublasSgemm_v2", api.sgemm);
  resolve(library, "cublasDgemm_v2", api.dgemm);
  resolve(library, "cublasSgemmStridedBatched", api.sgemm_strided_batched);
  resolve(library, "cublasDgemmStridedBatched", api.dgemm_strided_batched);
  resolve(library, "cublasGemmStridedBatchedEx", api.gemm_strided_batched_ex);
  resolve(library, "cublasGetStatusName", api.status_name);
  resolve(library, "cublasGetStatusString", api.status_string);
  return api;
}

}  // namespace

const CublasLibrary& cublas() {
  static const CublasLibrary api = open_cublas();  // a failed open throws and is retried on the next call
  return api;
}

}  // namespace icd::cuda
