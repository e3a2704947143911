// classify: the top ImageNet classes of photos, from a ResNet checkpoint written by apps/import_weights.
//
// The checkpoint says how to build the model ("model_config") and how to make its input ("input"):
// for the Keras ResNet-50 that is a resize of the whole photo to 224x224 (no crop), RGB -> BGR, 0..255
// values minus the caffe mean [103.939, 116.779, 123.68], no division by a std. The resize is plain
// bilinear by default (torch's interpolate(mode='bilinear', align_corners=False), engine/ops/resize.h);
// --resize antialiased is PIL's BILINEAR filter (torch's antialias=True), which widens when shrinking
// (chelsea.png: Egyptian cat with 0.931 plain, 0.959 antialiased). The model runs in eval mode with
// FrozenBatchNorm2d (the running statistics, eps from the config); softmax over the logits gives the
// probabilities.
//
// Read first: apps/import_weights.cpp (what the checkpoint holds), models/resnet.h, engine/ops/resize.h.
//
// Example:
//   scripts/fetch_weights.sh && ./build/apps/import_weights
//   ./build/apps/classify ~/.cache/icd/images/skimage/chelsea.png ~/.cache/icd/images/skimage/coffee.png
//   ./build/apps/classify --weights runs/weights/resnet50_imagenet.safetensors --top 3 --json runs/top.json
//       photo.jpg
//
// --json writes [{"image", "top": [{"class", "name", "probability"}, ...]}, ...] to a temporary file and
// renames it, so a reader never sees half a file.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

#include "apps/common/device_flag.h"
#include "datasets/image_io.h"
#include "engine/atomic_file.h"
#include "engine/autograd.h"
#include "engine/checkpoint.h"
#include "engine/factory.h"
#include "engine/ops/reduce.h"
#include "engine/ops/resize.h"
#include "engine/transfer.h"
#include "models/resnet.h"

using namespace icd;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

[[noreturn]] void fail(const std::string& message) {
  throw std::runtime_error("classify: " + message);
}

json metadata_json(const Checkpoint& checkpoint, const std::string& key, const std::string& path) {
  auto it = checkpoint.metadata.find(key);
  if (it == checkpoint.metadata.end())
    fail(path + " has no '" + key + "' metadata; write it with apps/import_weights");
  try {
    return json::parse(it->second);
  } catch (const json::exception& e) {
    fail(path + ": metadata '" + key + "' is not valid JSON: " + e.what());
  }
}

// The checkpoint's "norm" and "freeze_at" matter for training only: in eval mode BatchNorm2d and
// FrozenBatchNorm2d compute the same, and the latter needs no num_batches_tracked.
ResNetConfig resnet_config(const json& config, const std::string& path) {
  try {
    return {.depth = config.at("depth").get<int>(),
            .blocks = config.value("blocks", std::vector<int>{}),  // absent: the depth's standard plan
            .stride_on_3x3 = config.at("stride_on_3x3").get<bool>(),
            .conv_bias = config.at("conv_bias").get<bool>(),
            .norm = NormKind::frozen_batch_norm,
            .norm_eps = config.at("norm_eps").get<double>(),
            .freeze_at = 0,
            .num_classes = config.at("num_classes").get<int64_t>()};
  } catch (const json::exception& e) {
    fail(path + ": metadata 'model_config' " + config.dump() + " is incomplete: " + e.what());
  }
}

// How a photo becomes the model's input, as the checkpoint's "input" metadata says.
struct InputRecipe {
  bool bgr = false;
  float mean[3] = {0, 0, 0}, std[3] = {1, 1, 1};  // in the model's channel order
  int64_t height = 224, width = 224;
};

InputRecipe input_recipe(const json& input, const std::string& path) {
  InputRecipe recipe;
  try {
    const std::string order = input.at("channel_order").get<std::string>();
    if (order != "RGB" && order != "BGR") fail(path + ": unknown channel_order '" + order + "'");
    recipe.bgr = order == "BGR";
    const auto range = input.at("value_range").get<std::vector<double>>();
    if (range != std::vector<double>{0, 255}) fail(path + ": only 0..255 input values are supported");
    const auto means = input.at("mean").get<std::vector<float>>();
    const auto stds = input.at("std").get<std::vector<float>>();
    const auto size = input.at("image_size").get<std::vector<int64_t>>();
    if (means.size() != 3 || stds.size() != 3 || size.size() != 2)
      fail(path + ": input metadata needs 3 means, 3 stds and [height, width]");
    std::copy(means.begin(), means.end(), recipe.mean);
    std::copy(stds.begin(), stds.end(), recipe.std);
    recipe.height = size[0];
    recipe.width = size[1];
  } catch (const json::exception& e) {
    fail(path + ": metadata 'input' " + input.dump() + " is incomplete: " + e.what());
  }
  return recipe;
}

