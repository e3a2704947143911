// The workloads of apps/bench: what one timed run does, built only when it is selected.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "engine/device.h"
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
//   icd-r18<-r50 train b1 S (S = 320, 512): one ICD distillation iteration as apps/distill_retinanet
//     trains it (the trainer's step around distill/objectives.h IcdObjective): the same three boxes; the
//     R50-FPN teacher (torchvision settings, random weights) frozen, backbone + FPN only, under no-grad;
//     the R18-FPN student's forward and losses in training mode; the InstanceConditionalDistiller with
//     the spec's settings (91 classes, 3 real + 15 fake queries from a prior of the ground truth, encoder
//     MLP, one 8-head decoder layer with FFN 1024 over p3..p7, auxiliary identification + localisation,
//     lambda 8 value distillation over p3..p7, past the warm-up so it reaches the student); backward of
//     the sum; the ICD AdamW (global-norm clip 0.01, cosine lr) and the student's SGD (per-element clip 1)
// On `device`: models, inputs and optimizer state live there (the ground truth stays on the host, where
// anchors are matched).
std::vector<Workload> model_workloads(Device device);

}  // namespace icd::bench
