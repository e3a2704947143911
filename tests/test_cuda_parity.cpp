// The CUDA kernels against the CPU launch of the same bodies (engine/kernels/launch.h), on random
// inputs, through the caching allocator and the copy helpers. It needs a GPU: without one (or in a
// build without CUDA) its main prints why and exits 77, which CTest reports as "Skipped", never "Passed".
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>

#include "engine/cuda_status.h"

#if defined(ICD_WITH_CUDA)
#include <cmath>
#include <cstdint>
#include <iomanip>
#include <random>
#include <sstream>
#include <vector>

#include "engine/cuda/device_memory.h"
#include "engine/cuda/elementwise.h"
#include "engine/factory.h"
#include "engine/kernels/launch.h"
#include "engine/transfer.h"

using namespace icd;
using namespace icd::kernels;

namespace {
constexpr int kDevice = 0;

// Inputs that keep every op finite and exercise its branches: positive bases for pow, divisors away
// from zero, and some equal pairs and exact zeros so comparisons and the kinks of relu/abs are hit.
template <class T>
void make_inputs(BinaryOp op, int64_t n, uint64_t seed, std::vector<T>& a, std::vector<T>& b) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> uniform(-2.0, 2.0), magnitude(0.5, 2.0), base(0.1, 3.0);
  a.resize(n);
  b.resize(n);
  for (int64_t i = 0; i < n; ++i) {
    a[i] = T(uniform(rng));
    if (op == BinaryOp::pow) {
      a[i] = T(base(rng));
      b[i] = T(uniform(rng));
    } else if (op == BinaryOp::div || op == BinaryOp::sqrt_grad) {
      b[i] = T(uniform(rng) < 0 ? -magnitude(rng) : magnitude(rng));
    } else {
      b[i] = i % 7 == 0 ? a[i] : (i % 11 == 0 ? T(0) : T(uniform(rng)));
    }
  }
}

// How far the GPU may be from the CPU. Single roundings agree bit for bit (IEEE division is nvcc's
// default). pow is a library function on both sides, a few ulps apart. tanh_grad computes g (1 - y y):
// one side may fuse 1 - y y into a multiply-add that rounds once, so they differ by about one rounding
// of y y, times g.
template <class T>
double tolerance(BinaryOp op, T a, T b, T expected) {
  double relative = sizeof(T) == 4 ? 1e-6 : 1e-15;
  if (op == BinaryOp::pow) return relative * std::abs(double(expected));
  if (op == BinaryOp::tanh_grad) return relative * (std::abs(double(expected)) + std::abs(double(a) * b * b));
  return 0;
}

struct DeviceBuffer {
  DeviceBuffer(std::size_t bytes)
      : bytes(bytes), data(cuda::cuda_caching_allocator(kDevice).allocate(bytes)) {}
  ~DeviceBuffer() { cuda::cuda_caching_allocator(kDevice).release(data); }
  std::size_t bytes;
  void* data;
};

template <class T>
void check_op(BinaryOp op, int64_t n) {
  std::vector<T> a, b;
  make_inputs(op, n, 1000 * uint64_t(op) + uint64_t(n), a, b);
  std::vector<T> expected(n), actual(n, T(-99));
  visit_binary_op(op, [&](auto f) { cpu_launch_binary(f, a.data(), b.data(), expected.data(), n); });

  std::size_t bytes = sizeof(T) * std::size_t(n);
  DeviceBuffer device_a(bytes), device_b(bytes), device_out(bytes);
  cuda::copy_host_to_device(device_a.data, a.data(), bytes, kDevice);
  cuda::copy_host_to_device(device_b.data, b.data(), bytes, kDevice);
  cuda::cuda_binary_elementwise(op, dtype_of<T>(), device_a.data, device_b.data, device_out.data, n, kDevice);
  cuda::copy_device_to_host(actual.data(), device_out.data, bytes, kDevice);

  int64_t mismatches = 0, first = -1;
  for (int64_t i = 0; i < n; ++i) {
    double error = std::abs(double(actual[i]) - double(expected[i]));
    if (!(error <= tolerance(op, a[i], b[i], expected[i]))) {
      if (first < 0) first = i;
      ++mismatches;
    }
  }
  std::ostringstream first_mismatch;
  first_mismatch << std::setprecision(17);
  if (first >= 0)
    first_mismatch << "at " << first << ": a = " << a[first] << ", b = " << b[first] << ", cpu "
                   << expected[first] << ", gpu " << actual[first];
  INFO(binary_op_name(op), " ", dtype_name(dtype_of<T>()), " n = ", n, ", first mismatch ",
       first_mismatch.str());
  CHECK(mismatches == 0);
}
}  // namespace

