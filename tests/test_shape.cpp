// Shape ops: cat, stack, split, index_select, gather, pad. Hand-checked forward values (f64 and i64,
// non-contiguous inputs), backward scatter-adds with repeated indices, f64 gradient checks of every op
// and option, a large f32 run through the parallel paths, and bad shapes and indices.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "engine/autograd.h"
#include "engine/factory.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/reduce.h"
#include "engine/ops/shape.h"
#include "gradcheck.h"

using namespace icd;
using icd::testing::f64;
using icd::testing::random_leaf;
using Inputs = std::vector<Tensor>;

namespace {

Tensor i64(std::vector<int64_t> v, Shape shape) {
  return from_vector(v, shape);
}
std::vector<double> values(const Tensor& t) {
  return t.to_vector<double>();
}

// Runs f and returns the text of the exception it throws (empty if none).
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("cat: forward along each dimension, negative dims, empty pieces, views, i64") {
  Tensor a = f64({1, 2, 3, 4}, {2, 2}), b = f64({5, 6}, {2, 1}), c = f64({7, 8}, {1, 2});
  Tensor ab = cat({a, b}, 1);
  CHECK(ab.shape() == Shape{2, 3});
  CHECK(values(ab) == std::vector<double>{1, 2, 5, 3, 4, 6});
  CHECK(values(cat({a, c}, 0)) == std::vector<double>{1, 2, 3, 4, 7, 8});
  CHECK(values(cat({a, b}, -1)) == values(ab));
  CHECK(values(cat({c, a, c})) == std::vector<double>{7, 8, 1, 2, 3, 4, 7, 8});
  // A piece of size 0 along dim contributes nothing.
  CHECK(values(cat({a, zeros({2, 0}, {DType::f64}), b}, 1)) == values(ab));
  // Non-contiguous pieces: a transposed view and a column slice.
  Tensor t = cat({a.transpose(0, 1), ab.narrow(1, 2, 1)}, 1);
  CHECK(values(t) == std::vector<double>{1, 3, 5, 2, 4, 6});
  // A middle dimension, 3-d.
  Tensor x = arange(8, {DType::f64}).reshape({2, 2, 2});
  CHECK(values(cat({x, x.narrow(1, 0, 1)}, 1)) == std::vector<double>{0, 1, 2, 3, 0, 1, 4, 5, 6, 7, 4, 5});
  // Index tensors concatenate too.
  Tensor ii = cat({i64({1, 2}, {2}), i64({3}, {1})});
  CHECK(ii.dtype() == DType::i64);
  CHECK(ii.to_vector<int64_t>() == std::vector<int64_t>{1, 2, 3});
  // The result is a new tensor.
  CHECK_FALSE(cat({a}, 0).shares_storage_with(a));
}

TEST_CASE("stack: a new dimension at each position") {
  Tensor a = f64({1, 2, 3}, {3}), b = f64({4, 5, 6}, {3});
  CHECK(stack({a, b}).shape() == Shape{2, 3});
  CHECK(values(stack({a, b}, 0)) == std::vector<double>{1, 2, 3, 4, 5, 6});
  CHECK(stack({a, b}, 1).shape() == Shape{3, 2});
  CHECK(values(stack({a, b}, 1)) == std::vector<double>{1, 4, 2, 5, 3, 6});
  CHECK(values(stack({a, b}, -1)) == values(stack({a, b}, 1)));
  CHECK(stack({a}, -2).shape() == Shape{1, 3});
}

TEST_CASE("split: views by chunk size and by sizes") {
  Tensor x = arange(10, {DType::f64}).reshape({2, 5});
  std::vector<Tensor> parts = split(x, 2, 1);
  REQUIRE(parts.size() == 3);
  CHECK(parts[0].shape() == Shape{2, 2});
  CHECK(parts[2].shape() == Shape{2, 1});  // the remainder
  CHECK(values(parts[1]) == std::vector<double>{2, 3, 7, 8});
  CHECK(values(parts[2]) == std::vector<double>{4, 9});
  CHECK(parts[1].shares_storage_with(x));
  std::vector<Tensor> sized = split(x, std::vector<int64_t>{1, 0, 4}, -1);
  REQUIRE(sized.size() == 3);
  CHECK(sized[1].shape() == Shape{2, 0});
  CHECK(values(sized[2]) == std::vector<double>{1, 2, 3, 4, 6, 7, 8, 9});
  CHECK(split(x, 5, 1).size() == 1);
  CHECK(split(x, 7, 0).size() == 1);
  CHECK(split(x, std::vector<int64_t>{1, 1}, 0)[1].to_vector<double>() == std::vector<double>{5, 6, 7, 8, 9});
}

TEST_CASE("index_select: rows, columns, repeats, 0-d index, i64 data") {
  Tensor x = arange(12, {DType::f64}).reshape({3, 4});
  CHECK(values(index_select(x, 0, i64({2, 0, 2}, {3}))) ==
        std::vector<double>{8, 9, 10, 11, 0, 1, 2, 3, 8, 9, 10, 11});
  Tensor cols = index_select(x, 1, i64({3, 1}, {2}));
  CHECK(cols.shape() == Shape{3, 2});
  CHECK(values(cols) == std::vector<double>{3, 1, 7, 5, 11, 9});
  CHECK(values(index_select(x, -1, i64({3, 1}, {2}))) == values(cols));
  Tensor one = index_select(x, 0, i64({1}, {}));
  CHECK(one.shape() == Shape{1, 4});
  CHECK(values(one) == std::vector<double>{4, 5, 6, 7});
  CHECK(index_select(x, 0, i64({}, {0})).shape() == Shape{0, 4});
  // A non-contiguous x, and an i64 x.
  CHECK(values(index_select(x.transpose(0, 1), 0, i64({2}, {1}))) == std::vector<double>{2, 6, 10});
  Tensor labels = i64({10, 20, 30}, {3});
  CHECK(index_select(labels, 0, i64({2, 2, 0}, {3})).to_vector<int64_t>() ==
        std::vector<int64_t>{30, 30, 10});
  // Backward: a row selected twice receives both gradients.
  Tensor leaf = random_leaf({3, 2}, 1);
  index_select(leaf, 0, i64({2, 0, 2}, {3})).backward(f64({1, 2, 3, 4, 5, 6}, {3, 2}));
  CHECK(values(leaf.grad()) == std::vector<double>{3, 4, 0, 0, 6, 8});
}

TEST_CASE("gather: torch's examples, smaller index, non-contiguous x, i64 data") {
  Tensor t = f64({1, 2, 3, 4}, {2, 2});
  CHECK(values(gather(t, 1, i64({0, 0, 1, 0}, {2, 2}))) == std::vector<double>{1, 1, 4, 3});
  CHECK(values(gather(t, 0, i64({1, 0, 0, 1}, {2, 2}))) == std::vector<double>{3, 2, 1, 4});
  // An index smaller than x in the other dims, and larger along dim.
  Tensor x = arange(12, {DType::f64}).reshape({3, 4});
  Tensor g = gather(x, 1, i64({3, 3, 0, 2, 1, 1}, {2, 3}));
  CHECK(g.shape() == Shape{2, 3});
  CHECK(values(g) == std::vector<double>{3, 3, 0, 6, 5, 5});
  CHECK(values(gather(x, 0, i64({2, 1, 0}, {1, 3}))) == std::vector<double>{8, 5, 2});
  // 3-d, middle dim, non-contiguous x.
  Tensor x3 = arange(8, {DType::f64}).reshape({2, 2, 2}).permute({2, 0, 1});  // x3[i][j][k] = 4 j + 2 k + i
  Tensor g3 = gather(x3, 1, i64({1, 0, 1, 1}, {2, 1, 2}));
  CHECK(values(g3) == std::vector<double>{4, 2, 5, 7});
  CHECK(gather(i64({5, 6, 7}, {3}), 0, i64({2, 0}, {2})).to_vector<int64_t>() == std::vector<int64_t>{7, 5});
  // Backward: scatter-add, repeats add up.
  Tensor leaf = random_leaf({2, 3}, 2);
  gather(leaf, 1, i64({2, 2, 0, 1}, {2, 2})).backward(f64({1, 10, 100, 1000}, {2, 2}));
  CHECK(values(leaf.grad()) == std::vector<double>{0, 0, 11, 100, 1000, 0});
}

TEST_CASE("pad: torch's order (last dim first), values, cropping, i64") {
  Tensor x = f64({1, 2, 3, 4}, {2, 2});
  Tensor p = pad(x, {1, 2});
  CHECK(p.shape() == Shape{2, 5});
  CHECK(values(p) == std::vector<double>{0, 1, 2, 0, 0, 0, 3, 4, 0, 0});
  Tensor q = pad(x, {0, 1, 1, 0}, -1.0);  // right by one, top by one
  CHECK(q.shape() == Shape{3, 3});
  CHECK(values(q) == std::vector<double>{-1, -1, -1, 1, 2, -1, 3, 4, -1});
  // Negative amounts crop.
  Tensor row = f64({1, 2, 3, 4, 5}, {1, 5});
  CHECK(values(pad(row, {-1, 1})) == std::vector<double>{2, 3, 4, 5, 0});
  CHECK(values(pad(row, {-2, -2})) == std::vector<double>{3});
  CHECK(pad(row, {-3, -2}).shape() == Shape{1, 0});
  // Padding all dims of a non-contiguous view, and i64 data.
  CHECK(values(pad(x.transpose(0, 1), {0, 0, 1, 0}, 9)) == std::vector<double>{9, 9, 1, 3, 2, 4});
  CHECK(pad(i64({1, 2}, {2}), {1, 1}, 7).to_vector<int64_t>() == std::vector<int64_t>{7, 1, 2, 7});
  CHECK(pad(x, {}).shape() == Shape{2, 2});
  // Backward: the gradient of the window, zero where x was cropped.
  Tensor leaf = random_leaf({1, 5}, 3);
  pad(leaf, {-1, 2}).backward(f64({1, 2, 3, 4, 5, 6}, {1, 6}));
  CHECK(values(leaf.grad()) == std::vector<double>{0, 1, 2, 3, 4});
}

TEST_CASE("gradcheck: cat, stack and split") {
  Tensor a = random_leaf({2, 3, 2}, 11), b = random_leaf({2, 1, 2}, 12), c = random_leaf({2, 4, 2}, 13);
  CHECK_GRADCHECK([](const Inputs& in) { return cat({in[0], in[1], in[2]}, 1); }, {a, b, c});
  CHECK_GRADCHECK([](const Inputs& in) { return cat({in[0], in[0].narrow(1, 1, 2)}, -2); }, {a});
  CHECK_GRADCHECK(
      [](const Inputs& in) {
        return cat({in[0].transpose(0, 2), in[1].transpose(0, 2)}, 1);
      },
      {a, b});
  CHECK_GRADCHECK([](const Inputs& in) { return cat({in[0], mul(in[0], in[0])}, 0); }, {a});
  CHECK_GRADCHECK([](const Inputs& in) { return stack({in[0], in[1]}, 1); }, {a, random_leaf({2, 3, 2}, 14)});
  CHECK_GRADCHECK(
      [](const Inputs& in) {
        return stack({in[0].permute({2, 0, 1}), in[0].permute({2, 0, 1})}, -1);
      },
      {a});
  CHECK_GRADCHECK(
      [](const Inputs& in) {
        std::vector<Tensor> p = split(in[0], 3, 1);  // sizes 3, 1
        return cat({mul(p[1], 2.0), p[0]}, 1);
      },
      {c});
  CHECK_GRADCHECK(
      [](const Inputs& in) {
        std::vector<Tensor> p = split(in[0], std::vector<int64_t>{1, 2, 1}, 1);
        return cat({sigmoid(p[2]), p[0]}, 0);
      },
      {c});
}

TEST_CASE("gradcheck: index_select and gather with repeated indices") {
  Tensor x = random_leaf({3, 4, 2}, 21);
  CHECK_GRADCHECK([](const Inputs& in) { return index_select(in[0], 1, i64({3, 0, 3, 1}, {4})); }, {x});
  CHECK_GRADCHECK([](const Inputs& in) { return index_select(in[0], 0, i64({2, 2}, {2})); }, {x});
  CHECK_GRADCHECK(
      [](const Inputs& in) {
        return index_select(in[0].permute({2, 0, 1}), -1, i64({1}, {}));
      },
      {x});
  Tensor idx = i64({0, 3, 3, 1, 2, 2, 0, 0, 1, 3, 3, 3}, {3, 2, 2});
  CHECK_GRADCHECK([idx](const Inputs& in) { return gather(in[0], 1, idx); }, {x});
  CHECK_GRADCHECK([](const Inputs& in) { return gather(in[0], 0, i64({2, 2, 0, 1}, {1, 2, 2})); }, {x});
  CHECK_GRADCHECK(
      [](const Inputs& in) {
        return gather(in[0].transpose(0, 2), 2, i64({2, 1, 1, 0}, {2, 1, 2}));
      },
      {x});
}

TEST_CASE("gradcheck: pad, growing and cropping") {
  Tensor x = random_leaf({2, 3, 4}, 31);
  CHECK_GRADCHECK([](const Inputs& in) { return pad(in[0], {1, 2}); }, {x});
  CHECK_GRADCHECK([](const Inputs& in) { return pad(in[0], {0, 1, 2, 0, 1, 1}, 3.0); }, {x});
  CHECK_GRADCHECK([](const Inputs& in) { return pad(in[0], {-1, 2, 1, -1}); }, {x});
  CHECK_GRADCHECK([](const Inputs& in) { return pad(in[0].permute({2, 1, 0}), {2, 0, 0, 1}); }, {x});
}

TEST_CASE("large f32 inputs take the parallel paths") {
  Generator gen(41);
  Tensor a = randn({64, 300, 3}, gen), b = randn({64, 200, 3}, gen);
  Tensor ab = cat({a, b}, 1);
  CHECK(ab.shape() == Shape{64, 500, 3});
  CHECK(ab.narrow(1, 300, 200).contiguous().to_vector<float>() == b.to_vector<float>());
  CHECK(ab.narrow(1, 0, 300).contiguous().to_vector<float>() == a.to_vector<float>());
  std::vector<int64_t> rows;
  for (int64_t i = 0; i < 300; ++i)
    rows.push_back((i * 7) % 300);
  Tensor selected = index_select(a, 1, from_vector(rows, {300}));
  CHECK(selected.select(1, 10).to_vector<float>() == a.select(1, 70).to_vector<float>());
  Tensor leaf = a.detach();
  leaf.set_requires_grad(true);
  std::vector<int64_t> picks(64 * 300 * 3);
  for (std::size_t i = 0; i < picks.size(); ++i)
    picks[i] = static_cast<int64_t>((i * 13) % 300);
  Tensor picked = gather(leaf, 1, from_vector(picks, {64, 300, 3}));
  CHECK(picked.to_vector<float>()[5] == a.to_vector<float>()[(65 % 300) * 3 + 2]);  // element (0, 1, 2)
  picked.backward(ones({64, 300, 3}));
  // Every output element passes its gradient of 1 to exactly one x element.
  CHECK(sum(leaf.grad()).item() == 64.0 * 300 * 3);
}

TEST_CASE("bad shapes, dims and indices are rejected with the op's name") {
  Tensor a = zeros({2, 3}, {DType::f64});
  // cat / stack / split
  CHECK_THROWS_AS(cat({}, 0), std::invalid_argument);
  CHECK_THROWS_AS(cat({a, zeros({3, 3}, {DType::f64})}, 1), std::invalid_argument);
  CHECK_THROWS_AS(cat({a, zeros({2, 3, 1}, {DType::f64})}, 0), std::invalid_argument);
  CHECK_THROWS_AS(cat({a, zeros({2, 3})}, 0), std::invalid_argument);  // f64 and f32
  CHECK_THROWS_AS(cat({a, Tensor()}, 0), std::invalid_argument);
  CHECK_THROWS_AS(cat({a}, 2), std::out_of_range);
  CHECK_THROWS_AS(cat({scalar_tensor(1.0, {DType::f64})}, 0), std::invalid_argument);
  CHECK(error_of([&] { cat({a, zeros({3, 3}, {DType::f64})}, 1); }).find("cat: tensors[1]") == 0);
  CHECK_THROWS_AS(stack({a, zeros({3, 2}, {DType::f64})}), std::invalid_argument);
  CHECK_THROWS_AS(stack({a}, 3), std::out_of_range);
  CHECK_THROWS_AS(stack({}), std::invalid_argument);
  CHECK_THROWS_AS(split(a, 0, 1), std::invalid_argument);
  CHECK_THROWS_AS(split(a, std::vector<int64_t>{1, 1}, 1), std::invalid_argument);
  CHECK_THROWS_AS(split(a, std::vector<int64_t>{4, -1}, 1), std::invalid_argument);
  // index_select
  CHECK_THROWS_AS(index_select(a, 1, i64({3}, {1})), std::out_of_range);
  CHECK_THROWS_AS(index_select(a, 1, i64({-1}, {1})), std::out_of_range);
  CHECK(error_of([&] { index_select(a, 1, i64({0, 7}, {2})); }).find("index_select: index 7") == 0);
  CHECK_THROWS_AS(index_select(a, 0, f64({0}, {1})), std::invalid_argument);  // not i64
  CHECK_THROWS_AS(index_select(a, 0, i64({0, 1}, {1, 2})), std::invalid_argument);
  CHECK_THROWS_AS(index_select(a, 2, i64({0}, {1})), std::out_of_range);
  // gather
  CHECK_THROWS_AS(gather(a, 1, i64({0, 3}, {1, 2})), std::out_of_range);
  CHECK_THROWS_AS(gather(a, 0, i64({-1}, {1, 1})), std::out_of_range);
  CHECK(error_of([&] { gather(a, 0, i64({2}, {1, 1})); }).find("gather: index 2") == 0);
  CHECK_THROWS_AS(gather(a, 1, i64({0, 1}, {2})), std::invalid_argument);           // ndim differs
  CHECK_THROWS_AS(gather(a, 1, i64({0, 0, 0, 0}, {4, 1})), std::invalid_argument);  // larger than x in dim 0
  CHECK_THROWS_AS(gather(a, 1, zeros({2, 2}, {DType::f64})), std::invalid_argument);
  // pad
  CHECK_THROWS_AS(pad(a, {1}), std::invalid_argument);
  CHECK_THROWS_AS(pad(a, {1, 1, 1, 1, 1, 1}), std::invalid_argument);
  CHECK_THROWS_AS(pad(a, {-2, -2}), std::invalid_argument);  // 3 - 4 < 0 columns
  CHECK(error_of([&] { pad(a, {1}); }).find("pad:") == 0);
}
