// A run's folder, runs/NAME/: the resolved config (config.json), metrics as JSON lines (metrics.jsonl,
// one object per logged step, flushed as written so a crash loses nothing already logged), checkpoints
// and pictures. Creating a RunFolder for an existing run reuses it (that is how resume finds its files).
#pragma once
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "engine/atomic_file.h"

namespace icd::app {

// A JSON file of a run (config.json, eval.json, ...), parsed; throws naming the file when it cannot be read
// or is not JSON.
nlohmann::json read_json_file(const std::string& path);

class RunFolder {
 public:
  explicit RunFolder(std::string path);
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

  // Writes config.json atomically (temp file + rename).
  void write_config(const nlohmann::json& config) const;
  // Appends one JSON object as a line to metrics.jsonl and flushes it.
  void log_metrics(const nlohmann::json& record);
  // Every record of metrics.jsonl, in order (for plots and for resuming).
  std::vector<nlohmann::json> read_metrics() const;
  // Drops records with "step" > step (after resuming from that step, those were never checkpointed).
  void truncate_metrics_after(int64_t step);

 private:
  std::string path_;
  std::ofstream metrics_;
};

}  // namespace icd::app
