// The CUDA runtime as the backend sees it: the one-time device probe (cuda_status(), declared in
// engine/cuda_status.h for every build) and the check every entry point makes before touching a device.
#pragma once
#include "engine/cuda_status.h"

namespace icd::cuda {

// Makes `device` current for this thread. Throws std::runtime_error naming `op` and cuda_status().reason
// when CUDA is unavailable, or naming the device count when the index is out of range.
void use_device(const char* op, int device);

}  // namespace icd::cuda
