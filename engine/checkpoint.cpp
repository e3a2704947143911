#include "engine/checkpoint.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <stdexcept>

#include "engine/atomic_file.h"
#include "engine/factory.h"
#include "engine/ops/elementwise.h"
#include "engine/transfer.h"

namespace icd {
namespace {

// The header is read into memory whole: refuse absurd lengths from corrupt files before allocating.
constexpr uint64_t kMaxHeaderBytes = 100u << 20;

const char* safetensors_dtype(DType dtype) {
  switch (dtype) {
    case DType::f32:
      return "F32";
    case DType::f64:
      return "F64";
    case DType::i64:
      return "I64";
    case DType::f16:
      return "F16";
    case DType::bf16:
      return "BF16";
  }
  return "?";
}

DType parse_dtype(const std::string& name, const std::string& context) {
  for (DType d : {DType::f32, DType::f64, DType::i64, DType::f16, DType::bf16})
    if (name == safetensors_dtype(d)) return d;
  throw std::runtime_error(context + ": unsupported dtype \"" + name + "\"");
}

}  // namespace

const Tensor& Checkpoint::at(const std::string& name) const {
  for (const auto& [n, t] : tensors)
    if (n == name) return t;
  std::string names;
  for (const auto& [n, t] : tensors)
    names += (names.empty() ? "" : ", ") + n;
  throw std::out_of_range("checkpoint has no tensor '" + name + "' (it has: " + names + ")");
}

void save_checkpoint(const std::string& path, const NamedTensors& tensors,
                     const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header;
  nlohmann::ordered_json meta = nlohmann::ordered_json::object();
  meta["format"] = "icd-checkpoint";
  meta["format_version"] = std::to_string(kCheckpointFormatVersion);
  for (const auto& [k, v] : metadata)
    meta[k] = v;
  header["__metadata__"] = meta;
  std::vector<Tensor> contiguous;
  std::set<std::string> seen;
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    if (name == "__metadata__" || !seen.insert(name).second)
      throw std::invalid_argument("save_checkpoint " + path + ": duplicate or reserved tensor name '" + name +
                                  "'");
    Tensor c = to_device(t.detach(), Device::cpu()).contiguous();  // a GPU tensor's values via the host
    uint64_t bytes = static_cast<uint64_t>(c.numel()) * dtype_size(c.dtype());
    header[name] = {{"dtype", safetensors_dtype(c.dtype())},
                    {"shape", c.shape()},
                    {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
    contiguous.push_back(c);
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // align the data block to 8 bytes
  const uint64_t header_len = text.size();

  AtomicFileWriter file(path);
  unsigned char len_bytes[8];
  for (int i = 0; i < 8; ++i)
    len_bytes[i] = static_cast<unsigned char>(header_len >> (8 * i));
  file.write(len_bytes, 8);
  file.write(text.data(), text.size());
  for (const Tensor& c : contiguous)
    file.write(c.raw_data(), c.numel() * dtype_size(c.dtype()));
  file.commit();
}

Checkpoint load_checkpoint(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("checkpoint " + path + ": cannot open (" + std::strerror(errno) + ")");
  in.seekg(0, std::ios::end);
  const uint64_t file_size = static_cast<uint64_t>(in.tellg());
  in.seekg(0);
  const std::string where = "checkpoint " + path;
  if (file_size < 8)
    throw std::runtime_error(where + ": truncated (" + std::to_string(file_size) + " bytes)");
  unsigned char len_bytes[8];
  in.read(reinterpret_cast<char*>(len_bytes), 8);
  uint64_t header_len = 0;
  for (int i = 0; i < 8; ++i)
    header_len |= static_cast<uint64_t>(len_bytes[i]) << (8 * i);
  if (header_len > kMaxHeaderBytes || header_len > file_size - 8)
    throw std::runtime_error(where + ": header length " + std::to_string(header_len) +
                             " does not fit the file of " + std::to_string(file_size) +
                             " bytes (truncated or not a safetensors file)");
  std::string text(header_len, '\0');
  in.read(text.data(), static_cast<std::streamsize>(header_len));
  nlohmann::ordered_json header;
  try {
    header = nlohmann::ordered_json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error(where + ": corrupt JSON header (" + e.what() + ")");
  }
  if (!header.is_object()) throw std::runtime_error(where + ": the header is not a JSON object");
  const uint64_t data_size = file_size - 8 - header_len;

  Checkpoint checkpoint;
  struct Span {
    uint64_t begin, end;
    std::string name;
  };
  std::vector<Span> spans;
  for (const auto& [name, entry] : header.items()) {
    const std::string ctx = where + ", tensor '" + name + "'";
    if (name == "__metadata__") {
      if (!entry.is_object()) throw std::runtime_error(where + ": __metadata__ is not an object");
      for (const auto& [k, v] : entry.items()) {
        if (!v.is_string()) throw std::runtime_error(where + ": metadata '" + k + "' is not a string");
        checkpoint.metadata[k] = v.get<std::string>();
      }
      continue;
    }
    if (!entry.is_object() || !entry.contains("dtype") || !entry.contains("shape") ||
        !entry.contains("data_offsets"))
      throw std::runtime_error(ctx + ": needs dtype, shape and data_offsets");
    if (!entry["dtype"].is_string()) throw std::runtime_error(ctx + ": dtype is not a string");
    DType dtype = parse_dtype(entry["dtype"].get<std::string>(), ctx);
    Shape shape;
    for (const auto& s : entry["shape"]) {
      if (!s.is_number_integer() || s.get<int64_t>() < 0) throw std::runtime_error(ctx + ": bad shape");
      shape.push_back(s.get<int64_t>());
    }
    const auto& offsets = entry["data_offsets"];
    if (!offsets.is_array() || offsets.size() != 2 || !offsets[0].is_number_unsigned() ||
        !offsets[1].is_number_unsigned())
      throw std::runtime_error(ctx + ": data_offsets must be two non-negative integers");
    uint64_t begin = offsets[0].get<uint64_t>(), end = offsets[1].get<uint64_t>();
    if (begin > end || end > data_size)
      throw std::runtime_error(ctx + ": data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
                               ") outside the data block of " + std::to_string(data_size) +
                               " bytes (truncated?)");
    if (end - begin != static_cast<uint64_t>(shape_numel(shape)) * dtype_size(dtype))
      throw std::runtime_error(ctx + ": shape " + shape_str(shape) + " " + dtype_name(dtype) + " needs " +
                               std::to_string(shape_numel(shape) * dtype_size(dtype)) +
                               " bytes but data_offsets span " + std::to_string(end - begin));
    if (dtype == DType::f16 || dtype == DType::bf16)
      throw std::runtime_error(ctx + ": dtype " + dtype_name(dtype) + " cannot be loaded on the CPU backend");
    Tensor t = empty(shape, {dtype});
    in.seekg(static_cast<std::streamoff>(8 + header_len + begin));
    in.read(static_cast<char*>(t.raw_data()), static_cast<std::streamsize>(end - begin));
    if (!in) throw std::runtime_error(ctx + ": read failed (truncated file)");
    spans.push_back({begin, end, name});
    checkpoint.tensors.emplace_back(name, t);
  }
  // The format forbids overlapping tensors and holes: the spans must tile the data block exactly.
  std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) { return a.begin < b.begin; });
  uint64_t cursor = 0;
  for (const Span& s : spans) {
    if (s.begin != cursor)
      throw std::runtime_error(where + ": tensor '" + s.name +
                               "' overlaps another or leaves a hole in the data block");
    cursor = s.end;
  }
  if (cursor != data_size)
    throw std::runtime_error(where + ": " + std::to_string(data_size - cursor) +
                             " unexplained bytes after the tensors");
  return checkpoint;
}

}  // namespace icd
