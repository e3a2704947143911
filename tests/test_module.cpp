// The Module base: names, state dicts, strict loading, freezing, train/eval, dtype and device conversion.
#include <doctest/doctest.h>

#include "engine/autograd.h"
#include "engine/cuda_status.h"
#include "engine/factory.h"
#include "engine/ops/elementwise.h"
#include "layers/module.h"

using namespace icd;

namespace {

struct Leaf : Module {
  Leaf() {
    register_parameter("weight", ones({2, 3}));
    register_parameter("bias", zeros({2}));
    register_buffer("running_mean", zeros({2}));
  }
};

struct Tree : Module {
  std::shared_ptr<Leaf> first = register_module("first", std::make_shared<Leaf>());
  std::shared_ptr<Leaf> second = register_module("second", std::make_shared<Leaf>());
  Tree() { register_parameter("scale", ones({1})); }
};

std::vector<std::string> names(const NamedTensors& list) {
  std::vector<std::string> out;
  for (const auto& [n, t] : list)
    out.push_back(n);
  return out;
}

}  // namespace

TEST_CASE("names compose with dots in registration order") {
  Tree tree;
  CHECK(names(tree.named_parameters()) ==
        std::vector<std::string>{"scale", "first.weight", "first.bias", "second.weight", "second.bias"});
  CHECK(names(tree.named_buffers()) == std::vector<std::string>{"first.running_mean", "second.running_mean"});
  CHECK(tree.state_dict().size() == 7);
  CHECK(tree.parameter_count() == 1 + 2 * (6 + 2));
  for (const Tensor& p : tree.parameters())
    CHECK(p.requires_grad());
  for (const auto& [n, b] : tree.named_buffers())
    CHECK_FALSE(b.requires_grad());
}

TEST_CASE("state_dict shares tensors; load_state_dict copies into them") {
  Tree a, b;
  NamedTensors state = a.state_dict();
  Tensor handle = b.first->named_parameters()[0].second;  // b.first.weight
  {
    NoGradGuard no_grad;
    Tensor w = state[1].second;
    fill_(w, 7.0);
  }
  CHECK(a.first->named_parameters()[0].second.to_vector<float>()[0] == 7.0f);  // shared, not copied
  b.load_state_dict(state);
  CHECK(handle.to_vector<float>()[0] == 7.0f);  // copied into the existing handle
}

TEST_CASE("strict loading lists every missing, unexpected and mis-shaped name and loads nothing") {
  Tree tree;
  NamedTensors state = tree.state_dict();
  state.erase(state.begin());                     // missing: scale
  state[0].second = zeros({3, 3});                // mis-shaped: first.weight
  state.emplace_back("first.extra", zeros({1}));  // unexpected
  NamedTensors before = Tree().state_dict();
  try {
    tree.load_state_dict(state);
    FAIL("expected an error");
  } catch (const std::runtime_error& e) {
    std::string msg = e.what();
    CHECK(msg.find("missing: scale") != std::string::npos);
    CHECK(msg.find("shape mismatch: first.weight") != std::string::npos);
    CHECK(msg.find("unexpected: first.extra") != std::string::npos);
  }
  CHECK(tree.state_dict()[3].second.to_vector<float>() == before[3].second.to_vector<float>());
  std::vector<std::string> problems = tree.load_state_dict(state, /*strict=*/false);
  CHECK(problems.size() == 3);
}

TEST_CASE("freezing, train/eval and dtype conversion reach every child") {
  Tree tree;
  tree.first->set_requires_grad(false);
  CHECK(tree.trainable_parameters().size() == 3);
  CHECK(tree.trainable_parameter_count() == 1 + 8);
  tree.eval();
  CHECK_FALSE(tree.is_training());
  CHECK_FALSE(tree.second->is_training());
  tree.train();
  CHECK(tree.first->is_training());
  tree.to(DType::f64);
  for (const auto& [n, t] : tree.state_dict())
    CHECK(t.dtype() == DType::f64);
  CHECK_FALSE(tree.first->named_parameters()[0].second.requires_grad());
  CHECK(tree.second->named_parameters()[0].second.requires_grad());
}

TEST_CASE("to(Device) moves every tensor or, when it cannot, leaves the module untouched") {
  Tree tree;
  tree.first->set_requires_grad(false);
  std::vector<const void*> storage;
  for (const auto& [n, t] : tree.state_dict())
    storage.push_back(t.raw_data());
  tree.to(Device::cpu());  // already there: the same tensors
  CHECK(tree.trainable_parameters().size() == 3);
  CHECK(tree.device() == Device::cpu());
  CHECK(Module().device() == Device::cpu());  // nothing to place: the CPU
  if (!cuda_status().available) {
    try {
      tree.to(Device::cuda(0));
      FAIL("moving to cuda:0 without a usable GPU must throw");
    } catch (const std::runtime_error& e) {
      CHECK(std::string(e.what()).find("cuda:0") != std::string::npos);
    }
    std::size_t i = 0;
    for (const auto& [n, t] : tree.state_dict()) {
      CHECK(t.device().is_cpu());
      CHECK(t.raw_data() == storage[i++]);
    }
  } else {
    tree.to(Device::cuda(0));
    for (const auto& [n, t] : tree.state_dict())
      CHECK(t.device() == Device::cuda(0));
    CHECK(tree.device() == Device::cuda(0));
    // Loading host tensors into the moved module copies them to its device.
    Tree source;
    source.to(DType::f64);
    tree.load_state_dict(source.state_dict());
    CHECK(tree.device() == Device::cuda(0));
    CHECK(tree.trainable_parameters().size() == 3);
    CHECK_FALSE(tree.first->named_parameters()[0].second.requires_grad());
  }
}

TEST_CASE("registration rejects bad and duplicate names") {
  struct Bad : Module {
    void add(const std::string& name) { register_parameter(name, zeros({1})); }
  } bad;
  bad.add("w");
  CHECK_THROWS_AS(bad.add("w"), std::invalid_argument);
  CHECK_THROWS_AS(bad.add("a.b"), std::invalid_argument);
  CHECK_THROWS_AS(bad.add(""), std::invalid_argument);
}
