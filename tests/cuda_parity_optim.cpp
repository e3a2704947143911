// Part of test_cuda_parity (its main skips the whole binary without a GPU): the optimizers' fused CUDA
// updates and gradient clipping against the CPU, over several steps from the same parameters and gradients.
#include <doctest/doctest.h>

#if defined(ICD_WITH_CUDA)
#include <cmath>
#include <functional>
#include <memory>
#include <vector>

#include "cuda_parity.h"
#include "engine/factory.h"
#include "engine/ops/elementwise.h"
#include "engine/optim/adamw.h"
#include "engine/optim/clip_grad.h"
#include "engine/optim/sgd.h"
#include "engine/random.h"
#include "engine/transfer.h"

using namespace icd;
using testing::kGpu;
using testing::scaled_difference;

namespace {

struct Twin {
  std::vector<Tensor> cpu, gpu;  // the same parameters on both devices
};

Twin make_parameters(DType dtype, uint64_t seed) {
  Generator gen(seed);
  Twin twin;
  for (Shape shape : {Shape{1000}, Shape{7, 33}, Shape{3, 4, 5, 6}}) {
    Tensor p = randn(shape, gen, {dtype});
    twin.cpu.push_back(p.clone().set_requires_grad(true));
    twin.gpu.push_back(to_device(p, kGpu).set_requires_grad(true));
  }
  return twin;
}

// Gives every parameter the same random gradient on both devices (scaled so clipping has work to do).
void set_gradients(Twin& twin, Generator& gen, double scale) {
  for (std::size_t i = 0; i < twin.cpu.size(); ++i) {
    Tensor g = mul(randn(twin.cpu[i].shape(), gen, {twin.cpu[i].dtype()}), scale);
    twin.cpu[i].set_grad(g);
    twin.gpu[i].set_grad(to_device(g, kGpu));
  }
}

// Several steps of the optimizer made by `make` on both devices; f64 agrees to rounding, f32 within a few
// roundings per step (the GPU may contract a * b + c into one fused multiply-add, the CPU loop may not).
void check_steps(DType dtype, const std::function<std::unique_ptr<Optimizer>(std::vector<Tensor>)>& make,
                 double clip_norm = 0, double clip_value = 0) {
  Twin twin = make_parameters(dtype, 5);
  std::unique_ptr<Optimizer> cpu = make(twin.cpu), gpu = make(twin.gpu);
  Generator gen(6);
  for (int step = 0; step < 4; ++step) {
    set_gradients(twin, gen, 3.0);
    if (clip_norm > 0)
      CHECK(clip_grad_norm(twin.cpu, clip_norm) ==
            doctest::Approx(clip_grad_norm(twin.gpu, clip_norm)).epsilon(1e-12));
    if (clip_value > 0) {
      clip_grad_value(twin.cpu, clip_value);
      clip_grad_value(twin.gpu, clip_value);
    }
    cpu->step();
    gpu->step();
  }
  const double tolerance = dtype == DType::f64 ? 1e-13 : 1e-5;
  for (std::size_t i = 0; i < twin.cpu.size(); ++i) {
    INFO("parameter ", i, " ", dtype_name(dtype));
    CHECK(scaled_difference(twin.cpu[i], twin.gpu[i]) < tolerance);
  }
}

}  // namespace

TEST_CASE("SGD (momentum, dampening, nesterov, weight decay) steps the same on the GPU as on the CPU") {
  for (DType dtype : {DType::f32, DType::f64}) {
    check_steps(dtype, [](std::vector<Tensor> p) {
      return std::make_unique<Sgd>(std::move(p),
                                   SgdOptions{.lr = 0.1, .momentum = 0.9, .weight_decay = 1e-2});
    });
    check_steps(dtype, [](std::vector<Tensor> p) {
      return std::make_unique<Sgd>(std::move(p), SgdOptions{.lr = 0.05, .momentum = 0.5, .dampening = 0.25});
    });
    check_steps(dtype, [](std::vector<Tensor> p) {
      return std::make_unique<Sgd>(std::move(p), SgdOptions{.lr = 0.05, .momentum = 0.9, .nesterov = true});
    });
    check_steps(dtype, [](std::vector<Tensor> p) {
      return std::make_unique<Sgd>(std::move(p), SgdOptions{.lr = 0.2});
    });
  }
}

TEST_CASE("AdamW steps the same on the GPU as on the CPU, with clipping by norm and by value") {
  for (DType dtype : {DType::f32, DType::f64}) {
    auto adamw = [](std::vector<Tensor> p) {
      return std::make_unique<AdamW>(std::move(p), AdamWOptions{.lr = 1e-2, .weight_decay = 0.05});
    };
    check_steps(dtype, adamw);
    check_steps(dtype, adamw, /*clip_norm=*/1.0);
    check_steps(dtype, adamw, 0, /*clip_value=*/0.5);
  }
}

#endif  // ICD_WITH_CUDA
