// Part of test_cuda_parity (its main skips the whole binary without a GPU): cat, stack and pad on CUDA
// tensors, which the CUDA backend builds from its strided copy and fill kernels, against the CPU, forward
// and backward. Copies are exact, so are the results.
#include <doctest/doctest.h>

#if defined(ICD_WITH_CUDA)
#include <functional>
#include <string>
#include <vector>

#include "cuda_parity.h"
#include "engine/autograd.h"
#include "engine/factory.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/reduce.h"
#include "engine/ops/shape.h"
#include "engine/random.h"
#include "engine/transfer.h"

using namespace icd;
using testing::host_values;
using testing::kGpu;

namespace {

// f(inputs) on both devices: the values, and the gradients of sum(f * weights) for fixed random weights.
void check_same(const std::vector<Tensor>& cpu_inputs,
                const std::function<Tensor(const std::vector<Tensor>&)>& f) {
  std::vector<Tensor> gpu_inputs;
  for (const Tensor& t : cpu_inputs)
    gpu_inputs.push_back(to_device(t.detach(), kGpu).set_requires_grad(true));
  Tensor cpu_out = f(cpu_inputs), gpu_out = f(gpu_inputs);
  CHECK(gpu_out.device() == kGpu);
  CHECK(host_values(gpu_out) == host_values(cpu_out));
  Generator gen(9);
  Tensor weights = randn(cpu_out.shape(), gen, {cpu_out.dtype()});
  sum(mul(cpu_out, weights)).backward();
  sum(mul(gpu_out, to_device(weights, kGpu))).backward();
  for (std::size_t i = 0; i < cpu_inputs.size(); ++i) {
    INFO("input ", i);
    CHECK(host_values(gpu_inputs[i].grad()) == host_values(cpu_inputs[i].grad()));
  }
}

}  // namespace

TEST_CASE("to_vector, item and str read GPU tensors through the host, views included") {
  const Tensor cpu = from_vector(std::vector<double>{1, 2, 3, 4, 5, 6}, {2, 3}, {DType::f64});
  const Tensor gpu = to_device(cpu, kGpu);
  CHECK(gpu.to_vector<double>() == cpu.to_vector<double>());
  CHECK(gpu.transpose(0, 1).to_vector<float>() == cpu.transpose(0, 1).to_vector<float>());
  CHECK(gpu.select(0, 1).select(0, 2).item() == 6.0);
  std::string expected = cpu.str();
  expected.replace(expected.find("device=cpu"), 10, "device=cuda:0");
  CHECK(gpu.str() == expected);
}

TEST_CASE("cat, stack and pad on the GPU give the CPU's values and gradients") {
  Generator gen(8);
  for (DType dtype : {DType::f32, DType::f64}) {
    auto leaf = [&](Shape shape) { return randn(shape, gen, {dtype}).set_requires_grad(true); };
    // cat along the middle dimension, including a permuted (non-contiguous) input and an empty one.
    check_same({leaf({2, 3, 4}), leaf({4, 5, 2}), leaf({2, 0, 4})}, [](const std::vector<Tensor>& in) {
      return cat({in[0], in[1].permute({2, 0, 1}), in[2]}, 1);
    });
    check_same({leaf({3, 4}), leaf({3, 4})}, [](const std::vector<Tensor>& in) { return stack(in, 2); });
    // pad growing one dimension and cropping another.
    check_same({leaf({2, 3, 5, 6})}, [](const std::vector<Tensor>& in) {
      return pad(in[0], {1, 2, -1, 1}, 0.5);
    });
  }
}

#endif  // ICD_WITH_CUDA
