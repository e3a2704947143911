// The one place an op learns which backend runs it. Every tensor argument of an op must share one
// device and one dtype; op_device() checks that and names the op and the offending tensor otherwise.
// Ops whose CUDA kernels are not written yet reject CUDA tensors here with a message that says so.
#pragma once
#include <initializer_list>

#include "engine/tensor.h"

namespace icd {

struct OpArg {
  const char* name;  // the argument's name in the op's signature, e.g. "weight"
  const Tensor& tensor;
};

// Checks that all defined arguments share the first one's device and dtype; returns that device.
Device op_device(const char* op, std::initializer_list<OpArg> args);
// As op_device, and additionally requires the CPU backend (the op has no CUDA kernel yet).
void require_cpu(const char* op, std::initializer_list<OpArg> args);

}  // namespace icd
