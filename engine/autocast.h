// Mixed precision for the ops that dominate a detector's time: inside an AutocastGuard(bf16 or f16),
// conv2d, matmul, bmm and linear over f32 tensors compute on 16-bit numbers with f32 accumulation, the
// arithmetic of a GPU's tensor cores:
//
//   y = round(op(round(x), round(w), round(b)))        round = round_to_precision (engine/ops/precision.h)
//
// Everything else (normalisation, activations, losses, the optimizers) stays in f32, and so do the
// weights themselves: the rounded copies are made per call, so the f32 "master" weights take the updates.
// Backward runs through the same rounding, so the gradients flowing through those ops are 16-bit values as
// well. f64 tensors are never affected (gradient checks run in f64). With f16 the small gradients of a
// loss underflow, so training with f16 scales the loss (engine/optim/grad_scaler.h); bf16 has f32's range
// and needs no scaling.
//
// The mode is per thread, like NoGradGuard, and guards nest (the innermost wins).
#pragma once
#include <optional>
#include <string>

#include "engine/tensor.h"

namespace icd {

class AutocastGuard {
 public:
  // precision: f16 or bf16 to turn autocast on, f32 to turn it off inside the scope.
  explicit AutocastGuard(DType precision);
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  DType previous_;
};

// The precision autocast is set to on this thread: f16, bf16, or f32 when off.
DType autocast_precision();

// The precision an op over `operand` (its first input) must round to: set when autocast is on and the
// operand is f32; nullopt otherwise.
std::optional<DType> autocast_precision_for(const Tensor& operand);

// "f32", "bf16" or "f16" to the DType (the apps' --precision flag); throws naming the text otherwise.
DType parse_precision(const std::string& text);

}  // namespace icd
