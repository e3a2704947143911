#include "engine/cuda/runtime.h"

#include <stdexcept>
#include <string>

#include "engine/cuda/cuda_check.h"

namespace icd {
namespace {
// Without a GPU, cudaGetDeviceCount fails (no driver: cudaErrorInsufficientDriver; driver but no device:
// cudaErrorNoDevice) or reports 0 devices. A device that cudart lists may still be unusable by cuDNN
// (cudnnCreate then returns CUDNN_STATUS_NOT_INITIALIZED), and conv layers need cuDNN, so a handle is
// created and destroyed here as the last check.
CudaStatus probe() {
  CudaStatus status;
  cudaError_t error = cudaGetDeviceCount(&status.device_count);
  if (error != cudaSuccess) {
    status.device_count = 0;
    status.reason = std::string("cudaGetDeviceCount failed: ") + cudaGetErrorName(error) + " (" +
                    std::to_string(int(error)) + "): " + cudaGetErrorString(error);
    cudaGetLastError();  // clear it, so the next unrelated check does not report it again
    return status;
  }
  if (status.device_count == 0) {
    status.reason = "cudaGetDeviceCount reported 0 devices";
    return status;
  }
  cudaDeviceProp properties{};
  if (cudaGetDeviceProperties(&properties, 0) == cudaSuccess)
    status.device_name = properties.name;
  else
    cudaGetLastError();  // no name then; clear the error, so no later check reports it
  cudnnHandle_t handle = nullptr;
  cudnnStatus_t cudnn = cudnnCreate(&handle);
  if (cudnn != CUDNN_STATUS_SUCCESS) {
    status.reason = std::string("cudnnCreate failed: ") + cudnnGetErrorString(cudnn) + " (" +
                    std::to_string(int(cudnn)) + ") on " + std::to_string(status.device_count) + " device(s)";
    return status;
  }
  cudnnDestroy(handle);
  status.available = true;
  return status;
}
}  // namespace

const CudaStatus& cuda_status() {
  static const CudaStatus status = probe();  // C++ guarantees one thread runs the probe
  return status;
}

namespace cuda {

void use_device(const char* op, int device) {
  const CudaStatus& status = cuda_status();
  if (!status.available)
    throw std::runtime_error(std::string(op) + ": CUDA is not available: " + status.reason);
  if (device < 0 || device >= status.device_count)
    throw std::runtime_error(std::string(op) + ": device cuda:" + std::to_string(device) +
                             " does not exist (" + std::to_string(status.device_count) + " device(s))");
  ICD_CUDA_CHECK(cudaSetDevice(device));
}

}  // namespace cuda
}  // namespace icd
