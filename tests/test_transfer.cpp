// to_device and Storage on devices other than the CPU (engine/transfer.h, engine/device_memory.h), and
// the device checks of engine/dispatch.h. Everywhere: CPU-to-CPU transfers, the refusal of mixed devices
// and dtypes (checked on placements, since no CUDA tensor can be made without a GPU), the messages of
// ops without a CUDA kernel or without a CUDA backend; and on a machine without a usable GPU, a CUDA
// allocation, transfer or factory fails with a message that names the device and why. The round trips through
// a GPU are in tests/test_cuda_parity.cpp (skipped, visibly, where there is no GPU).
#include <doctest/doctest.h>

#include <string>

#include "engine/cuda_ops.h"
#include "engine/cuda_status.h"
#include "engine/device_choice.h"
#include "engine/dispatch.h"
#include "engine/factory.h"
#include "engine/ops/conv.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/matmul.h"
#include "engine/storage.h"
#include "engine/transfer.h"

using namespace icd;

TEST_CASE("parse_device reads cpu, cuda and cuda:N, and names anything else") {
  CHECK(parse_device("cpu") == Device::cpu());
  CHECK(parse_device("cuda") == Device::cuda(0));
  CHECK(parse_device("cuda:0") == Device::cuda(0));
  CHECK(parse_device("cuda:3") == Device::cuda(3));
  for (const char* bad : {"", "gpu", "CPU", "cuda:", "cuda:-1", "cuda:1x", "cuda:99999", "cuda0", "auto"}) {
    const std::string named = "device '" + std::string(bad) + "'";
    CHECK_THROWS_WITH_AS(parse_device(bad), doctest::Contains(named.c_str()), std::invalid_argument);
  }
}

TEST_CASE("choose_device: auto takes the GPU only when one can be used; a named GPU must exist") {
  const DeviceChoice cpu = choose_device("cpu");
  CHECK(cpu.device == Device::cpu());
  CHECK(cpu.description == "device: cpu");
  const DeviceChoice automatic = choose_device("auto");
  CHECK_THROWS_AS(choose_device("tpu"), std::invalid_argument);
  if (cuda_status().available) {
    CHECK(automatic.device == Device::cuda(0));
    CHECK(automatic.description.starts_with("device: cuda:0"));
    CHECK(choose_device("cuda").device == Device::cuda(0));
    const std::string beyond = "cuda:" + std::to_string(cuda_status().device_count);
    CHECK_THROWS_WITH_AS(choose_device(beyond), doctest::Contains("CUDA device(s)"), std::runtime_error);
  } else {
    CHECK(automatic.device == Device::cpu());
    CHECK(automatic.description == "device: cpu (no usable GPU: " + cuda_status().reason + ")");
    CHECK_THROWS_WITH_AS(choose_device("cuda"), doctest::Contains(cuda_status().reason.c_str()),
                         std::runtime_error);
    CHECK_THROWS_WITH_AS(choose_device("cuda:1"), doctest::Contains("device cuda:1"), std::runtime_error);
  }
}

TEST_CASE("pinned host tensors: page-locked where a GPU can use them, ordinary memory otherwise") {
  const std::size_t before = cpu_bytes_in_use();
  {
    Tensor t = empty({3, 4}, {DType::f32, Device::cpu(), true});
    CHECK(t.device().is_cpu());
    CHECK(t.is_pinned() == cuda_status().available);
    CHECK(cpu_bytes_in_use() == before + 48);
    fill_(t, 2.5);
    CHECK(t.to_vector<float>() == std::vector<float>(12, 2.5f));
    CHECK_FALSE(t.clone().is_pinned());  // derived tensors are ordinary memory
    CHECK(to_device(t, Device::cpu()).shares_storage_with(t));
  }
  CHECK(cpu_bytes_in_use() == before);
  CHECK_FALSE(zeros({2}).is_pinned());
}

TEST_CASE("to_device on the CPU: the same tensor when already there") {
  Generator gen(0);
  Tensor t = randn({3, 4}, gen);
  CHECK(to_device(t, Device::cpu()).shares_storage_with(t));
}

TEST_CASE("without a usable GPU, CUDA storage and transfers fail naming the device and the reason") {
  if (cuda_status().available) {
    MESSAGE("a GPU is available: the refusal path does not apply here");
    return;
  }
  Generator gen(1);
  Tensor t = randn({2, 3}, gen);
  CHECK_THROWS_WITH(to_device(t, Device::cuda()), doctest::Contains("cuda:0"));
  CHECK_THROWS_WITH(to_device(t, Device::cuda()), doctest::Contains(cuda_status().reason.c_str()));
  CHECK_THROWS_WITH(empty({4}, {DType::f32, Device::cuda()}), doctest::Contains("cuda:0"));
  // Factories that fill on the device, and those that fill on the host and copy, refuse the same way.
  CHECK_THROWS_WITH(zeros({4}, {DType::f32, Device::cuda()}),
                    doctest::Contains(cuda_status().reason.c_str()));
  CHECK_THROWS_WITH(randn({4}, gen, {DType::f64, Device::cuda()}), doctest::Contains("cuda:0"));
}

