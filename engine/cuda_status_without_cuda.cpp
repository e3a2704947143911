// cuda_status() for a build without the CUDA backend (engine/cuda/runtime.cpp probes the driver in a CUDA
// build).
#include "engine/cuda_status.h"

namespace icd {

const CudaStatus& cuda_status() {
  static const CudaStatus status{false, 0, "built without CUDA (ICD_CUDA=OFF or no nvcc)", ""};
  return status;
}

}  // namespace icd
