// Which device a program runs on, from the text a user gives (every app's --device flag).
//
//   "auto"            the first GPU when the CUDA backend can be used (engine/cuda_status.h), else the CPU
//   "cpu"             the CPU
//   "cuda", "cuda:N"  GPU 0, GPU N: it must exist, or the error gives the probe's reason
#pragma once
#include <string>

#include "engine/device.h"

namespace icd {

// "cpu", "cuda" (device 0) or "cuda:N"; throws std::invalid_argument naming the text otherwise. Says
// nothing of whether the device exists.
Device parse_device(const std::string& text);

struct DeviceChoice {
  Device device;
  std::string description;  // one line for the user: which device, its name, and why (for "auto")
};

// Resolves `text` as above. Throws std::runtime_error when a named GPU cannot be used, with the reason.
DeviceChoice choose_device(const std::string& text);

}  // namespace icd