// PIL's BILINEAR resize, also torch's interpolate(mode='bilinear', antialias=True): when shrinking by a
// factor s > 1 the triangle filter is widened to s input pixels, so every input pixel contributes
// (plain bilinear reads only the 2 nearest and aliases). Output pixel i has centre c = s (i + 0.5) in
// input coordinates and weights max(0, 1 - |j + 0.5 - c| / max(s, 1)) over the input pixels j within
// max(s, 1) of c, normalised to sum 1. Separable: rows first, then columns.
struct FilterTaps {
  std::vector<int64_t> first;               // first input index per output index
  std::vector<std::vector<float>> weights;  // normalised weights from `first` on
};

FilterTaps antialiased_taps(int64_t in, int64_t out) {
  const double scale = static_cast<double>(in) / static_cast<double>(out);
  const double support = std::max(scale, 1.0);
  FilterTaps taps;
  for (int64_t i = 0; i < out; ++i) {
    const double centre = scale * (static_cast<double>(i) + 0.5);
    const int64_t lo = std::max<int64_t>(static_cast<int64_t>(centre - support + 0.5), 0);
    const int64_t hi = std::min<int64_t>(static_cast<int64_t>(centre + support + 0.5), in);
    std::vector<float> w;
    double total = 0;
    for (int64_t j = lo; j < hi; ++j) {
      const double weight = std::max(0.0, 1.0 - std::abs((static_cast<double>(j) - centre + 0.5) / support));
      w.push_back(static_cast<float>(weight));
      total += weight;
    }
    for (float& weight : w)
      weight = static_cast<float>(weight / total);
    taps.first.push_back(lo);
    taps.weights.push_back(std::move(w));
  }
  return taps;
}

// x: [1, C, H, W] row-major -> [1, C, out_h, out_w].
Tensor resize_antialiased(const Tensor& x, int64_t out_h, int64_t out_w) {
  const int64_t channels = x.size(1), in_h = x.size(2), in_w = x.size(3);
  const FilterTaps across = antialiased_taps(in_w, out_w), down = antialiased_taps(in_h, out_h);
  Tensor rows = empty({channels, in_h, out_w}), out = empty({1, channels, out_h, out_w});
  const float* src = x.data<float>();
  float* mid = rows.data<float>();
  float* dst = out.data<float>();
  for (int64_t c = 0; c < channels; ++c) {
    for (int64_t y = 0; y < in_h; ++y)
      for (int64_t i = 0; i < out_w; ++i) {
        const float* row = src + (c * in_h + y) * in_w + across.first[i];
        float sum = 0;
        for (std::size_t k = 0; k < across.weights[i].size(); ++k)
          sum += across.weights[i][k] * row[k];
        mid[(c * in_h + y) * out_w + i] = sum;
      }
    for (int64_t i = 0; i < out_h; ++i)
      for (int64_t x_out = 0; x_out < out_w; ++x_out) {
        float sum = 0;
        for (std::size_t k = 0; k < down.weights[i].size(); ++k)
          sum +=
              down.weights[i][k] * mid[(c * in_h + down.first[i] + static_cast<int64_t>(k)) * out_w + x_out];
        dst[(c * out_h + i) * out_w + x_out] = sum;
      }
  }
  return out;
}

enum class Resize { bilinear, antialiased };

// [1, 3, H, W] float, resized and normalised as the recipe says.
Tensor make_input(const Image& image, const InputRecipe& recipe, Resize resize) {
  const int64_t h = image.height, w = image.width, plane = h * w;
  Tensor pixels = empty({1, 3, h, w});
  float* out = pixels.data<float>();
  for (int64_t i = 0; i < plane; ++i)
    for (int c = 0; c < 3; ++c) {
      const int source_channel = recipe.bgr ? 2 - c : c;
      out[c * plane + i] = static_cast<float>(image.pixels[static_cast<size_t>(i * 3 + source_channel)]);
    }
  // Both resizes are affine in the values (weights sum to 1), so normalising afterwards is the same.
  Tensor resized =
      resize == Resize::antialiased
          ? resize_antialiased(pixels, recipe.height, recipe.width)
          : interpolate_bilinear(pixels, recipe.height, recipe.width, /*align_corners=*/false).contiguous();
  float* values = resized.data<float>();
  const int64_t resized_plane = recipe.height * recipe.width;
  for (int c = 0; c < 3; ++c)
    for (int64_t i = 0; i < resized_plane; ++i)
      values[c * resized_plane + i] = (values[c * resized_plane + i] - recipe.mean[c]) / recipe.std[c];
  return resized;
}

