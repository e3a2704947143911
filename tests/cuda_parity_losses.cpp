// Part of test_cuda_parity (its main skips the whole binary without a GPU): the reductions along a
// dimension (max/min, argmax/argmin, amax/amin, logsumexp, softmax, log_softmax), the fused losses
// (sigmoid focal, BCE with logits, L1, smooth L1, MSE, cross entropy) and the indexing ops (index_select,
// gather) on CUDA tensors against the CPU backend, forward and backward, f32 and f64, non-contiguous
// inputs, ties, NaN and infinities, every reduction mode.
//
// Tolerances, relative to max(|cpu|, 1):
// - exact (0) for what selects or moves values: max/min values and indices (the GPU's tree keeps the
//   first of equal values and the first NaN, as the CPU's scan), argmax/argmin, amax/amin and their
//   backward (a comparison, a count of ties and one division), index_select and gather forward, and their
//   backward (the GPU adds each element's contributions in the CPU's order);
// - f64 1e-12, f32 1e-6 for exp/log/log1p/pow chains (a few ulps apart between CUDA's and glibc's
//   libraries) and for sums accumulated in double in another order (the GPU's tree, the CPU's OpenMP
//   reduction): about n ulps of double, far below either bound. nvcc may also fuse a multiply and an add
//   into one rounding where the CPU rounds twice (one ulp of the product, within the bound);
// - for logsumexp, softmax and log_softmax, that bound grown with the inputs' range (exp_chain_tolerance).
#include <doctest/doctest.h>

#if defined(ICD_WITH_CUDA)
#include <cmath>
#include <functional>
#include <iomanip>
#include <limits>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "cuda_parity.h"
#include "engine/autograd.h"
#include "engine/factory.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/loss.h"
#include "engine/ops/reduce.h"
#include "engine/ops/shape.h"
#include "engine/random.h"
#include "engine/transfer.h"

using namespace icd;
using testing::host_values;
using testing::kGpu;

