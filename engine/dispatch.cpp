#include "engine/dispatch.h"

#include <stdexcept>
#include <string>

namespace icd {

Device op_device(const char* op, std::initializer_list<OpArg> args) {
  const Tensor* first = nullptr;
  const char* first_name = "";
  for (const OpArg& arg : args) {
    if (!arg.tensor.defined()) continue;
    if (!first) {
      first = &arg.tensor;
      first_name = arg.name;
      continue;
    }
    if (arg.tensor.device() != first->device())
      throw std::invalid_argument(std::string(op) + ": " + arg.name + " is on " + arg.tensor.device().str() +
                                  " but " + first_name + " is on " + first->device().str());
    if (arg.tensor.dtype() != first->dtype())
      throw std::invalid_argument(std::string(op) + ": " + arg.name + " has dtype " +
                                  dtype_name(arg.tensor.dtype()) + " but " + first_name + " has dtype " +
                                  dtype_name(first->dtype()));
  }
  if (!first) throw std::invalid_argument(std::string(op) + ": no tensor arguments");
  return first->device();
}

void require_cpu(const char* op, std::initializer_list<OpArg> args) {
  Device device = op_device(op, args);
  if (!device.is_cpu())
    throw std::runtime_error(std::string(op) + ": no kernel for device " + device.str() + " in this build");
}

}  // namespace icd
