// Whether this process can use the CUDA backend, probed once on first call and then remembered.
// Declared for every build: engine/cuda/runtime.cpp asks the driver in a CUDA build (cudaGetDeviceCount,
// then a cuDNN handle: without a GPU the first reports an error or 0 devices and cudnnCreate returns
// CUDNN_STATUS_NOT_INITIALIZED), engine/cuda_status_without_cuda.cpp answers "no" in a build without CUDA.
// Tests and apps call it to skip GPU work, loudly, with `reason`.
#pragma once
#include <string>

namespace icd {

struct CudaStatus {
  bool available = false;
  int device_count = 0;     // devices cudaGetDeviceCount reported (0 when it failed)
  std::string reason;       // why the backend is unavailable; empty when available
  std::string device_name;  // device 0's name, when there is one
};

// Thread-safe; the probe runs once per process.
const CudaStatus& cuda_status();

}  // namespace icd
