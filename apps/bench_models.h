// The workloads of apps/bench: what one timed run does, built only when it is selected.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "engine/random.h"

namespace icd::bench {

struct Workload {
  std::string name;
  double flops = 0;  // per run; 0: counted by the profiler during a run (every GEMM's 2 M N K)
  // Builds the inputs (and model) and returns one run. Called once, only when the workload is selected.
  std::function<std::function<void()>()> make;
};

// Whole steps of the models tools/bench_torch.py runs in PyTorch with the same shapes:
//   resnet18/50 train b2 224: forward, cross entropy over 1000 classes, backward, SGD step (momentum 0.9,
//     weight decay 1e-4), batch norm in training mode;            ... infer b2 224: eval mode, no grad
//   retinanet-r18/r50 train b1 S (S = 320, 512): torchvision's RetinaNet settings (frozen BN, stem and
//     layer1 frozen, FPN 256, 4 head convs, 91 classes), three boxes, focal + L1 losses, backward, SGD;
//     ... infer b1 S: forward and postprocess (decode, per-level top-k, NMS)
std::vector<Workload> model_workloads();

}  // namespace icd::bench
