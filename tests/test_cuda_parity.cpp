// The CUDA kernels against the CPU launch of the same bodies (engine/kernels/launch.h), on random
// inputs, through the caching allocator and the copy helpers; and every op that dispatches to CUDA
// (elementwise, where, copies, fills, sum/mean/sum_to) against the CPU backend, forward and backward,
// with broadcasting and non-contiguous inputs. It needs a GPU: without one (or in a
// build without CUDA) its main prints why and exits 77, which CTest reports as "Skipped", never "Passed".
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>

#include "engine/cuda_status.h"

#if defined(ICD_WITH_CUDA)
#include <cmath>
#include <cstdint>
#include <functional>
#include <iomanip>
#include <random>
#include <sstream>
#include <vector>

#include "engine/autograd.h"
#include "engine/cuda/device_memory.h"
#include "engine/cuda/elementwise.h"
#include "engine/dispatch.h"
#include "engine/factory.h"
#include "engine/kernels/launch.h"
#include "engine/kernels/reduce_sum.h"
#include "engine/kernels/strided_index.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/reduce.h"
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
  if (op == BinaryOp::pow_scalar_grad) return relative * std::abs(double(expected));  // pow again
  if (op == BinaryOp::add_scaled)  // dst + alpha src: one side may fuse it into a multiply-add
    return relative * (std::abs(double(expected)) + std::abs(double(b)));
  return 0;
}

struct DeviceBuffer {
  DeviceBuffer(std::size_t bytes)
      : bytes(bytes), data(cuda::cuda_caching_allocator(kDevice).allocate(bytes)) {}
  ~DeviceBuffer() { cuda::cuda_caching_allocator(kDevice).release(data); }
  std::size_t bytes;
  void* data;
};

// Parameters for the ops that take some: an integer exponent keeps pow_scalar_grad real for any x.
BinaryOpCall call_of(BinaryOp op) {
  if (op == BinaryOp::pow_scalar_grad) return {op, 3.0};
  if (op == BinaryOp::clamp_grad) return {op, -0.5, 1.0};
  if (op == BinaryOp::add_scaled) return {op, -0.75};
  return op;
}

