// bench: how fast the engine runs on this machine, kernel by kernel (SGEMM, 3x3 convolutions) and whole
// steps of the models (ResNet-18/50 train and inference, RetinaNet R18/R50-FPN at 320 and 512, the ICD
// distillation step of an R18-FPN student from an R50-FPN teacher; apps/bench_models.h lists them).
//
// Prints, for each workload, the median time over several runs after two warm-up runs, the achieved
// GFLOP/s and the fraction of the CPU's FP32 peak (2 FLOP per multiply-add; for a model step, the FLOPs of
// every GEMM it ran, counted by engine/profiler.h), and the process's peak RSS so far. --profile adds,
// per workload, where the time of one more run goes, op by op (forward, each op's backward, optimizer).
// The same workloads run in PyTorch through tools/bench_torch.py; scripts/bench_compare.sh runs both in
// one go and prints the ratios (each model step in its own process, so peak RSS is that workload's).
// Read engine/cpu/gemm.cpp, engine/ops/conv.cpp and engine/profiler.h first.
//
// --device cuda runs every workload on the GPU (SGEMM through matmul on cuBLAS, convolutions on cuDNN),
// waiting for the device at the end of each run so that a time covers the work, not its queueing; the %
// column then needs --peak-gflops (the GPU's FP32 peak), RSS stays the host's and the JSON adds the
// device allocator's peak (gpu_peak_mb). --precision bf16|f16 runs each workload under an AutocastGuard
// (engine/autocast.h; no loss scaling, as tools/bench_torch.py's torch.autocast).
//
//   ./build/apps/bench --threads 2
//   ./build/apps/bench --device cuda --only train
//   ./build/apps/bench --threads 1 --only conv --json
//   ./build/apps/bench --only "retinanet-r18 train b1 512" --exact --profile
#include <omp.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include <sys/resource.h>

#include "apps/bench_models.h"
#include "apps/common/device_flag.h"
#include "engine/autocast.h"
#include "engine/autograd.h"
#include "engine/cpu/gemm.h"
#include "engine/device_memory.h"
#include "engine/factory.h"
#include "engine/ops/conv.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/matmul.h"
#include "engine/ops/reduce.h"
#include "engine/profiler.h"
#include "engine/transfer.h"

using namespace icd;

namespace {

using bench::Workload;

// A kernel workload whose inputs are built up front (they are small).
Workload eager(std::string name, double flops, std::function<void()> run) {
  return {std::move(name), flops, [run = std::move(run)] { return run; }};
}

// A GPU queues work and returns: each timed run ends when the device has finished it.
double median_ms(const std::function<void()>& run, int warmup, int reps, Device device) {
  for (int i = 0; i < warmup; ++i)
    run();
  synchronize(device);
  std::vector<double> times;
  for (int i = 0; i < reps; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    run();
    synchronize(device);
    times.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

// On the CPU the GEMM kernel itself; on a GPU the matmul op (cuBLAS).
std::vector<Workload> sgemm_workloads(Generator& gen, Device device) {
  std::vector<Workload> out;
  for (int64_t n : {256, 512, 1024, 2048}) {
    auto a = std::make_shared<Tensor>(to_device(randn({n, n}, gen), device));
    auto b = std::make_shared<Tensor>(to_device(randn({n, n}, gen), device));
    if (device.is_cuda()) {
      out.push_back(eager("sgemm " + std::to_string(n), 2.0 * n * n * n, [a, b] {
        NoGradGuard no_grad;
        matmul(*a, *b);
      }));
      continue;
    }
    auto c = std::make_shared<Tensor>(empty({n, n}));
    out.push_back(eager("sgemm " + std::to_string(n), 2.0 * n * n * n, [a, b, c, n] {
      cpu::gemm<float>(false, false, n, n, n, 1.0f, a->data<float>(), n, b->data<float>(), n, 0.0f,
                       c->data<float>(), n);
    }));
  }
  return out;
}

struct ConvShape {
  int64_t n, c, h, w, out;
};

std::vector<Workload> conv_workloads(Generator& gen, Device device) {
  std::vector<Workload> out;
  // Two kernel-sized cases, then the 3x3 stride-1 convolutions of each ResNet-18 stage at the batch of the
  // ResNet-18 step.
  for (ConvShape s :
       {ConvShape{1, 64, 56, 56, 64}, ConvShape{1, 256, 14, 14, 256}, ConvShape{2, 64, 56, 56, 64},
        ConvShape{2, 128, 28, 28, 128}, ConvShape{2, 256, 14, 14, 256}, ConvShape{2, 512, 7, 7, 512}}) {
    std::string shape = std::to_string(s.n) + "x" + std::to_string(s.c) + "x" + std::to_string(s.h) + "x" +
                        std::to_string(s.w) + " " + std::to_string(s.c) + "->" + std::to_string(s.out);
    double flops = 2.0 * s.n * s.out * s.h * s.w * s.c * 9;
    auto x = std::make_shared<Tensor>(to_device(randn({s.n, s.c, s.h, s.w}, gen), device));
    auto w = std::make_shared<Tensor>(to_device(mul(randn({s.out, s.c, 3, 3}, gen), 0.05), device));
    auto b = std::make_shared<Tensor>(zeros({s.out}, {DType::f32, device}));
    Conv2dOptions options{.padding_h = 1, .padding_w = 1};
    out.push_back(eager("conv3x3 fwd " + shape, flops, [=] {
      NoGradGuard no_grad;
      conv2d(*x, *w, *b, options);
    }));
    out.push_back(eager("conv3x3 fwd+bwd " + shape, 3 * flops, [=] {
      x->set_requires_grad(true);
      w->set_requires_grad(true);
      b->set_requires_grad(true);
      Tensor y = conv2d(*x, *w, *b, options);
      y.backward(ones_like(y));
      x->zero_grad();
      w->zero_grad();
      b->zero_grad();
    }));
  }
  return out;
}

// ", \"gpu_peak_mb\": N" for a GPU (its caching allocator's peak in use), nothing on the CPU.
std::string gpu_peak_field(Device device) {
  if (!device.is_cuda()) return "";
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, ", \"gpu_peak_mb\": %.1f",
                static_cast<double>(device_memory_stats(device).peak_in_use_bytes) / (1024.0 * 1024.0));
  return buffer;
}

double peak_rss_mb() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) / 1024.0;  // ru_maxrss is in KiB on Linux
}

