// Reverse-mode automatic differentiation, micrograd-sized.
//
// Every differentiable op, after computing its output, calls record(): if gradients are enabled and
// any input requires one, the output gets a Node holding the inputs and a backward function that maps
// dL/d(output) to dL/d(each input). Tensor::backward() orders the nodes topologically (each node after
// every node that uses its output), runs the backward functions from the root down, sums the gradients
// that reach a tensor along several paths, and accumulates (+=) the total into .grad of each leaf that
// requires grad. Backward functions run with gradients disabled: they build no graph.
//
// Rule for op authors: a backward function may capture inputs and outputs, but must capture the output
// as out.detach() (same storage, no grad_fn), or the node would own the tensor that owns it: a cycle.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "engine/tensor.h"

namespace icd {

// Returns one gradient per input, in order; an undefined Tensor means "no gradient" (zero).
using BackwardFn = std::function<std::vector<Tensor>(const Tensor& grad_output)>;

struct Node {
  std::string name;            // the op, for error messages and graph dumps
  std::vector<Tensor> inputs;  // keeps the graph (and the inputs' storages) alive until backward
  BackwardFn backward;
  bool released = false;  // set after a backward without retain_graph
};

namespace autograd {

bool grad_enabled();

// Disables graph recording in its scope (for evaluation, optimizer steps and backward itself).
class NoGradGuard {
 public:
  NoGradGuard();
  ~NoGradGuard();
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool previous_;
};

// True when an op over `inputs` must record a node: grad mode is on and some input requires grad.
bool any_requires_grad(const std::vector<Tensor>& inputs);

// Attaches a node to `output` if any_requires_grad(inputs); otherwise does nothing.
void record(Tensor& output, std::string name, std::vector<Tensor> inputs, BackwardFn backward);

// See Tensor::backward.
void backward(const Tensor& root, const Tensor& grad_root, bool retain_graph);

}  // namespace autograd

using autograd::NoGradGuard;

}  // namespace icd
