#include "apps/common/run_folder.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <stdexcept>

namespace icd::app {

nlohmann::json read_json_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot read " + path + ": " + std::strerror(errno));
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error(path + " is not JSON (" + e.what() + ")");
  }
}

RunFolder::RunFolder(std::string path) : path_(std::move(path)) {
  std::error_code ec;
  std::filesystem::create_directories(path_, ec);
  if (ec) throw std::runtime_error("cannot create run folder " + path_ + ": " + ec.message());
}

void RunFolder::write_config(const nlohmann::json& config) const {
  write_file_atomically(file("config.json"), config.dump(2) + "\n");
}

void RunFolder::log_metrics(const nlohmann::json& record) {
  if (!metrics_.is_open()) {
    metrics_.open(file("metrics.jsonl"), std::ios::app);
    if (!metrics_)
      throw std::runtime_error("cannot open " + file("metrics.jsonl") + ": " + std::strerror(errno));
  }
  metrics_ << record.dump() << "\n";
  metrics_.flush();
}

std::vector<nlohmann::json> RunFolder::read_metrics() const {
  std::vector<nlohmann::json> records;
  std::ifstream in(file("metrics.jsonl"));
  std::string line;
  int64_t number = 0;
  while (std::getline(in, line)) {
    ++number;
    if (line.empty()) continue;
    try {
      records.push_back(nlohmann::json::parse(line));
    } catch (const nlohmann::json::exception&) {
      // A line cut short by a crash is the only way a record can be malformed: keep what came before.
      if (in.peek() == std::char_traits<char>::eof()) break;
      throw std::runtime_error(file("metrics.jsonl") + ": line " + std::to_string(number) + " is not JSON");
    }
  }
  return records;
}

void RunFolder::truncate_metrics_after(int64_t step) {
  std::vector<nlohmann::json> kept;
  for (auto& r : read_metrics())
    if (!r.contains("step") || r["step"].get<int64_t>() <= step) kept.push_back(std::move(r));
  std::string text;
  for (const auto& r : kept)
    text += r.dump() + "\n";
  if (metrics_.is_open()) metrics_.close();
  write_file_atomically(file("metrics.jsonl"), text);
}

}  // namespace icd::app