template <class T>
void check_op(BinaryOp op, int64_t n) {
  std::vector<T> a, b;
  make_inputs(op, n, 1000 * uint64_t(op) + uint64_t(n), a, b);
  std::vector<T> expected(n), actual(n, T(-99));
  visit_binary_op(call_of(op), [&](auto f) { cpu_launch_binary(f, a.data(), b.data(), expected.data(), n); });

  std::size_t bytes = sizeof(T) * std::size_t(n);
  DeviceBuffer device_a(bytes), device_b(bytes), device_out(bytes);
  cuda::copy_host_to_device(device_a.data, a.data(), bytes, kDevice);
  cuda::copy_host_to_device(device_b.data, b.data(), bytes, kDevice);
  cuda::cuda_binary_elementwise(call_of(op), dtype_of<T>(), device_a.data, device_b.data, device_out.data, n,
                                kDevice);
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

TEST_CASE("pinned host tensors are page-locked on a GPU machine and upload like any other") {
  Generator gen(3);
  Tensor pinned = empty({64, 33}, {DType::f32, Device::cpu(), true});
  CHECK(pinned.is_pinned());
  copy_(pinned, randn({64, 33}, gen));
  const Tensor on_gpu = to_device(pinned, Device::cuda(kDevice));
  CHECK(to_device(on_gpu, Device::cpu()).to_vector<float>() == pinned.to_vector<float>());
  for (int i = 0; i < 3; ++i)  // released blocks come back from the cache
    CHECK(empty({64, 33}, {DType::f32, Device::cpu(), true}).is_pinned());
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

// ---------------------------------------------------------------------------------------------------
// Ops on CUDA tensors against the same ops on the CPU.

namespace {
const Device kGpu = Device::cuda(kDevice);

Tensor gpu(const Tensor& t) {
  return to_device(t, kGpu);
}
Tensor host(const Tensor& t) {
  return to_device(t, Device::cpu());
}

// How far a GPU result may be from the CPU's, relative to max(|cpu|, 1) (inputs are O(1)):
// - exact (0) for what only moves or compares data: copies, fills, comparisons, where, relu/abs/neg,
//   maximum/minimum, and for single roundings (add, sub, mul, div: IEEE on both sides);
// - f64 1e-12: the GPU's exp/log/tanh/pow are within a few ulps (~1e-16) of glibc's, and sums in double
//   in another order differ by about n ulps; backward chains several such ops;
// - f32 1e-6: a few f32 ulps (6e-8 each) for the transcendental functions and chains of them.
double tolerance(DType dtype) {
  return dtype == DType::f64 ? 1e-12 : 1e-6;
}

void check_same(const Tensor& on_gpu, const Tensor& on_cpu, double relative, const std::string& what) {
  INFO(what);
  REQUIRE(on_gpu.defined());
  REQUIRE(on_cpu.defined());
  CHECK(on_gpu.device() == kGpu);
  CHECK(on_gpu.shape() == on_cpu.shape());
  CHECK(on_gpu.dtype() == on_cpu.dtype());
  const std::vector<double> actual = host(on_gpu).to_vector<double>(), expected = on_cpu.to_vector<double>();
  REQUIRE(actual.size() == expected.size());
  int64_t mismatches = 0, first = -1;
  for (std::size_t i = 0; i < actual.size(); ++i) {
    const bool both_nan = std::isnan(actual[i]) && std::isnan(expected[i]);
    const double error = std::abs(actual[i] - expected[i]);
    if (!both_nan && !(error <= relative * std::max(std::abs(expected[i]), 1.0))) {
      if (first < 0) first = int64_t(i);
      ++mismatches;
    }
  }
  std::ostringstream detail;
  detail << std::setprecision(17);
  if (first >= 0)
    detail << "first mismatch at " << first << ": cpu " << expected[first] << ", gpu " << actual[first];
  INFO(detail.str());
  CHECK(mismatches == 0);
}

// An op's input: a random base tensor made on the CPU (and copied to the GPU), and the view of it that
// the op receives, so that GPU inputs are views of GPU storage with the same strides as the CPU's.
struct Input {
  uint64_t seed;
  Shape shape;
  double low, high;
  std::function<Tensor(const Tensor&)> view;
};
// [3, 4, 5] through a permutation of a [5, 3, 4] base (non-contiguous).
Input permuted(uint64_t seed, double low, double high) {
  return {seed, {5, 3, 4}, low, high, [](const Tensor& t) { return t.permute({1, 2, 0}); }};
}
// [4, 1] sliced from a [4, 3] base (non-contiguous), broadcasting against [3, 4, 5].
Input column(uint64_t seed, double low, double high) {
  return {seed, {4, 3}, low, high, [](const Tensor& t) { return t.narrow(1, 1, 1); }};
}
Tensor base_of(const Input& input, DType dtype) {
  Generator gen(input.seed);
  return uniform(input.shape, input.low, input.high, gen, {dtype});
}

using Inputs = std::vector<Tensor>;

// Runs `op` on the CPU inputs and on the GPU ones and compares the outputs (`exact`: bit for bit).
template <class Op>
void check_op_parity(const std::string& name, DType dtype, const std::vector<Input>& inputs, Op op,
                     bool exact) {
  Inputs cpu_in, gpu_in;
  for (const Input& input : inputs) {
    const Tensor base = base_of(input, dtype);
    cpu_in.push_back(input.view(base));
    gpu_in.push_back(input.view(gpu(base)));
  }
  check_same(op(gpu_in), op(cpu_in), exact ? 0.0 : tolerance(dtype), name + " forward " + dtype_name(dtype));
}

// Gradients: the bases are leaves on each device, the op sees their views, and sum(out * weight) is
// back-propagated on both; every leaf's gradient is compared. A second backward through a new graph
// accumulates into .grad (add_ on the GPU) and is compared again. A leaf that gets no gradient on the CPU
// (a condition) must get none on the GPU either.
template <class Op>
void check_grad_parity(const std::string& name, DType dtype, const std::vector<Input>& inputs, Op op) {
  Inputs cpu_leaves, gpu_leaves;
  for (const Input& input : inputs) {
    Tensor base = base_of(input, dtype);
    Tensor on_gpu = gpu(base);
    cpu_leaves.push_back(base.set_requires_grad());
    gpu_leaves.push_back(on_gpu.set_requires_grad());
  }
  auto run = [&](const Inputs& leaves) {
    Inputs views;
    for (std::size_t i = 0; i < leaves.size(); ++i)
      views.push_back(inputs[i].view(leaves[i]));
    return op(views);
  };
  Generator gen(77);
  const Tensor weight = randn(run(cpu_leaves).shape(), gen, {dtype});
  const Tensor weight_gpu = gpu(weight);
  for (const char* pass : {"grad", "accumulated grad"}) {
    sum(mul(run(cpu_leaves), weight)).backward();
    sum(mul(run(gpu_leaves), weight_gpu)).backward();
    for (std::size_t i = 0; i < inputs.size(); ++i) {
      const std::string what = name + " " + pass + " of input " + std::to_string(i) + " " + dtype_name(dtype);
      if (!cpu_leaves[i].grad().defined()) {
        INFO(what);
        CHECK_FALSE(gpu_leaves[i].grad().defined());
        continue;
      }
      check_same(gpu_leaves[i].grad(), cpu_leaves[i].grad(), tolerance(dtype), what);
    }
  }
}
}  // namespace

TEST_CASE("binary ops on CUDA tensors match the CPU: broadcasting, non-contiguous, forward and backward") {
  const Input a = permuted(1, 0.5, 2.0), b = column(2, -1.5, 1.5), positive_b = column(3, 0.5, 2.0);
  using Binary = Tensor (*)(const Tensor&, const Tensor&);
  struct Case {
    const char* name;
    Binary op;
    Input second;
    bool exact;  // single IEEE roundings or selections: bit for bit
  };
  const std::vector<Case> cases = {
      {"add", add, b, true},          {"sub", sub, b, true},  {"mul", mul, b, true},
      {"div", div, positive_b, true}, {"pow", pow, b, false}, {"maximum", maximum, b, true},
      {"minimum", minimum, b, true},
  };
  for (DType dtype : {DType::f32, DType::f64}) {
    for (const Case& c : cases) {
      check_op_parity(
          c.name, dtype, {a, c.second}, [op = c.op](const Inputs& in) { return op(in[0], in[1]); }, c.exact);
      check_grad_parity(c.name, dtype, {a, c.second},
                        [op = c.op](const Inputs& in) { return op(in[0], in[1]); });
    }
    check_op_parity(
        "scalar ops", dtype, {a},
        [](const Inputs& in) { return div(sub(mul(add(in[0], 1.5), 2.0), 0.25), 3.0); }, true);
    for (auto [name, compare] : std::vector<std::pair<const char*, Binary>>{
             {"eq", eq}, {"ne", ne}, {"lt", lt}, {"le", le}, {"gt", gt}, {"ge", ge}}) {
      check_op_parity(
          name, dtype, {a, b}, [compare](const Inputs& in) { return compare(in[0], in[1]); }, true);
      // Against a slice of itself: every element of column 0 ties.
      check_op_parity(
          name, dtype, {a}, [compare](const Inputs& in) { return compare(in[0], in[0].narrow(1, 0, 1)); },
          true);
    }
  }
}

TEST_CASE("unary ops and where on CUDA tensors match the CPU, forward and backward") {
  const Input x = permuted(4, -2.0, 2.0), positive = permuted(5, 0.25, 3.0), b = column(7, -1.0, 1.0);
  // A 1/0 condition computed from its base: no gradient reaches that base.
  const Input condition{6, {4, 3}, -1.0, 1.0, [](const Tensor& t) { return gt(t.narrow(1, 2, 1), 0.0); }};
  struct Unary {
    const char* name;
    Tensor (*op)(const Tensor&);
    bool positive_input, exact;
  };
  const std::vector<Unary> unary = {{"neg", neg, false, true},          {"exp", exp, false, false},
                                    {"log", log, true, false},          {"sqrt", sqrt, true, false},
                                    {"abs", abs, false, true},          {"relu", relu, false, true},
                                    {"sigmoid", sigmoid, false, false}, {"tanh", tanh, false, false}};
  for (DType dtype : {DType::f32, DType::f64}) {
    for (const Unary& u : unary) {
      const Input& input = u.positive_input ? positive : x;
      check_op_parity(
          u.name, dtype, {input}, [op = u.op](const Inputs& in) { return op(in[0]); }, u.exact);
      check_grad_parity(u.name, dtype, {input}, [op = u.op](const Inputs& in) { return op(in[0]); });
    }
    check_op_parity(
        "pow scalar", dtype, {positive}, [](const Inputs& in) { return pow(in[0], 2.5); }, false);
    check_grad_parity("pow scalar", dtype, {positive}, [](const Inputs& in) { return pow(in[0], 2.5); });
    check_op_parity(
        "clamp", dtype, {x}, [](const Inputs& in) { return clamp(in[0], -0.5, 1.25); }, true);
    check_grad_parity("clamp", dtype, {x}, [](const Inputs& in) { return clamp(in[0], -0.5, 1.25); });
    check_op_parity(
        "where", dtype, {condition, x, b}, [](const Inputs& in) { return where(in[0], in[1], in[2]); }, true);
    check_op_parity(
        "masked_fill", dtype, {x, condition},
        [](const Inputs& in) { return masked_fill(in[0], in[1], -3.0); }, true);
    check_grad_parity("where", dtype, {condition, x, b},
                      [](const Inputs& in) { return where(in[0], in[1], in[2]); });
  }
}

TEST_CASE("sum, mean and sum_to on CUDA tensors match the CPU and repeat bit for bit") {
  const Input x = permuted(8, -1.0, 1.0);
  for (DType dtype : {DType::f32, DType::f64}) {
    for (const std::vector<int64_t>& dims :
         std::vector<std::vector<int64_t>>{{}, {0}, {1}, {-1}, {0, 2}, {1, 2}}) {
      for (bool keepdim : {false, true}) {
        const std::string what = "dims " + shape_str(dims) + (keepdim ? " keepdim" : "");
        auto sum_op = [&](const Inputs& in) { return sum(in[0], dims, keepdim); };
        auto mean_op = [&](const Inputs& in) { return mean(in[0], dims, keepdim); };
        check_op_parity("sum " + what, dtype, {x}, sum_op, false);
        check_op_parity("mean " + what, dtype, {x}, mean_op, false);
        check_grad_parity("sum " + what, dtype, {x}, sum_op);
        check_grad_parity("mean " + what, dtype, {x}, mean_op);
      }
    }
    check_op_parity(
        "sum_to", dtype, {x},
        [](const Inputs& in) {
          return sum_to(in[0], {4, 1});
        },
        false);
    check_grad_parity("sum_to", dtype, {x}, [](const Inputs& in) { return sum_to(in[0], {1, 4, 1}); });

    // Long rows take the chunked plan (few outputs, many elements), short columns one thread each. The
    // chunked result is the CPU launch's of the same plan, bit for bit, and the same on every run.
    const Input big{9, {2, 1 << 20}, -1.0, 1.0, [](const Tensor& t) { return t; }};
    check_op_parity(
        "sum of long rows", dtype, {big}, [](const Inputs& in) { return sum(in[0], {1}); }, false);
    check_op_parity(
        "sum of everything", dtype, {big}, [](const Inputs& in) { return sum(in[0]); }, false);
    check_op_parity(
        "sum of short columns", dtype, {big}, [](const Inputs& in) { return sum(in[0], {0}); }, false);
    const Tensor big_cpu = base_of(big, dtype), big_gpu = gpu(big_cpu);
    const Tensor first = host(sum(big_gpu, {1})), second = host(sum(big_gpu, {1}));
    CHECK(first.to_vector<double>() == second.to_vector<double>());
    dispatch_floating(dtype, "test", [&](auto tag) {
      using T = decltype(tag);
      const SumLayout layout{make_strided_layout<1>({2}, {std::vector<int64_t>{1 << 20}}, "test"),
                             make_strided_layout<1>({1 << 20}, {std::vector<int64_t>{1}}, "test")};
      std::vector<T> expected(2);
      cpu_launch_sum(big_cpu.data<T>(), layout, plan_sum(2, 1 << 20), expected.data());
      CHECK(first.to_vector<T>() == expected);
    });
  }
}

TEST_CASE("copies, contiguous, dtype conversion and fills on CUDA tensors") {
  Generator gen(10);
  const Tensor x = randn({4, 6}, gen, {DType::f64});
  const Tensor x_gpu = gpu(x);
  // contiguous() of views: a transpose, a slice, an expand (stride 0).
  for (const auto& [name, view] : std::vector<std::pair<std::string, std::function<Tensor(const Tensor&)>>>{
           {"transpose", [](const Tensor& t) { return t.transpose(0, 1); }},
           {"narrow", [](const Tensor& t) { return t.narrow(1, 2, 3); }},
           {"expand", [](const Tensor& t) {
              return t.narrow(0, 1, 1).expand({5, 6});
            }}}) {
    const Tensor on_gpu = view(x_gpu).contiguous();
    CHECK(on_gpu.is_contiguous());
    check_same(on_gpu, view(x).contiguous(), 0.0, "contiguous of " + name);
    check_same(gpu(view(x)), view(x).contiguous(), 0.0, "to_device of " + name);  // moved after a GPU copy
  }
  // copy_ into a strided window of a zero tensor, broadcasting a row.
  Tensor cpu_dst = zeros({4, 6}, {DType::f64}), gpu_dst = zeros({4, 6}, {DType::f64, kGpu});
  Tensor cpu_window = cpu_dst.narrow(1, 1, 3), gpu_window = gpu_dst.narrow(1, 1, 3);
  copy_(cpu_window, x.narrow(0, 0, 1).narrow(1, 0, 3));
  copy_(gpu_window, x_gpu.narrow(0, 0, 1).narrow(1, 0, 3));
  check_same(gpu_dst, cpu_dst, 0.0, "copy_ into a window");
  // Conversions among f32, f64, i64.
  for (DType from : {DType::f32, DType::f64, DType::i64}) {
    for (DType to : {DType::f32, DType::f64, DType::i64}) {
      const Tensor source = mul(x, 10.0).to(from);
      check_same(gpu(source).transpose(0, 1).to(to), source.transpose(0, 1).to(to), 0.0,
                 std::string("to ") + dtype_name(from) + " -> " + dtype_name(to));
    }
  }
  // Factories and fill_.
  for (DType dtype : {DType::f32, DType::f64, DType::i64}) {
    check_same(zeros({3, 5}, {dtype, kGpu}), zeros({3, 5}, {dtype}), 0.0, "zeros");
    check_same(ones({3, 5}, {dtype, kGpu}), ones({3, 5}, {dtype}), 0.0, "ones");
    check_same(full({3, 5}, -7.0, {dtype, kGpu}), full({3, 5}, -7.0, {dtype}), 0.0, "full");
    check_same(full({}, 2.5, {dtype, kGpu}), full({}, 2.5, {dtype}), 0.0, "full 0-d");
    Tensor cpu_t = zeros({3, 5}, {dtype}), gpu_t = zeros({3, 5}, {dtype, kGpu});
    Tensor cpu_column = cpu_t.narrow(1, 2, 1), gpu_column = gpu_t.narrow(1, 2, 1);
    fill_(cpu_column, 4.0);
    fill_(gpu_column, 4.0);
    check_same(gpu_t, cpu_t, 0.0, "fill_ of a column");
  }
  Generator same_seed_cpu(11), same_seed_gpu(11);  // host-made factories are copied to the device
  check_same(randn({7}, same_seed_gpu, {DType::f32, kGpu}), randn({7}, same_seed_cpu, {DType::f32}), 0.0,
             "randn");
  check_same(arange(5, {DType::i64, kGpu}), arange(5, {DType::i64}), 0.0, "arange");
}

TEST_CASE("in-place add_ and mul_ on CUDA tensors, including a broadcast source and a strided destination") {
  NoGradGuard no_grad;
  Generator gen(12);
  for (DType dtype : {DType::f32, DType::f64}) {
    const Tensor base = randn({3, 4}, gen, {dtype}), row = randn({4}, gen, {dtype});
    Tensor cpu_t = base.clone(), gpu_t = gpu(base);
    Tensor cpu_view = cpu_t.transpose(0, 1), gpu_view = gpu_t.transpose(0, 1);
    add_(cpu_t, row, -0.5);
    add_(gpu_t, gpu(row), -0.5);
    mul_(cpu_view, 3.0);
    mul_(gpu_view, 3.0);
    check_same(gpu_t, cpu_t, tolerance(dtype), std::string("add_ then mul_ ") + dtype_name(dtype));
  }
}

TEST_CASE("mixing devices is refused naming the op and both devices; ops without CUDA kernels say so") {
  Generator gen(13);
  const Tensor on_cpu = randn({2, 3}, gen), on_gpu = gpu(randn({2, 3}, gen));
  CHECK_THROWS_WITH_AS(add(on_cpu, on_gpu), doctest::Contains("add: b is on cuda:0 but a is on cpu"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(where(on_gpu, on_cpu, on_gpu),
                       doctest::Contains("where: a is on cpu but condition is on cuda:0"),
                       std::invalid_argument);
  Tensor dst = zeros({2, 3}, {DType::f32, kGpu});
  CHECK_THROWS_WITH_AS(copy_(dst, on_cpu), doctest::Contains("copy_: src is on cpu but dst is on cuda:0"),
                       std::invalid_argument);
  // Every op has a CUDA kernel now; the refusal for one that has none is require_cpu's.
  CHECK_THROWS_WITH_AS(require_cpu("an_op_without_cuda", {{"x", on_gpu}}),
                       doctest::Contains("no CUDA kernel yet"), std::runtime_error);
}

TEST_CASE("ops on CUDA tensors give back every block to the caching allocator") {
  CachingAllocator::Stats before = cuda::cuda_caching_allocator(kDevice).stats();
  {
    Generator gen(14);
    Tensor x = gpu(randn({64, 64}, gen));
    x.set_requires_grad();
    sum(mul(exp(x.transpose(0, 1)), sigmoid(x))).backward();
    CHECK(x.grad().device() == kGpu);
  }
  CHECK(cuda::cuda_caching_allocator(kDevice).stats().in_use_bytes == before.in_use_bytes);
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