namespace {

using Inputs = std::vector<Tensor>;
using Op = std::function<Tensor(const Inputs&)>;

double smooth_tolerance(DType dtype) {
  return dtype == DType::f64 ? 1e-12 : 1e-6;
}

// logsumexp, softmax, log_softmax: their outputs (and logsumexp inside the backward) reach magnitudes of
// about 2 max|x|, and one rounding of such a value that differs between the devices (half an ulp, 6e-8
// of it in f32) passes through exp(x - y) and the sums of g (a few units here) into the gradient: the
// bound grows with the inputs' range, 1e-6 (1 + 2 max|x|) in f32.
double exp_chain_tolerance(DType dtype, double max_abs_input) {
  return smooth_tolerance(dtype) * (1.0 + 2.0 * max_abs_input);
}

void expect_close(const Tensor& on_gpu, const Tensor& on_cpu, double relative, const std::string& what) {
  INFO(what);
  REQUIRE(on_gpu.defined());
  REQUIRE(on_cpu.defined());
  CHECK(on_gpu.device() == kGpu);
  CHECK(on_gpu.shape() == on_cpu.shape());
  CHECK(on_gpu.dtype() == on_cpu.dtype());
  const std::vector<double> actual = host_values(on_gpu), expected = host_values(on_cpu);
  REQUIRE(actual.size() == expected.size());
  int64_t mismatches = 0, first = -1;
  for (std::size_t i = 0; i < actual.size(); ++i) {
    const bool same = actual[i] == expected[i] || (std::isnan(actual[i]) && std::isnan(expected[i]));
    const double error = std::abs(actual[i] - expected[i]);
    if (!same && !(error <= relative * std::max(std::abs(expected[i]), 1.0))) {
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

// An op's input: its values (made on the CPU) and whether it is a leaf that requires grad.
struct Leaf {
  Tensor value;
  bool grad = true;
};

// op on CPU leaves and on GPU copies of them: the outputs, then the gradients of sum(out * w) for a fixed
// random w, compared within `relative` (0: bit for bit). The op may take views (non-contiguous inputs).
void check_parity(const std::string& what, const std::vector<Leaf>& leaves, const Op& op, double relative) {
  Inputs cpu, gpu;
  bool any_grad = false;
  for (const Leaf& leaf : leaves) {
    Tensor on_cpu = leaf.value.detach().contiguous(), on_gpu = to_device(leaf.value, kGpu);
    if (leaf.grad) {
      on_cpu.set_requires_grad(true);
      on_gpu.set_requires_grad(true);
      any_grad = true;
    }
    cpu.push_back(on_cpu);
    gpu.push_back(on_gpu);
  }
  const Tensor cpu_out = op(cpu), gpu_out = op(gpu);
  expect_close(gpu_out, cpu_out, relative, what + " forward");
  if (!any_grad) return;
  Generator gen(5);
  const Tensor weight = randn(cpu_out.shape(), gen, {cpu_out.dtype()});
  sum(mul(cpu_out, weight)).backward();
  sum(mul(gpu_out, to_device(weight, kGpu))).backward();
  for (std::size_t i = 0; i < leaves.size(); ++i) {
    if (!leaves[i].grad) continue;
    REQUIRE(cpu[i].grad().defined());
    expect_close(gpu[i].grad(), cpu[i].grad(), relative, what + " grad of input " + std::to_string(i));
  }
}

// Index outputs (i64) must agree exactly.
void check_indices(const std::string& what, const Tensor& on_gpu, const Tensor& on_cpu) {
  INFO(what);
  CHECK(on_gpu.device() == kGpu);
  CHECK(on_gpu.dtype() == DType::i64);
  CHECK(on_gpu.shape() == on_cpu.shape());
  CHECK(to_device(on_gpu, Device::cpu()).to_vector<int64_t>() == on_cpu.to_vector<int64_t>());
}

// Values with many ties: small integers (exact in f32 and f64).
Tensor tied(const Shape& shape, DType dtype, uint64_t seed) {
  Generator gen(seed);
  std::vector<double> values(shape_numel(shape));
  for (double& v : values)
    v = std::floor(gen.uniform() * 4.0);
  return from_vector(values, shape, {dtype});
}

Tensor random_uniform(const Shape& shape, DType dtype, uint64_t seed, double low = -2.0, double high = 2.0) {
  Generator gen(seed);
  return uniform(shape, low, high, gen, {dtype});
}

// Some NaN and infinities planted among random values.
Tensor with_specials(const Shape& shape, DType dtype, uint64_t seed) {
  std::vector<double> values = random_uniform(shape, DType::f64, seed).to_vector<double>();
  const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
  for (std::size_t i = 0; i < values.size(); i += 7)
    values[i] = (i / 7) % 3 == 0 ? nan : ((i / 7) % 3 == 1 ? inf : -inf);
  return from_vector(values, shape, {dtype});
}

}  // namespace

TEST_CASE("max, min, argmax, argmin on CUDA tensors: first index on ties, NaN first, every dimension") {
  for (DType dtype : {DType::f32, DType::f64}) {
    const std::string type = dtype_name(dtype);
    // [4, 5, 6] as a permuted view of a [6, 4, 5] base; short lanes (one thread each).
    for (int64_t dim : {0, 1, 2, -1}) {
      for (bool keepdim : {false, true}) {
        const std::string what = type + " dim " + std::to_string(dim) + (keepdim ? " keepdim" : "");
        for (bool is_max : {true, false}) {
          auto values = [=](const Inputs& in) {
            const Tensor view = in[0].permute({1, 2, 0});
            return is_max ? max(view, dim, keepdim).values : min(view, dim, keepdim).values;
          };
          check_parity((is_max ? "max " : "min ") + what, {{tied({6, 4, 5}, dtype, 1)}}, values, 0.0);
          check_parity((is_max ? "max " : "min ") + what + " random", {{random_uniform({6, 4, 5}, dtype, 2)}},
                       values, 0.0);
          const Tensor x = tied({6, 4, 5}, dtype, 3).permute({1, 2, 0});
          const Tensor x_gpu = to_device(tied({6, 4, 5}, dtype, 3), kGpu).permute({1, 2, 0});
          check_indices("indices " + what,
                        (is_max ? max(x_gpu, dim, keepdim) : min(x_gpu, dim, keepdim)).indices,
                        (is_max ? max(x, dim, keepdim) : min(x, dim, keepdim)).indices);
          check_indices("arg " + what, is_max ? argmax(x_gpu, dim, keepdim) : argmin(x_gpu, dim, keepdim),
                        is_max ? argmax(x, dim, keepdim) : argmin(x, dim, keepdim));
          const Tensor special = with_specials({4, 5, 6}, dtype, 4);
          const Tensor special_gpu = to_device(special, kGpu);
          expect_close(is_max ? max(special_gpu, dim, keepdim).values : min(special_gpu, dim, keepdim).values,
                       is_max ? max(special, dim, keepdim).values : min(special, dim, keepdim).values, 0.0,
                       "NaN and inf " + what);
          check_indices("NaN and inf indices " + what,
                        is_max ? argmax(special_gpu, dim, keepdim) : argmin(special_gpu, dim, keepdim),
                        is_max ? argmax(special, dim, keepdim) : argmin(special, dim, keepdim));
        }
      }
    }
    // Long lanes: many threads per lane and the combining tree, contiguous (inner 1) and strided (inner 3).
    for (const auto& [shape, dim] :
         std::vector<std::pair<Shape, int64_t>>{{{3, 5000}, 1}, {{2, 3000, 3}, 1}}) {
      const Tensor x = tied(shape, dtype, 5), special = with_specials(shape, dtype, 6);
      const Tensor x_gpu = to_device(x, kGpu), special_gpu = to_device(special, kGpu);
      const std::string what = type + " long lanes " + shape_str(shape);
      check_parity(
          "max " + what, {{x}}, [dim](const Inputs& in) { return max(in[0], dim).values; }, 0.0);
      check_parity(
          "min " + what, {{x}}, [dim](const Inputs& in) { return min(in[0], dim).values; }, 0.0);
      check_indices("argmax " + what, argmax(x_gpu, dim), argmax(x, dim));
      check_indices("argmin " + what, argmin(x_gpu, dim), argmin(x, dim));
      check_indices("argmax NaN " + what, argmax(special_gpu, dim), argmax(special, dim));
      check_indices("argmin NaN " + what, argmin(special_gpu, dim), argmin(special, dim));
    }
    // Over the flattened tensor, of a view.
    const Tensor x = tied({7, 9}, dtype, 7);
    check_indices(type + " argmax of all", argmax(to_device(x, kGpu).transpose(0, 1)),
                  argmax(x.transpose(0, 1)));
    check_indices(type + " argmin of all", argmin(to_device(x, kGpu).transpose(0, 1)),
                  argmin(x.transpose(0, 1)));
  }
}

TEST_CASE("amax and amin on CUDA tensors: values, and gradients shared among ties") {
  for (DType dtype : {DType::f32, DType::f64}) {
    for (const std::vector<int64_t>& dims : std::vector<std::vector<int64_t>>{{}, {0}, {2}, {1, 2}, {0, 2}}) {
      for (bool keepdim : {false, true}) {
        const std::string what =
            std::string(dtype_name(dtype)) + " dims " + shape_str(dims) + (keepdim ? " keepdim" : "");
        check_parity(
            "amax " + what, {{tied({6, 4, 5}, dtype, 8)}},
            [&](const Inputs& in) {
              return amax(in[0].permute({1, 2, 0}), dims, keepdim);
            },
            0.0);
        check_parity(
            "amin " + what, {{tied({6, 4, 5}, dtype, 9)}},
            [&](const Inputs& in) {
              return amin(in[0].permute({1, 2, 0}), dims, keepdim);
            },
            0.0);
      }
    }
  }
}

TEST_CASE("logsumexp, softmax and log_softmax on CUDA tensors, forward and backward") {
  for (DType dtype : {DType::f32, DType::f64}) {
    const double tol = exp_chain_tolerance(dtype, 30.0);
    const std::string type = dtype_name(dtype);
    for (int64_t dim : {0, 1, 2, -1}) {
      const std::string what = type + " dim " + std::to_string(dim);
      // A wide range of values: exp(x) spans 26 orders of magnitude, so the shift by the maximum matters.
      const Leaf x{random_uniform({6, 4, 5}, dtype, 10, -30.0, 30.0)};
      check_parity(
          "logsumexp " + what, {x},
          [dim](const Inputs& in) {
            return logsumexp(in[0].permute({1, 2, 0}), dim);
          },
          tol);
      check_parity(
          "logsumexp keepdim " + what, {x},
          [dim](const Inputs& in) {
            return logsumexp(in[0].permute({1, 2, 0}), dim, true);
          },
          tol);
      check_parity(
          "softmax " + what, {x},
          [dim](const Inputs& in) {
            return softmax(in[0].permute({1, 2, 0}), dim);
          },
          tol);
      check_parity(
          "log_softmax " + what, {x},
          [dim](const Inputs& in) {
            return log_softmax(in[0].permute({1, 2, 0}), dim);
          },
          tol);
    }
    // Long lanes (the tree over many threads), contiguous and strided.
    for (const auto& [shape, dim] :
         std::vector<std::pair<Shape, int64_t>>{{{3, 5000}, 1}, {{2, 3000, 3}, 1}}) {
      const Leaf x{random_uniform(shape, dtype, 11, -5.0, 5.0)};
      const double long_tol = exp_chain_tolerance(dtype, 5.0);
      const std::string what = type + " long lanes " + shape_str(shape);
      check_parity(
          "logsumexp " + what, {x}, [dim](const Inputs& in) { return logsumexp(in[0], dim); }, long_tol);
      check_parity(
          "softmax " + what, {x}, [dim](const Inputs& in) { return softmax(in[0], dim); }, long_tol);
      check_parity(
          "log_softmax " + what, {x}, [dim](const Inputs& in) { return log_softmax(in[0], dim); }, long_tol);
      // The same bits on every run.
      const Tensor x_gpu = to_device(x.value, kGpu);
      CHECK(host_values(softmax(x_gpu, dim)) == host_values(softmax(x_gpu, dim)));
      CHECK(host_values(logsumexp(x_gpu, dim)) == host_values(logsumexp(x_gpu, dim)));
    }
    // Infinities and NaN: +inf gives +inf, an all -inf lane gives -inf, NaN propagates.
    const double inf = std::numeric_limits<double>::infinity(),
                 nan = std::numeric_limits<double>::quiet_NaN();
    const Tensor special =
        from_vector(std::vector<double>{inf, 1, 2, -inf, -inf, -inf, nan, 1, 2, 0, 1, 2}, {4, 3}, {dtype});
    const Tensor special_gpu = to_device(special, kGpu);
    expect_close(logsumexp(special_gpu, 1), logsumexp(special, 1), tol, type + " logsumexp of inf and NaN");
    expect_close(softmax(special_gpu, 1), softmax(special, 1), tol, type + " softmax of inf and NaN");
    expect_close(log_softmax(special_gpu, 1), log_softmax(special, 1), tol,
                 type + " log_softmax of inf and NaN");
  }
}

TEST_CASE("pointwise losses on CUDA tensors: every loss and reduction, weights, non-contiguous inputs") {
  const std::vector<std::pair<const char*, Reduction>> reductions = {
      {"none", Reduction::none}, {"mean", Reduction::mean}, {"sum", Reduction::sum}};
  for (DType dtype : {DType::f32, DType::f64}) {
    const double tol = smooth_tolerance(dtype);
    // Logits up to +-30 (the stable forms matter there), hard and soft targets in [0, 1].
    const Tensor logits = random_uniform({5, 7}, dtype, 12, -30.0, 30.0);
    std::vector<double> target_values = random_uniform({5, 7}, DType::f64, 13, 0.0, 1.0).to_vector<double>();
    for (std::size_t i = 0; i < target_values.size(); ++i)
      if (i % 3 != 2) target_values[i] = i % 3 == 0 ? 0.0 : 1.0;
    const Tensor targets = from_vector(target_values, {5, 7}, {dtype});
    const Tensor a = random_uniform({5, 7}, dtype, 14), b = random_uniform({5, 7}, dtype, 15);
    const Tensor weight = random_uniform({7}, dtype, 16, 0.5, 2.0);  // broadcast over the rows
    for (const auto& [name, reduction] : reductions) {
      const std::string what = std::string(dtype_name(dtype)) + " " + name;
      Reduction r = reduction;
      // Every input is seen through a transpose of a [7, 5] base (non-contiguous).
      auto t = [](const Tensor& x) { return x.transpose(0, 1); };
      for (double gamma : {2.0, 1.5, 0.0}) {
        check_parity(
            "sigmoid_focal_loss gamma " + std::to_string(gamma) + " " + what,
            {{t(logits).contiguous()}, {t(targets).contiguous(), false}},
            [&](const Inputs& in) { return sigmoid_focal_loss(t(in[0]), t(in[1]), 0.25, gamma, r); }, tol);
      }
      check_parity(
          "sigmoid_focal_loss alpha < 0 " + what,
          {{t(logits).contiguous()}, {t(targets).contiguous(), false}},
          [&](const Inputs& in) { return sigmoid_focal_loss(t(in[0]), t(in[1]), -1.0, 2.0, r); }, tol);
      check_parity(
          "binary_cross_entropy_with_logits " + what, {{t(logits).contiguous()}, {t(targets).contiguous()}},
          [&](const Inputs& in) { return binary_cross_entropy_with_logits(t(in[0]), t(in[1]), r); }, tol);
      check_parity(
          "binary_cross_entropy_with_logits weighted " + what,
          {{t(logits).contiguous()}, {t(targets).contiguous()}, {weight}},
          [&](const Inputs& in) { return binary_cross_entropy_with_logits(t(in[0]), t(in[1]), r, in[2]); },
          tol);
      check_parity(
          "l1_loss " + what, {{t(a).contiguous()}, {t(b).contiguous()}},
          [&](const Inputs& in) { return l1_loss(t(in[0]), t(in[1]), r); }, tol);
      for (double beta : {1.0, 0.5, 0.0}) {
        check_parity(
            "smooth_l1_loss beta " + std::to_string(beta) + " " + what,
            {{t(a).contiguous()}, {t(b).contiguous()}},
            [&](const Inputs& in) { return smooth_l1_loss(t(in[0]), t(in[1]), beta, r); }, tol);
      }
      check_parity(
          "mse_loss " + what, {{t(a).contiguous()}, {t(b).contiguous()}},
          [&](const Inputs& in) { return mse_loss(t(in[0]), t(in[1]), r); }, tol);
    }
    // A large input: the GPU's sum over many elements (chunked plan) against the CPU's.
    const Tensor big_a = random_uniform({1 << 18}, dtype, 17), big_b = random_uniform({1 << 18}, dtype, 18);
    check_parity(
        std::string("mse_loss mean, large ") + dtype_name(dtype), {{big_a}, {big_b}},
        [](const Inputs& in) { return mse_loss(in[0], in[1], Reduction::mean); }, tol);
    // mean over no elements is NaN on both.
    const Tensor empty_cpu = zeros({0}, {dtype});
    const Tensor empty_gpu = to_device(empty_cpu, kGpu);
    CHECK(std::isnan(host_values(mse_loss(empty_gpu, empty_gpu))[0]));
  }
}

TEST_CASE("cross_entropy on CUDA tensors: reductions, ignore_index, ties, non-contiguous logits") {
  for (DType dtype : {DType::f32, DType::f64}) {
    const double tol = smooth_tolerance(dtype);
    // Logits [7, 5] are the transpose of a [5, 7] base; row 2 is all ties; rows 1 and 5 carry the ignore
    // index.
    std::vector<double> values = random_uniform({5, 7}, DType::f64, 19, -20.0, 20.0).to_vector<double>();
    for (int64_t row = 0; row < 5; ++row)
      values[row * 7 + 2] = 1.5;
    const Tensor logits_base = from_vector(values, {5, 7}, {dtype});  // logits = its transpose, [7, 5]
    const Tensor target = from_vector(std::vector<int64_t>{0, -100, 3, 4, 1, -100, 2}, {7});
    const Tensor target_gpu = to_device(target, kGpu);
    for (const auto& [name, reduction] : std::vector<std::pair<const char*, Reduction>>{
             {"none", Reduction::none}, {"mean", Reduction::mean}, {"sum", Reduction::sum}}) {
      const Reduction r = reduction;
      const std::string what = std::string(dtype_name(dtype)) + " " + name;
      check_parity(
          "cross_entropy " + what, {{logits_base}},
          [&](const Inputs& in) {
            const Tensor& labels = in[0].device().is_cuda() ? target_gpu : target;
            return cross_entropy(in[0].transpose(0, 1), labels, r, -100);
          },
          tol);
      const Tensor every_row = from_vector(std::vector<int64_t>{0, 1, 3, 4, 1, 0, 2}, {7});
      check_parity(
          "cross_entropy without ignore_index " + what, {{logits_base}},
          [&](const Inputs& in) {
            const Tensor labels = in[0].device().is_cuda() ? to_device(every_row, kGpu) : every_row;
            return cross_entropy(in[0].transpose(0, 1), labels, r);
          },
          tol);
    }
    // Every row ignored: mean is NaN on both.
    const Tensor all_ignored = full({3}, -100.0, {DType::i64});
    const Tensor logits = random_uniform({3, 4}, dtype, 20);
    CHECK(std::isnan(host_values(
        cross_entropy(to_device(logits, kGpu), to_device(all_ignored, kGpu), Reduction::mean, -100))[0]));
    // Labels are checked on the GPU too; the target must live with the logits.
    CHECK_THROWS_AS(cross_entropy(to_device(logits, kGpu), to_device(full({3}, 4.0, {DType::i64}), kGpu)),
                    std::invalid_argument);
    CHECK_THROWS_AS(cross_entropy(to_device(logits, kGpu), full({3}, 1.0, {DType::i64})),
                    std::invalid_argument);
  }
}

TEST_CASE("index_select and gather on CUDA tensors: repeated indices, views, exact backward") {
  for (DType dtype : {DType::f32, DType::f64}) {
    const std::string type = dtype_name(dtype);
    const Tensor base = random_uniform({6, 4, 5}, dtype, 21);  // seen as [4, 5, 6] through a permute
    const Tensor index = from_vector(std::vector<int64_t>{2, 0, 2, 3, 2}, {5});
    for (int64_t dim : {0, 1, 2, -1}) {
      check_parity(
          type + " index_select dim " + std::to_string(dim), {{base}},
          [&](const Inputs& in) {
            const Tensor idx = in[0].device().is_cuda() ? to_device(index, kGpu) : index;
            return index_select(in[0].permute({1, 2, 0}), dim, idx);
          },
          0.0);
    }
    check_parity(
        type + " index_select with a 0-d index", {{base}},
        [&](const Inputs& in) {
          const Tensor idx = full({}, 3.0, {DType::i64, in[0].device()});
          return index_select(in[0], 1, idx);
        },
        0.0);
    // gather: index [3, 5, 4] into x [4, 5, 6] along each dimension, with repeats.
    for (int64_t dim : {0, 1, 2}) {
      const Shape x_shape = {4, 5, 6};
      Generator gen(22 + dim);
      std::vector<int64_t> positions(3 * 5 * 4);
      for (int64_t& p : positions)
        p = int64_t(gen.uniform() * double(x_shape[dim]));
      const Tensor gather_index = from_vector(positions, {3, 5, 4});
      check_parity(
          type + " gather dim " + std::to_string(dim), {{base}},
          [&](const Inputs& in) {
            const Tensor idx = in[0].device().is_cuda() ? to_device(gather_index, kGpu) : gather_index;
            return gather(in[0].permute({1, 2, 0}), dim, idx);
          },
          0.0);
    }
  }
  // i64 tensors move too (no gradient).
  const Tensor ints = from_vector(std::vector<int64_t>{5, -6, 7, 8, 9, 10}, {2, 3});
  const Tensor index = from_vector(std::vector<int64_t>{2, 2, 0}, {3});
  check_indices("index_select of i64", index_select(to_device(ints, kGpu), 1, to_device(index, kGpu)),
                index_select(ints, 1, index));
  const Tensor gather_index = from_vector(std::vector<int64_t>{1, 0, 0, 1, 1, 1}, {2, 3});
  check_indices("gather of i64", gather(to_device(ints, kGpu), 0, to_device(gather_index, kGpu)),
                gather(ints, 0, gather_index));
  // Out-of-range indices are caught before the kernel; the index must live with x.
  CHECK_THROWS_AS(
      index_select(to_device(ints, kGpu), 1, to_device(from_vector(std::vector<int64_t>{3}, {1}), kGpu)),
      std::out_of_range);
  CHECK_THROWS_AS(index_select(to_device(ints, kGpu), 1, index), std::invalid_argument);
  CHECK_THROWS_AS(gather(to_device(ints, kGpu), 0, gather_index), std::invalid_argument);
}

#endif  // ICD_WITH_CUDA