TEST_CASE("every BinaryOp on the GPU matches its CPU launch, f32 and f64") {
  CachingAllocator::Stats before = cuda::cuda_caching_allocator(kDevice).stats();
  for (int index = 0; index < kBinaryOpCount; ++index) {
    for (int64_t n : {int64_t(1000), int64_t(1) << 20}) {
      check_op<float>(BinaryOp(index), n);
      check_op<double>(BinaryOp(index), n);
    }
  }
  CachingAllocator::Stats after = cuda::cuda_caching_allocator(kDevice).stats();
  CHECK(after.in_use_bytes == before.in_use_bytes);
  // Four buffer sizes (two lengths, two dtypes), three buffers each: the first case of each size
  // allocates, every later one is served from the cache.
  CHECK(after.raw_allocations - before.raw_allocations <= 12);
  CHECK(after.cache_hits - before.cache_hits >= std::size_t(3 * 4 * kBinaryOpCount - 12));
}

TEST_CASE("copies round-trip, device_to_device copies, out may alias an input, n = 0 is a no-op") {
  std::vector<double> host = {1, -2, 3.5, 4, 1e-300}, back(host.size());
  std::size_t bytes = host.size() * sizeof(double);
  DeviceBuffer x(bytes), y(bytes);
  cuda::copy_host_to_device(x.data, host.data(), bytes, kDevice);
  cuda::copy_device_to_device(y.data, x.data, bytes, kDevice);
  cuda::copy_device_to_host(back.data(), y.data, bytes, kDevice);
  CHECK(back == host);

  cuda::cuda_binary_elementwise(BinaryOp::mul, DType::f64, x.data, y.data, x.data, int64_t(host.size()),
                                kDevice);
  cuda::cuda_binary_elementwise(BinaryOp::add, DType::f64, x.data, y.data, y.data, 0, kDevice);
  cuda::copy_device_to_host(back.data(), x.data, bytes, kDevice);
  CHECK(back == std::vector<double>{1, 4, 12.25, 16, 0});
  cuda::copy_device_to_host(back.data(), y.data, bytes, kDevice);
  CHECK(back == host);
}

TEST_CASE("tensors: CPU -> CUDA -> CPU round trips keep every value (engine/transfer.h)") {
  Generator gen(2);
  for (DType dtype : {DType::f32, DType::f64}) {
    Tensor t = randn({5, 7}, gen, {dtype});
    Tensor on_gpu = to_device(t, Device::cuda(kDevice));
    CHECK(on_gpu.device() == Device::cuda(kDevice));
    CHECK(to_device(on_gpu, Device::cpu()).to_vector<double>() == t.to_vector<double>());
    Tensor view = t.transpose(0, 1);  // non-contiguous source: copied in the view's row-major order
    CHECK(to_device(to_device(view, Device::cuda(kDevice)), Device::cpu()).to_vector<double>() ==
          view.to_vector<double>());
  }
  Tensor indices = from_vector(std::vector<int64_t>{3, -1, 7}, {3});
  CHECK(to_device(to_device(indices, Device::cuda(kDevice)), Device::cpu()).to_vector<int64_t>() ==
        indices.to_vector<int64_t>());
}

TEST_CASE("bad arguments throw before anything reaches the device") {
  DeviceBuffer x(64);
  CHECK_THROWS_AS(
      cuda::cuda_binary_elementwise(BinaryOp::add, DType::i64, x.data, x.data, x.data, 8, kDevice),
      std::invalid_argument);
  CHECK_THROWS_AS(
      cuda::cuda_binary_elementwise(BinaryOp::add, DType::f32, x.data, x.data, x.data, -1, kDevice),
      std::invalid_argument);
  CHECK_THROWS_AS(cuda::cuda_binary_elementwise(BinaryOp::add, DType::f32, x.data, x.data, x.data, 8,
                                                cuda_status().device_count),
                  std::runtime_error);
}
#endif

int main(int argc, char** argv) {
  const icd::CudaStatus& status = icd::cuda_status();
  if (!status.available) {
    std::printf("test_cuda_parity: SKIPPED: %s\n", status.reason.c_str());
    std::fflush(stdout);
    return 77;
  }
  std::printf("test_cuda_parity: running on %s (%d device(s))\n", status.device_name.c_str(),
              status.device_count);
  doctest::Context context(argc, argv);
  return context.run();
}
