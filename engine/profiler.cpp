#include "engine/profiler.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>

namespace icd::profiler {
namespace {

bool g_enabled = false;
int g_quiet = 0;  // open QuietOps
double g_last_mark = 0;
std::atomic<double> g_flops{0.0};
std::map<std::string, Entry>& table() {
  static std::map<std::string, Entry> entries;
  return entries;
}

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace

bool enabled() {
  return g_enabled;
}

void set_enabled(bool on) {
  g_enabled = on;
  g_last_mark = now_seconds();
}

void reset() {
  table().clear();
  g_flops = 0.0;
  g_last_mark = now_seconds();
}

void mark_op(const char* op) {
  if (!g_enabled || g_quiet > 0) return;
  const double t = now_seconds();
  charge(op, t - g_last_mark);
  g_last_mark = t;
}

void charge(const std::string& name, double seconds) {
  Entry& e = table()[name];
  e.name = name;
  e.seconds += seconds;
  ++e.calls;
}

void add_flops(double flops) {
  if (g_enabled) g_flops.fetch_add(flops, std::memory_order_relaxed);
}

double clock_seconds() {
  return now_seconds();
}

QuietOps::QuietOps(bool active) : active_(active) {
  if (active_) ++g_quiet;
}

QuietOps::~QuietOps() {
  if (active_ && --g_quiet == 0) g_last_mark = now_seconds();
}

Section::Section(std::string name) : name_(std::move(name)), quiet_(g_enabled) {
  if (g_enabled) start_ = now_seconds();
}

Section::~Section() {
  if (start_ > 0) charge(name_, now_seconds() - start_);
}

std::vector<Entry> totals() {
  std::vector<Entry> out;
  for (const auto& [name, e] : table())
    out.push_back(e);
  std::sort(out.begin(), out.end(), [](const Entry& a, const Entry& b) { return a.seconds > b.seconds; });
  return out;
}

double flops() {
  return g_flops.load();
}

}  // namespace icd::profiler
