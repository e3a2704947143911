// The progress line of long jobs: step/total, images/s, ETA and the current losses, redrawn in place
// on a terminal and printed every `every` steps otherwise (so logs stay readable).
#pragma once
#include <chrono>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace icd::app {

class ProgressLine {
 public:
  ProgressLine(std::string label, int64_t total_steps, int64_t images_per_step, int64_t start_step = 0);
  // Call after each step with its losses (name, value).
  void update(int64_t step, const std::vector<std::pair<std::string, double>>& losses);
  void finish();  // ends the line
  double seconds_elapsed() const;

 private:
  std::string label_;
  int64_t total_, images_per_step_, start_step_;
  std::chrono::steady_clock::time_point start_;
  bool tty_;
  int64_t last_printed_ = -1;
};

std::string format_duration(double seconds);  // "1h02m", "4m05s", "12s"

}  // namespace icd::app
