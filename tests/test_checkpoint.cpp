// Safetensors checkpoints: round trips, metadata, and every kind of damaged file.
#include <doctest/doctest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "engine/checkpoint.h"
#include "engine/factory.h"
#include "temp_dir.h"

using namespace icd;
namespace fs = std::filesystem;

namespace {


std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out << bytes;
}

std::string error_of(const std::string& path) {
  try {
    load_checkpoint(path);
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "";
}

NamedTensors sample_tensors() {
  Generator gen(1);
  return {{"layer1.0.conv1.weight", randn({4, 3, 3, 3}, gen)},
          {"bn.running_var", rand({4}, gen, {DType::f64})},
          {"steps", from_vector(std::vector<int64_t>{3, -7}, {2})},
          {"scalar", scalar_tensor(2.5)}};
}

}  // namespace

TEST_CASE("round trip keeps names, order, dtypes, shapes, values and metadata") {
  testing::TempDir dir("checkpoint");
  std::string path = dir.file("a.safetensors");
  NamedTensors tensors = sample_tensors();
  save_checkpoint(path, tensors, {{"step", "42"}, {"config", "{\"depth\": 18}"}});
  Checkpoint loaded = load_checkpoint(path);
  REQUIRE(loaded.tensors.size() == tensors.size());
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    CHECK(loaded.tensors[i].first == tensors[i].first);
    CHECK(loaded.tensors[i].second.dtype() == tensors[i].second.dtype());
    CHECK(loaded.tensors[i].second.shape() == tensors[i].second.shape());
    CHECK(loaded.tensors[i].second.to_vector<double>() == tensors[i].second.to_vector<double>());
  }
  CHECK(loaded.metadata.at("step") == "42");
  CHECK(loaded.metadata.at("config") == "{\"depth\": 18}");
  CHECK(loaded.metadata.at("format") == "icd-checkpoint");
  CHECK(loaded.metadata.at("format_version") == std::to_string(kCheckpointFormatVersion));
  CHECK(loaded.at("steps").to_vector<int64_t>() == std::vector<int64_t>{3, -7});
  CHECK_THROWS_AS(loaded.at("nope"), std::out_of_range);
  // The header is 8-byte aligned, as the reference implementation writes it.
  std::string bytes = read_bytes(path);
  uint64_t header_len = 0;
  for (int i = 0; i < 8; ++i)
    header_len |= static_cast<uint64_t>(static_cast<unsigned char>(bytes[i])) << (8 * i);
  CHECK(header_len % 8 == 0);
}

TEST_CASE("non-contiguous tensors are written row-major") {
  testing::TempDir dir("checkpoint");
  Tensor t = arange(6, {DType::f64}).reshape({2, 3}).transpose(0, 1);
  save_checkpoint(dir.file("t.safetensors"), {{"t", t}});
  Tensor back = load_checkpoint(dir.file("t.safetensors")).at("t");
  CHECK(back.shape() == Shape{3, 2});
  CHECK(back.to_vector<double>() == std::vector<double>{0, 3, 1, 4, 2, 5});
}

TEST_CASE("a truncated file is rejected at every cut, naming the file") {
  testing::TempDir dir("checkpoint");
  std::string good = dir.file("good.safetensors");
  save_checkpoint(good, sample_tensors());
  std::string bytes = read_bytes(good);
  for (std::size_t cut : {std::size_t{0}, std::size_t{5}, std::size_t{8}, std::size_t{40}, bytes.size() / 2,
                          bytes.size() - 1}) {
    std::string bad = dir.file("cut.safetensors");
    write_bytes(bad, bytes.substr(0, cut));
    std::string err = error_of(bad);
    INFO("cut at " << cut);
    CHECK(err.find(bad) != std::string::npos);
  }
}

TEST_CASE("corrupt headers, wrong dtypes and size mismatches are rejected") {
  testing::TempDir dir("checkpoint");
  std::string good = dir.file("good.safetensors");
  save_checkpoint(good, {{"w", zeros({2, 2})}});
  std::string bytes = read_bytes(good);
  std::string bad = dir.file("bad.safetensors");

  std::string flipped = bytes;
  flipped[9] = '#';  // inside the JSON
  write_bytes(bad, flipped);
  CHECK(error_of(bad).find("corrupt JSON header") != std::string::npos);

  std::string huge_len = bytes;
  huge_len[7] = '\x7f';
  write_bytes(bad, huge_len);
  CHECK(error_of(bad).find("header length") != std::string::npos);

  auto with_header = [&](std::string edit_from, std::string edit_to) {
    std::string b = bytes;
    std::size_t at = b.find(edit_from);
    REQUIRE(at != std::string::npos);
    b.replace(at, edit_from.size(), edit_to);
    write_bytes(bad, b);
    return error_of(bad);
  };
  CHECK(with_header("\"F32\"", "\"Q32\"").find("unsupported dtype") != std::string::npos);
  CHECK(with_header("[2,2]", "[2,3]").find("needs 24 bytes") != std::string::npos);
  CHECK(with_header("[0,16]", "[0,12]").find("tensor 'w'") != std::string::npos);
  CHECK(error_of(dir.file("missing.safetensors")).find("cannot open") != std::string::npos);
}

TEST_CASE("a failed save leaves the previous checkpoint intact and no temporary file") {
  testing::TempDir dir("checkpoint");
  std::string path = dir.file("ckpt.safetensors");
  save_checkpoint(path, {{"w", ones({3})}});
  CHECK_THROWS_AS(save_checkpoint(path, {{"w", zeros({3})}, {"w", zeros({3})}}), std::invalid_argument);
  CHECK(load_checkpoint(path).at("w").to_vector<float>() == std::vector<float>{1, 1, 1});
  int files = 0;
  for (const auto& entry : fs::directory_iterator(dir.path())) {
    (void)entry;
    ++files;
  }
  CHECK(files == 1);
  CHECK_THROWS_AS(save_checkpoint(dir.file("no/such/dir/x.safetensors"), {{"w", ones({1})}}),
                  std::runtime_error);
}

TEST_CASE("a file written by an independent numpy writer (tools/safetensors_numpy.py) loads") {
  Checkpoint c = load_checkpoint(std::string(ICD_FIXTURE_DIR) + "/checkpoint/from_python.safetensors");
  CHECK(c.metadata.at("written_by") == "tools/safetensors_numpy.py");
  Tensor w = c.at("conv.weight");
  CHECK(w.dtype() == DType::f32);
  CHECK(w.shape() == Shape{2, 3, 2, 2});
  CHECK(w.to_vector<float>()[23] == 23.0f / 8);
  CHECK(c.at("bn.running_mean").to_vector<double>() == std::vector<double>{0.1, -0.2, 1e-300});
  CHECK(c.at("index").to_vector<int64_t>() == std::vector<int64_t>{1, -2, 3, int64_t{1} << 40});
}