// One more run with the profiler on: the FLOPs of a run, and (when `print`) where its time went.
double profiled_run(const std::function<void()>& run, bool print) {
  profiler::set_enabled(true);
  profiler::reset();
  const double t0 = profiler::clock_seconds();
  run();
  const double total = profiler::clock_seconds() - t0;
  profiler::set_enabled(false);
  if (print) {
    std::printf("    %-40s %9s %7s %7s\n", "where the time goes (one profiled run)", "ms", "%", "calls");
    double shown = 0;
    int rows = 0;
    for (const profiler::Entry& e : profiler::totals()) {
      if (++rows > 20) break;
      shown += e.seconds;
      std::printf("    %-40s %9.2f %6.1f%% %7lld\n", e.name.c_str(), 1e3 * e.seconds, 100 * e.seconds / total,
                  static_cast<long long>(e.calls));
    }
    std::printf("    %-40s %9.2f %6.1f%%\n", "(everything else)", 1e3 * (total - shown),
                100 * (total - shown) / total);
  }
  return profiler::flops();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "Benchmarks of the engine: kernels and whole model steps (median ms, GFLOP/s, % of FP32 peak)"};
  int threads = omp_get_max_threads();
  int reps = 7;
  std::string only;
  bool exact = false, json = false, profile = false;
  double peak_per_core = 115.2;  // GFLOP/s: 32 FP32 FLOP/cycle x 3.6 GHz (Zen 4, see DESIGN.md)
  double peak_gflops = 0;        // the whole device's; 0: peak_per_core x threads on the CPU
  std::string device_text = "auto", precision_text = "f32";
  app.add_option("--threads", threads, "OpenMP threads");
  app.add_option("--reps", reps, "timed runs per workload (median reported)");
  app.add_option("--only", only, "run only workloads whose name contains this");
  app.add_flag("--exact", exact, "--only names one workload exactly");
  app.add_flag("--profile", profile, "print where the time of each workload goes, op by op");
  app.add_option("--peak-gflops-per-core", peak_per_core, "FP32 peak per core, for the % column");
  app.add_option("--peak-gflops", peak_gflops, "the device's FP32 peak for the % column (a GPU's)");
  app.add_flag("--json", json, "one JSON object per line instead of a table");
  icd::app::add_device_flag(app, device_text);
  app.add_option("--precision", precision_text, "f32, or mixed precision: bf16 or f16 (engine/autocast.h)")
      ->check(CLI::IsMember({"f32", "bf16", "f16"}))
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  omp_set_num_threads(threads);

  Device device;
  try {
    device = icd::app::use_device_flag(device_text);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench: %s\n", e.what());
    return 1;
  }
  const DType precision = parse_precision(precision_text);
  Generator gen(0);
  std::vector<Workload> workloads = sgemm_workloads(gen, device);
  for (Workload& w : conv_workloads(gen, device))
    workloads.push_back(std::move(w));
  for (Workload& w : bench::model_workloads(device))
    workloads.push_back(std::move(w));
  const double peak = peak_gflops > 0 ? peak_gflops : device.is_cpu() ? peak_per_core * threads : 0.0;
  if (!json)
    std::printf("%-34s %10s %10s %8s %9s   (%s, %d threads, peak %.0f GFLOP/s)\n", "workload", "ms",
                "GFLOP/s", "% peak", "RSS MB", device.str().c_str(), threads, peak);
  int selected = 0;
  for (const Workload& w : workloads) {
    if (!only.empty() && (exact ? w.name != only : w.name.find(only) == std::string::npos)) continue;
    ++selected;
    const std::function<void()> run = [precision, inner = w.make()] {
      AutocastGuard autocast(precision);
      inner();
    };
    const double ms = median_ms(run, 2, reps, device);
    const double flops = w.flops > 0 && !profile ? w.flops : profiled_run(run, profile && !json);
    const double gflops = flops / (ms * 1e6);
    if (json)
      std::printf(
          "{\"impl\": \"icd\", \"device\": \"%s\", \"precision\": \"%s\", \"workload\": \"%s\", "
          "\"threads\": %d, \"ms\": %.4f, \"gflops\": %.2f, \"peak_rss_mb\": %.1f%s}\n",
          device.str().c_str(), precision_text.c_str(), w.name.c_str(), threads, ms, gflops, peak_rss_mb(),
          gpu_peak_field(device).c_str());
    else
      std::printf("%-34s %10.3f %10.1f %7.1f%% %9.0f\n", w.name.c_str(), ms, gflops,
                  peak > 0 ? 100.0 * gflops / peak : 0.0, peak_rss_mb());
    std::fflush(stdout);
  }
  if (selected == 0) {
    std::fprintf(stderr, "bench: no workload matches \"%s\"; the names are:\n", only.c_str());
    for (const Workload& w : workloads)
      std::fprintf(stderr, "  %s\n", w.name.c_str());
    return 2;
  }
  return 0;
}
