// engine/profiler.h: ops are charged by name in the forward pass and per node in the backward pass, GEMMs
// count 2 M N K FLOPs, sections are charged to their own row, and nothing is recorded while it is off.
#include <doctest/doctest.h>

#include <algorithm>

#include "engine/autograd.h"
#include "engine/factory.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/matmul.h"
#include "engine/ops/reduce.h"
#include "engine/profiler.h"

using namespace icd;

namespace {

const profiler::Entry* find(const std::vector<profiler::Entry>& entries, const std::string& name) {
  auto it =
      std::find_if(entries.begin(), entries.end(), [&](const profiler::Entry& e) { return e.name == name; });
  return it == entries.end() ? nullptr : &*it;
}

// Turns the profiler off however the test ends.
struct ProfilerOn {
  ProfilerOn() {
    profiler::set_enabled(true);
    profiler::reset();
  }
  ~ProfilerOn() { profiler::set_enabled(false); }
};

}  // namespace

TEST_CASE("forward ops, backward nodes, sections and GEMM FLOPs are recorded") {
  Generator gen(0);
  Tensor a = randn({8, 16}, gen), b = randn({16, 4}, gen);
  a.set_requires_grad(true);
  ProfilerOn on;
  Tensor loss = sum(matmul(a, b));
  loss.backward();
  {
    profiler::Section section("optimizer step");
    mul(a, 2.0);  // an op inside a section is not charged as an op of its own
  }
  const std::vector<profiler::Entry> entries = profiler::totals();
  const profiler::Entry* forward = find(entries, "matmul");
  REQUIRE(forward != nullptr);
  CHECK(forward->calls == 1);
  REQUIRE(find(entries, "matmul backward") != nullptr);
  REQUIRE(find(entries, "sum backward") != nullptr);
  REQUIRE(find(entries, "backward: graph walk") != nullptr);
  const profiler::Entry* section = find(entries, "optimizer step");
  REQUIRE(section != nullptr);
  CHECK(section->calls == 1);
  CHECK(find(entries, "mul") == nullptr);
  // forward 8x16 @ 16x4; backward: dA = g @ B^T (8x4 @ 4x16); B needs no gradient
  CHECK(profiler::flops() == doctest::Approx(2.0 * 8 * 4 * 16 + 2.0 * 8 * 16 * 4));
  for (std::size_t i = 1; i < entries.size(); ++i)
    CHECK(entries[i - 1].seconds >= entries[i].seconds);  // largest first
}

TEST_CASE("nothing is recorded while the profiler is off, and reset clears the totals") {
  Generator gen(1);
  Tensor a = randn({4, 4}, gen);
  profiler::set_enabled(false);
  profiler::reset();
  matmul(a, a);
  CHECK(profiler::totals().empty());
  CHECK(profiler::flops() == 0.0);
  {
    ProfilerOn on;
    matmul(a, a);
    CHECK_FALSE(profiler::totals().empty());
    profiler::reset();
    CHECK(profiler::totals().empty());
    CHECK(profiler::flops() == 0.0);
  }
}
