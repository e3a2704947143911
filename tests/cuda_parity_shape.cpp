// Part of test_cuda_parity (its main skips the whole binary without a GPU): cat, stack and pad on CUDA
// tensors, which the CUDA backend builds from its strided copy and fill kernels, against the CPU, forward
// and backward. Copies are exact, so are the results. Also topk (CUB's radix sort against the CPU's
// partial sort), whose results are exact too, NaNs of any sign and payload tied in index order.
#include <doctest/doctest.h>

#if defined(ICD_WITH_CUDA)
#include <bit>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "cuda_parity.h"
#include "engine/autograd.h"
#include "engine/factory.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/reduce.h"
#include "engine/ops/shape.h"
#include "engine/ops/topk.h"
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

TEST_CASE("topk on the GPU: the CPU's values and indices, ties, NaN and signed zeros included") {
  Generator gen(12);
  for (DType dtype : {DType::f32, DType::f64}) {
    CAPTURE(dtype_name(dtype));
    std::vector<double> v(70000);
    for (double& value : v)
      value = std::floor(gen.uniform() * 300) - 150;  // many ties
    v[5] = std::numeric_limits<double>::quiet_NaN();
    v[9] = -std::numeric_limits<double>::quiet_NaN();
    v[11] = -0.0;
    v[12] = 0.0;
    v[20] = std::bit_cast<double>(uint64_t{0x7ff8000100000000});  // a NaN with a payload that survives f32
    const Tensor x = from_vector(v, {70000}, {dtype});
    for (int64_t k : {0, 1, 1000, 70000, 80000}) {
      CAPTURE(k);
      const ValuesIndices cpu = topk(x, k), gpu = topk(to_device(x, kGpu), k);
      CHECK(gpu.indices.device() == kGpu);
      CHECK(host_values(gpu.indices) == host_values(cpu.indices));
      const std::vector<double> a = host_values(cpu.values), b = host_values(gpu.values);
      REQUIRE(a.size() == b.size());
      for (std::size_t i = 0; i < a.size(); ++i)
        CHECK((a[i] == b[i] || (std::isnan(a[i]) && std::isnan(b[i]))));
    }
  }
}
#endif  // ICD_WITH_CUDA
