#include "apps/common/device_flag.h"

#include <iostream>

#include "engine/device_choice.h"

namespace icd::app {

void add_device_flag(CLI::App& app, std::string& text) {
  app.add_option("--device", text, "auto (the GPU when there is one, else the CPU), cpu, cuda or cuda:N")
      ->capture_default_str();
}

Device use_device_flag(const std::string& text) {
  const DeviceChoice choice = choose_device(text);
  std::cout << choice.description << std::endl;
  return choice.device;
}

void add_precision_flag(CLI::App& app, std::string& text) {
  app.add_option(
         "--precision", text,
         "f32, or mixed precision for convolutions and matrix products: bf16, or f16 with loss scaling")
      ->check(CLI::IsMember({"f32", "bf16", "f16"}))
      ->capture_default_str();
}

}  // namespace icd::app
