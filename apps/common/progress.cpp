#include "apps/common/progress.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>

namespace icd::app {

std::string format_duration(double seconds) {
  const int64_t s = static_cast<int64_t>(seconds + 0.5);
  char buf[32];
  if (s >= 3600)
    std::snprintf(buf, sizeof buf, "%lldh%02lldm", static_cast<long long>(s / 3600),
                  static_cast<long long>(s % 3600 / 60));
  else if (s >= 60)
    std::snprintf(buf, sizeof buf, "%lldm%02llds", static_cast<long long>(s / 60),
                  static_cast<long long>(s % 60));
  else
    std::snprintf(buf, sizeof buf, "%llds", static_cast<long long>(s));
  return buf;
}

ProgressLine::ProgressLine(std::string label, int64_t total_steps, int64_t images_per_step,
                           int64_t start_step)
    : label_(std::move(label)),
      total_(total_steps),
      images_per_step_(images_per_step),
      start_step_(start_step),
      start_(std::chrono::steady_clock::now()),
      tty_(::isatty(STDOUT_FILENO) != 0) {}

double ProgressLine::seconds_elapsed() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

void ProgressLine::update(int64_t step, const std::vector<std::pair<std::string, double>>& losses) {
  const int64_t done = step - start_step_;
  const double elapsed = seconds_elapsed();
  const double per_step = done > 0 ? elapsed / static_cast<double>(done) : 0.0;
  // Off a terminal, print about 50 lines per run plus the last step.
  const int64_t every = std::max<int64_t>(1, total_ / 50);
  if (!tty_ && step != total_ && step - last_printed_ < every) return;
  last_printed_ = step;
  std::string text = label_ + " " + std::to_string(step) + "/" + std::to_string(total_);
  char buf[96];
  std::snprintf(buf, sizeof buf, "  %.1f img/s  ETA %s", per_step > 0 ? images_per_step_ / per_step : 0.0,
                format_duration(per_step * static_cast<double>(total_ - step)).c_str());
  text += buf;
  for (const auto& [name, value] : losses) {
    std::snprintf(buf, sizeof buf, "  %s %.4f", name.c_str(), value);
    text += buf;
  }
  if (tty_)
    std::printf("\r%s\033[K", text.c_str());
  else
    std::printf("%s\n", text.c_str());
  std::fflush(stdout);
}

void ProgressLine::finish() {
  if (tty_) std::printf("\n");
  std::printf("%s done in %s\n", label_.c_str(), format_duration(seconds_elapsed()).c_str());
  std::fflush(stdout);
}

}  // namespace icd::app