struct Prediction {
  int64_t index;
  double probability;
};

std::vector<Prediction> top_k(const Tensor& probabilities, int k) {
  const std::vector<float> p = probabilities.to_vector<float>();
  std::vector<int64_t> order(p.size());
  std::iota(order.begin(), order.end(), 0);
  const auto count = std::min<std::size_t>(static_cast<std::size_t>(std::max(k, 0)), order.size());
  std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(count), order.end(),
                    [&](int64_t a, int64_t b) { return p[a] > p[b] || (p[a] == p[b] && a < b); });
  std::vector<Prediction> top;
  for (std::size_t i = 0; i < count; ++i)
    top.push_back({order[i], p[static_cast<std::size_t>(order[i])]});
  return top;
}

void write_json_atomically(const json& value, const fs::path& path) {
  if (path.has_parent_path()) fs::create_directories(path.parent_path());
  write_file_atomically(path.string(), value.dump(1) + "\n");
}

struct Options {
  std::string weights = "runs/weights/resnet50_imagenet.safetensors";
  std::vector<std::string> images;
  int top = 5;
  Resize resize = Resize::bilinear;
  std::string json_path;
  std::string device = "auto";
};

void classify(const Options& options) {
  const Checkpoint checkpoint = load_checkpoint(options.weights);
  const ResNetConfig config =
      resnet_config(metadata_json(checkpoint, "model_config", options.weights), options.weights);
  if (config.num_classes <= 0)
    fail(options.weights + " holds a backbone without a classifier (num_classes 0)");
  const InputRecipe recipe =
      input_recipe(metadata_json(checkpoint, "input", options.weights), options.weights);
  std::vector<std::string> class_names;
  if (checkpoint.metadata.count("class_names"))
    class_names = metadata_json(checkpoint, "class_names", options.weights).get<std::vector<std::string>>();

  Generator gen(0);
  ResNet model(config, gen);
  model.load_state_dict(checkpoint.tensors);
  const Device device = icd::app::use_device_flag(options.device);
  model.to(device);
  model.eval();
  NoGradGuard no_grad;

  json results = json::array();
  for (const std::string& path : options.images) {
    const auto start = std::chrono::steady_clock::now();
    const Image image = read_image(path);
    const Tensor logits = model.forward(to_device(make_input(image, recipe, options.resize), device)).logits;
    const std::vector<Prediction> top = top_k(softmax(logits, 1).select(0, 0), options.top);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

    std::printf("%s (%dx%d, %.2f s)\n", path.c_str(), image.width, image.height, seconds);
    json entry = {{"image", path}, {"top", json::array()}};
    for (const Prediction& p : top) {
      const std::string name =
          p.index < static_cast<int64_t>(class_names.size()) ? class_names[static_cast<size_t>(p.index)] : "";
      std::printf("  %4lld  %.4f  %s\n", static_cast<long long>(p.index), p.probability, name.c_str());
      entry["top"].push_back({{"class", p.index}, {"name", name}, {"probability", p.probability}});
    }
    results.push_back(entry);
  }
  if (!options.json_path.empty()) write_json_atomically(results, options.json_path);
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  CLI::App app{"Top ImageNet classes of photos, with a ResNet checkpoint from apps/import_weights"};
  app.add_option("images", options.images, "PNG, JPEG or BMP files")->required()->check(CLI::ExistingFile);
  app.add_option("--weights", options.weights, "checkpoint written by apps/import_weights")
      ->capture_default_str()
      ->check(CLI::ExistingFile);
  app.add_option("--top", options.top, "how many classes to print per image")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000));
  app.add_option("--resize", options.resize,
                 "bilinear: plain, as torch's interpolate(align_corners=False); antialiased: PIL's BILINEAR")
      ->capture_default_str()
      ->transform(CLI::CheckedTransformer(std::map<std::string, Resize>{
          {"bilinear", Resize::bilinear}, {"antialiased", Resize::antialiased}}));
  app.add_option("--json", options.json_path, "also write the results to this JSON file");
  icd::app::add_device_flag(app, options.device);
  CLI11_PARSE(app, argc, argv);

  try {
    classify(options);
  } catch (const std::exception& e) {
    std::cerr << e.what() << '\n';
    return 1;
  }
  return 0;
}
