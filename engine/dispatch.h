// The one place an op learns which backend runs it. Every tensor argument of an op must share one
// device and one dtype; op_device() checks that and names the op and the offending tensor otherwise.
// An op with a CUDA kernel branches on the device op_device() returns (one check; the CPU path does no
// other work) and calls engine/cuda_ops.h for a CUDA device. Ops whose CUDA kernels are not written yet
// call require_cpu(), which rejects CUDA tensors with a message that says so.
#pragma once
#include <initializer_list>
#include <string>

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

// The same check as op_device over where arguments live and what they hold, without the tensors
// (for ops whose arguments may differ in dtype, e.g. copy_, and for tests on machines without a GPU).
struct OpPlacement {
  const char* name;
  Device device;
  DType dtype;
};
Device common_device(const char* op, std::initializer_list<OpPlacement> args);

// What an op says when it meets a CUDA tensor in a build without the CUDA backend.
std::string no_cuda_backend_message(const char* op);

}  // namespace icd
