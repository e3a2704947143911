// Moving tensors between devices (CPU <-> CUDA). The values are copied into new storage on the target
// device in row-major order; the result is a leaf with no autograd history and requires_grad off (as
// torch's t.detach().to(device)). A tensor already on `device` is returned as it is.
#pragma once
#include "engine/device.h"
#include "engine/tensor.h"

namespace icd {

// Throws std::runtime_error naming the devices and the reason when the target (or source) device cannot
// be used, e.g. "cuda:0: CUDA is not available: ..." on a machine without a GPU. Any view may be moved:
// it is made contiguous on its own device first.
Tensor to_device(const Tensor& t, Device device);

}  // namespace icd
