// bench: how fast the engine's hot kernels run on this machine.
//
// Prints, for each workload, the median time over several runs after a warm-up, the achieved GFLOP/s
// and the fraction of the CPU's FP32 peak (2 FLOP per multiply-add). The same workloads run in PyTorch
// through tools/bench_torch.py; scripts/bench_compare.sh runs both in one go and prints the ratios.
// Read engine/cpu/gemm.cpp and engine/ops/conv.cpp first.
//
//   ./build/apps/bench --threads 2
//   ./build/apps/bench --threads 1 --only conv --json
#include <omp.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "engine/autograd.h"
#include "engine/cpu/gemm.h"
#include "engine/factory.h"
#include "engine/ops/conv.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/reduce.h"

using namespace icd;

namespace {

struct Workload {
  std::string name;
  double flops;  // per run
  std::function<void()> run;
};

double median_ms(const std::function<void()>& run, int warmup, int reps) {
  for (int i = 0; i < warmup; ++i)
    run();
  std::vector<double> times;
  for (int i = 0; i < reps; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    run();
    times.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

std::vector<Workload> sgemm_workloads(Generator& gen) {
  std::vector<Workload> out;
  for (int64_t n : {256, 512, 1024, 2048}) {
    auto a = std::make_shared<Tensor>(randn({n, n}, gen));
    auto b = std::make_shared<Tensor>(randn({n, n}, gen));
    auto c = std::make_shared<Tensor>(empty({n, n}));
    out.push_back({"sgemm " + std::to_string(n), 2.0 * n * n * n, [a, b, c, n] {
                     cpu::gemm<float>(false, false, n, n, n, 1.0f, a->data<float>(), n, b->data<float>(), n,
                                      0.0f, c->data<float>(), n);
                   }});
  }
  return out;
}

struct ConvShape {
  int64_t n, c, h, w, out;
};

std::vector<Workload> conv_workloads(Generator& gen) {
  std::vector<Workload> out;
  for (ConvShape s : {ConvShape{1, 64, 56, 56, 64}, ConvShape{1, 256, 14, 14, 256}}) {
    std::string shape = std::to_string(s.n) + "x" + std::to_string(s.c) + "x" + std::to_string(s.h) + "x" +
                        std::to_string(s.w) + " " + std::to_string(s.c) + "->" + std::to_string(s.out);
    double flops = 2.0 * s.n * s.out * s.h * s.w * s.c * 9;
    auto x = std::make_shared<Tensor>(randn({s.n, s.c, s.h, s.w}, gen));
    auto w = std::make_shared<Tensor>(mul(randn({s.out, s.c, 3, 3}, gen), 0.05));
    auto b = std::make_shared<Tensor>(zeros({s.out}));
    Conv2dOptions options{.padding_h = 1, .padding_w = 1};
    out.push_back({"conv3x3 fwd " + shape, flops, [=] {
                     NoGradGuard no_grad;
                     conv2d(*x, *w, *b, options);
                   }});
    out.push_back({"conv3x3 fwd+bwd " + shape, 3 * flops, [=] {
                     x->set_requires_grad(true);
                     w->set_requires_grad(true);
                     b->set_requires_grad(true);
                     Tensor y = conv2d(*x, *w, *b, options);
                     y.backward(ones_like(y));
                     x->zero_grad();
                     w->zero_grad();
                     b->zero_grad();
                   }});
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Benchmarks of the engine's kernels (median ms, GFLOP/s, % of FP32 peak)"};
  int threads = omp_get_max_threads();
  int reps = 7;
  std::string only;
  bool json = false;
  double peak_per_core = 115.2;  // GFLOP/s: 32 FP32 FLOP/cycle x 3.6 GHz (Zen 4, see DESIGN.md)
  app.add_option("--threads", threads, "OpenMP threads");
  app.add_option("--reps", reps, "timed runs per workload (median reported)");
  app.add_option("--only", only, "run only workloads whose name contains this");
  app.add_option("--peak-gflops-per-core", peak_per_core, "FP32 peak per core, for the % column");
  app.add_flag("--json", json, "one JSON object per line instead of a table");
  CLI11_PARSE(app, argc, argv);
  omp_set_num_threads(threads);

  Generator gen(0);
  std::vector<Workload> workloads = sgemm_workloads(gen);
  for (Workload& w : conv_workloads(gen))
    workloads.push_back(std::move(w));
  const double peak = peak_per_core * threads;
  if (!json)
    std::printf("%-34s %10s %10s %8s   (%d threads, peak %.0f GFLOP/s)\n", "workload", "ms", "GFLOP/s",
                "% peak", threads, peak);
  for (const Workload& w : workloads) {
    if (!only.empty() && w.name.find(only) == std::string::npos) continue;
    double ms = median_ms(w.run, 2, reps);
    double gflops = w.flops / (ms * 1e6);
    if (json)
      std::printf(
          "{\"impl\": \"icd\", \"workload\": \"%s\", \"threads\": %d, \"ms\": %.4f, \"gflops\": %.2f}\n",
          w.name.c_str(), threads, ms, gflops);
    else
      std::printf("%-34s %10.3f %10.1f %7.1f%%\n", w.name.c_str(), ms, gflops, 100.0 * gflops / peak);
    std::fflush(stdout);
  }
  return 0;
}
