#include "engine/dispatch.h"

#include <stdexcept>
#include <string>

namespace icd {
namespace {

// The check behind op_device and common_device; `placement(arg)` gives an argument's (defined, device,
// dtype).
template <class Arg, class Placement>
Device shared_device(const char* op, std::initializer_list<Arg> args, Placement placement) {
  const Arg* first = nullptr;
  Device device;
  DType dtype = DType::f32;
  for (const Arg& arg : args) {
    auto [defined, arg_device, arg_dtype] = placement(arg);
    if (!defined) continue;
    if (!first) {
      first = &arg;
      device = arg_device;
      dtype = arg_dtype;
      continue;
    }
    if (arg_device != device)
      throw std::invalid_argument(std::string(op) + ": " + arg.name + " is on " + arg_device.str() + " but " +
                                  first->name + " is on " + device.str());
    if (arg_dtype != dtype)
      throw std::invalid_argument(std::string(op) + ": " + arg.name + " has dtype " + dtype_name(arg_dtype) +
                                  " but " + first->name + " has dtype " + dtype_name(dtype));
  }
  if (!first) throw std::invalid_argument(std::string(op) + ": no tensor arguments");
  return device;
}

struct Placement {
  bool defined;
  Device device;
  DType dtype;
};

}  // namespace

Device op_device(const char* op, std::initializer_list<OpArg> args) {
  return shared_device(op, args, [](const OpArg& arg) {
    return arg.tensor.defined() ? Placement{true, arg.tensor.device(), arg.tensor.dtype()}
                                : Placement{false, {}, {}};
  });
}

Device common_device(const char* op, std::initializer_list<OpPlacement> args) {
  return shared_device(op, args, [](const OpPlacement& arg) {
    return Placement{true, arg.device, arg.dtype};
  });
}

void require_cpu(const char* op, std::initializer_list<OpArg> args) {
  Device device = op_device(op, args);
  if (!device.is_cpu())
    throw std::runtime_error(std::string(op) + ": no CUDA kernel yet for this op (its tensors are on " +
                             device.str() + "); move them to the CPU with to_device");
}

std::string no_cuda_backend_message(const char* op) {
  return std::string(op) +
         ": the tensors are on a CUDA device, but this build has no CUDA backend (configured with "
         "ICD_CUDA=OFF or without nvcc)";
}

}  // namespace icd
