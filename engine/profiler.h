// Where the time of a step goes, op by op, and how many FLOPs it did (apps/bench --profile).
//
// Off by default; when off it costs one branch per op. When on:
//  - forward: every op calls autograd::record() right after computing its output (whether or not a graph
//    is recorded), so the wall time since the previous record() is charged to that op's name. Work done
//    between ops that is not an op (e.g. anchor matching on the host) is charged to the next op, and the
//    first op of a step also carries the time since reset() or the previous timed section.
//  - backward: each node's backward function is timed on its own ("conv2d backward"); what the walk
//    itself costs (ordering, summing gradients that meet) is "backward: graph walk".
//  - sections that are not ops (an optimizer step) are timed by the caller with a Section.
//  - FLOPs: every GEMM adds 2 M N K (convolutions and linear layers are GEMMs).
// Single-threaded use only (the main thread; kernels may be parallel inside).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace icd::profiler {

bool enabled();
void set_enabled(bool on);
// Clears the totals and the FLOP count and restarts the clock.
void reset();

// Charges the time since the previous mark to `op` (called by autograd::record), unless ops are quiet.
void mark_op(const char* op);
// Adds `seconds` to the row `name` (one call).
void charge(const std::string& name, double seconds);
void add_flops(double flops);
double clock_seconds();

// While one is alive, ops charge nothing (e.g. the ops inside backward functions, which are timed per
// node instead); when the outermost one ends, the op clock restarts. Does nothing when constructed with
// active = false.
class QuietOps {
 public:
  explicit QuietOps(bool active);
  ~QuietOps();
  QuietOps(const QuietOps&) = delete;
  QuietOps& operator=(const QuietOps&) = delete;

 private:
  bool active_;
};

// A timed section that is not an op (an optimizer step): quiet ops inside, its wall time charged to `name`.
class Section {
 public:
  explicit Section(std::string name);
  ~Section();
  Section(const Section&) = delete;
  Section& operator=(const Section&) = delete;

 private:
  std::string name_;
  double start_ = 0;
  QuietOps quiet_;
};

struct Entry {
  std::string name;
  double seconds = 0;
  int64_t calls = 0;
};
// Totals since reset(), largest first.
std::vector<Entry> totals();
double flops();

}  // namespace icd::profiler
