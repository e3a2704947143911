// to_device and Storage on devices other than the CPU (engine/transfer.h, engine/device_memory.h).
// Everywhere: CPU-to-CPU transfers, and on a machine without a usable GPU, a CUDA allocation or transfer
// fails with a message that names the device and why. The round trips through a GPU are in
// tests/test_cuda_parity.cpp (skipped, visibly, where there is no GPU).
#include <doctest/doctest.h>

#include "engine/cuda_status.h"
#include "engine/factory.h"
#include "engine/transfer.h"

using namespace icd;

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
}