TEST_CASE(
    "an op's arguments must share a device and a dtype: the error names the op, both arguments and both") {
  const Device cpu = Device::cpu(), gpu = Device::cuda(0);
  CHECK(common_device("add", {{"a", cpu, DType::f32}, {"b", cpu, DType::f32}}) == cpu);
  CHECK(common_device("add", {{"a", gpu, DType::f64}, {"b", gpu, DType::f64}}) == gpu);
  CHECK_THROWS_WITH_AS(common_device("add", {{"a", cpu, DType::f32}, {"b", gpu, DType::f32}}),
                       "add: b is on cuda:0 but a is on cpu", std::invalid_argument);
  CHECK_THROWS_WITH_AS(common_device("where", {{"condition", gpu, DType::f32},
                                               {"a", gpu, DType::f32},
                                               {"b", Device::cuda(1), DType::f32}}),
                       "where: b is on cuda:1 but condition is on cuda:0", std::invalid_argument);
  CHECK_THROWS_WITH_AS(common_device("mul", {{"a", cpu, DType::f32}, {"b", cpu, DType::f64}}),
                       "mul: b has dtype f64 but a has dtype f32", std::invalid_argument);
  CHECK_THROWS_AS(common_device("mul", {}), std::invalid_argument);
  // The tensor version runs the same check; undefined tensors (an absent bias) are skipped.
  Generator gen(2);
  const Tensor x32 = randn({2}, gen), x64 = randn({2}, gen, {DType::f64});
  CHECK(op_device("add", {{"a", x32}, {"bias", Tensor()}, {"b", x32}}) == cpu);
  CHECK_THROWS_WITH_AS(add(x32, x64), "add: b has dtype f64 but a has dtype f32", std::invalid_argument);
}

TEST_CASE("a build without CUDA refuses naming the op; require_cpu lets CPU tensors through") {
  const std::string message = no_cuda_backend_message("sum");
  CHECK(message.rfind("sum: ", 0) == 0);
  CHECK(message.find("this build has no CUDA backend") != std::string::npos);
  Generator gen(3);
  const Tensor x = randn({2}, gen);
  CHECK_NOTHROW(require_cpu("matmul", {{"a", x}}));  // a CPU tensor passes
}

TEST_CASE("matmul, bmm, linear and conv2d check their arguments' device and dtype, naming the arguments") {
  Generator gen(4);
  const Tensor a32 = randn({2, 3}, gen), b64 = randn({3, 2}, gen, {DType::f64});
  CHECK_THROWS_WITH_AS(matmul(a32, b64), "matmul: b has dtype f64 but a has dtype f32",
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(bmm(a32.unsqueeze(0), b64.unsqueeze(0)), "bmm: b has dtype f64 but a has dtype f32",
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(linear(a32, randn({4, 3}, gen), randn({4}, gen, {DType::f64})),
                       "linear: bias has dtype f64 but x has dtype f32", std::invalid_argument);
  CHECK_THROWS_WITH_AS(conv2d(randn({1, 2, 4, 4}, gen), randn({3, 2, 3, 3}, gen, {DType::f64}), Tensor()),
                       "conv2d: weight has dtype f64 but x has dtype f32", std::invalid_argument);
}

TEST_CASE("without a usable GPU, the cuBLAS and cuDNN entry points refuse before any work, saying why") {
  if (cuda_status().available) {
    MESSAGE("a GPU is available: the refusal path does not apply here");
    return;
  }
#if defined(ICD_WITH_CUDA)
  const std::string why = cuda_status().reason;  // the probe's reason, e.g. no device
#else
  const std::string why = "this build has no CUDA backend";
#endif
  // Well-formed CPU arguments: what stops the call is the missing device, not the arguments.
  const Tensor a = zeros({2, 3}), b = zeros({3, 4}), x = zeros({1, 2, 5, 5}), w = zeros({3, 2, 3, 3});
  Tensor c = zeros({2, 4}), y = zeros({1, 3, 3, 3}), dx = zeros({1, 2, 5, 5}), dw = zeros({3, 2, 3, 3});
  CHECK_THROWS_WITH_AS(cuda_ops::gemm("matmul", false, false, 2, 4, 3, a, 3, {0}, b, 4, {0}, 0.0, c),
                       doctest::Contains(why.c_str()), std::runtime_error);
  CHECK_THROWS_WITH_AS(cuda_ops::conv2d_forward("conv2d", x, w, Tensor(), {}, y),
                       doctest::Contains(why.c_str()), std::runtime_error);
  CHECK_THROWS_WITH_AS(cuda_ops::conv2d_backward_data("conv2d", y, w, {}, dx), doctest::Contains(why.c_str()),
                       std::runtime_error);
  CHECK_THROWS_WITH_AS(cuda_ops::conv2d_backward_filter("conv2d", x, y, {}, dw),
                       doctest::Contains(why.c_str()), std::runtime_error);
#if defined(ICD_WITH_CUDA)
  // Arguments cuBLAS or cuDNN would reject are refused first, naming the op (engine/kernels/gemm_plan.h,
  // engine/cuda/cudnn_conv.h).
  CHECK_THROWS_WITH_AS(cuda_ops::gemm("matmul", false, false, 2, 4, 3, a, 2, {0}, b, 4, {0}, 0.0, c),
                       doctest::Contains("matmul (cuBLAS GEMM): lda = 2"), std::invalid_argument);
  Tensor c_long = zeros({2, 4}, {DType::i64});
  CHECK_THROWS_WITH_AS(cuda_ops::gemm("matmul", false, false, 2, 4, 3, a.to(DType::i64), 3, {0},
                                      b.to(DType::i64), 4, {0}, 0.0, c_long),
                       doctest::Contains("takes f32, f64, f16 or bf16, got i64"), std::invalid_argument);
  Tensor y_long = zeros({1, 3, 3, 3}, {DType::i64});
  CHECK_THROWS_WITH_AS(
      cuda_ops::conv2d_forward("conv2d", x.to(DType::i64), w.to(DType::i64), Tensor(), {}, y_long),
      doctest::Contains("conv2d (cuDNN): takes f32, f64, f16 or bf16, got i64"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(cuda_ops::gemm("matmul", false, false, 2, 4, 3, a, 3, {0}, b, 4, {0}, 0.0, dw),
                       doctest::Contains("does not hold 1 products of 2 x 4"), std::invalid_argument);
#endif
}
