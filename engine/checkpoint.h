// Checkpoints in the safetensors format, readable by any safetensors reader:
//
//   [8 bytes: little-endian u64 N][N bytes: JSON header, space-padded][raw little-endian tensor data]
//   header = {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
//             "__metadata__": {"key": "string value", ...}}
//
// data_offsets are relative to the start of the data block; tensors are stored row-major, back to back.
// Our metadata always holds "format" = "icd-checkpoint" and "format_version"; callers add the model
// config, the step, and so on (values are strings, as the format requires; JSON-encode structured ones).
//
// Writing goes to a temporary file in the same folder that is fsync'ed and renamed over the target, so
// a crash mid-write never leaves a half-written checkpoint in place of a good one. Reading validates
// everything (sizes, offsets, dtypes, JSON) and names the file and the entry in every error.
#pragma once
#include <map>
#include <string>

#include "engine/tensor.h"

namespace icd {

constexpr int kCheckpointFormatVersion = 1;

struct Checkpoint {
  NamedTensors tensors;  // in file order
  std::map<std::string, std::string> metadata;
  // The tensor of that name; throws naming the file's tensors if absent.
  const Tensor& at(const std::string& name) const;
};

// Tensors on a GPU are copied to the host to be written; load_checkpoint returns host tensors (a
// Module's load_state_dict moves them to the module's device).
void save_checkpoint(const std::string& path, const NamedTensors& tensors,
                     const std::map<std::string, std::string>& metadata = {});
Checkpoint load_checkpoint(const std::string& path);

}  // namespace icd
