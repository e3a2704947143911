// Every app's --device flag: "auto" (the default) runs on the first GPU when the CUDA backend can be used
// and on the CPU otherwise; "cpu", "cuda" or "cuda:N" choose (engine/device_choice.h). And the training
// apps' --precision flag (engine/autocast.h).
#pragma once
#include <CLI/CLI.hpp>
#include <string>

#include "engine/device.h"

namespace icd::app {

// Adds --device to `app`, writing into `text` (which holds the default, normally "auto").
void add_device_flag(CLI::App& app, std::string& text);

// Resolves the flag and prints one line saying which device is used (and, for auto on a machine without
// a usable GPU, why not a GPU). Throws when a named GPU cannot be used.
Device use_device_flag(const std::string& text);

// Adds --precision (f32, bf16 or f16; parse it with engine/autocast.h's parse_precision) to `app`.
void add_precision_flag(CLI::App& app, std::string& text);

}  // namespace icd::app
