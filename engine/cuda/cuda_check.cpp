#include "engine/cuda/cuda_check.h"

#include <stdexcept>
#include <string>

#include "engine/cuda/cublas_library.h"

namespace icd::cuda {
namespace {
[[noreturn]] void throw_error(const char* call, const char* name, int code, const char* description,
                              const char* file, int line) {
  throw std::runtime_error(std::string(call) + " failed: " + name + " (" + std::to_string(code) +
                           "): " + description + " at " + file + ":" + std::to_string(line));
}

}  // namespace

void throw_cuda_error(cudaError_t status, const char* call, const char* file, int line) {
  throw_error(call, cudaGetErrorName(status), int(status), cudaGetErrorString(status), file, line);
}

void throw_cublas_error(cublasStatus_t status, const char* call, const char* file, int line) {
  throw_error(call, cublas().status_name(status), int(status), cublas().status_string(status), file, line);
}

// cuDNN 9's cudnnGetErrorString gives the status's name; the details are in cudnnGetLastErrorString.
void throw_cudnn_error(cudnnStatus_t status, const char* call, const char* file, int line) {
  char details[512] = "";
  cudnnGetLastErrorString(details, sizeof details);
  throw_error(call, cudnnGetErrorString(status), int(status), details[0] ? details : "no details", file,
              line);
}

}  // namespace icd::cuda
