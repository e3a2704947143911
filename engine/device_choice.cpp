#include "engine/device_choice.h"

#include <stdexcept>

#include "engine/cuda_status.h"

namespace icd {

Device parse_device(const std::string& text) {
  if (text == "cpu") return Device::cpu();
  if (text == "cuda") return Device::cuda(0);
  const std::string prefix = "cuda:";
  if (text.starts_with(prefix) && text.size() > prefix.size() && text.size() <= prefix.size() + 4 &&
      text.find_first_not_of("0123456789", prefix.size()) == std::string::npos)
    return Device::cuda(std::stoi(text.substr(prefix.size())));
  throw std::invalid_argument("device '" + text + "': expected cpu, cuda or cuda:N");
}

namespace {

std::string gpu_description(Device device, const CudaStatus& status) {
  std::string line = "device: " + device.str();
  if (device.index == 0 && !status.device_name.empty()) line += " (" + status.device_name + ")";
  return line;
}

}  // namespace

DeviceChoice choose_device(const std::string& text) {
  if (text == "cpu") return {Device::cpu(), "device: cpu"};  // no probe: it starts the CUDA runtime
  const CudaStatus& status = cuda_status();
  if (text == "auto") {
    if (status.available) return {Device::cuda(0), gpu_description(Device::cuda(0), status)};
    return {Device::cpu(), "device: cpu (no usable GPU: " + status.reason + ")"};
  }
  const Device device = parse_device(text);
  if (!status.available)
    throw std::runtime_error("device " + device.str() + ": CUDA is not available: " + status.reason);
  if (device.index >= status.device_count)
    throw std::runtime_error("device " + device.str() + ": this machine has " +
                             std::to_string(status.device_count) + " CUDA device(s)");
  return {device, gpu_description(device, status)};
}

}  // namespace icd
