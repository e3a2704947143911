#include "engine/autograd.h"

#include <stdexcept>
#include <unordered_map>
#include <unordered_set>

#include "engine/factory.h"
#include "engine/ops/elementwise.h"
#include "engine/profiler.h"

namespace icd::autograd {
namespace {
thread_local bool g_grad_enabled = true;
}

bool grad_enabled() {
  return g_grad_enabled;
}

NoGradGuard::NoGradGuard() : previous_(g_grad_enabled) {
  g_grad_enabled = false;
}
NoGradGuard::~NoGradGuard() {
  g_grad_enabled = previous_;
}

bool any_requires_grad(const std::vector<Tensor>& inputs) {
  if (!g_grad_enabled) return false;
  for (const Tensor& t : inputs)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}

void record(Tensor& output, std::string name, std::vector<Tensor> inputs, BackwardFn backward) {
  profiler::mark_op(name.c_str());  // every op ends here: the profiler's forward clock
  if (!any_requires_grad(inputs)) return;
  auto node = std::make_shared<Node>();
  node->name = std::move(name);
  node->inputs = std::move(inputs);
  node->backward = std::move(backward);
  output.impl()->grad_fn = std::move(node);
  output.impl()->requires_grad = true;
}

namespace {

// Tensors reachable from `root` through grad_fn edges, ordered so that every tensor comes before the
// inputs of its node (reverse post-order of a depth-first search). Iterative: graphs of deep networks
// would overflow the stack of a recursive walk. The order holds owning pointers: releasing a node's
// inputs during backward must not free a tensor that is still to be visited.
std::vector<std::shared_ptr<TensorImpl>> topological_order(const std::shared_ptr<TensorImpl>& root) {
  std::vector<std::shared_ptr<TensorImpl>> post_order;
  std::unordered_set<TensorImpl*> visited;
  struct Frame {
    std::shared_ptr<TensorImpl> tensor;
    std::size_t next_input;
  };
  std::vector<Frame> stack{{root, 0}};
  visited.insert(root.get());
  while (!stack.empty()) {
    Frame& frame = stack.back();
    Node* node = frame.tensor->grad_fn.get();
    if (node && frame.next_input < node->inputs.size()) {
      const std::shared_ptr<TensorImpl>& input = node->inputs[frame.next_input++].impl_ptr();
      if (input && input->requires_grad && visited.insert(input.get()).second) stack.push_back({input, 0});
      continue;
    }
    post_order.push_back(frame.tensor);
    stack.pop_back();
  }
  return {post_order.rbegin(), post_order.rend()};
}

// True when `t` is the only handle on a storage that it covers exactly, row-major.
bool owns_whole_buffer(const Tensor& t) {
  const TensorImpl* impl = t.impl();
  return t.impl_ptr().use_count() == 1 && impl->storage.use_count() == 1 && impl->offset == 0 &&
         t.is_contiguous() &&
         impl->storage->nbytes() == static_cast<std::size_t>(t.numel()) * dtype_size(t.dtype());
}

void check_gradient_matches(const Tensor& grad, const TensorImpl* target, const std::string& op) {
  if (grad.shape() != target->shape || grad.dtype() != target->dtype)
    throw std::logic_error("backward of " + op + " returned a gradient of shape " + shape_str(grad.shape()) +
                           " " + dtype_name(grad.dtype()) + " for an input of shape " +
                           shape_str(target->shape) + " " + dtype_name(target->dtype));
}

}  // namespace

void backward(const Tensor& root, const Tensor& grad_root, bool retain_graph) {
  if (!root.requires_grad())
    throw std::logic_error("backward: the tensor does not require grad and has no grad_fn");
  Tensor seed = grad_root;
  if (!seed.defined()) {
    if (root.numel() != 1)
      throw std::logic_error("backward: a gradient must be given for a non-scalar output of shape " +
                             shape_str(root.shape()));
    seed = ones(root.shape(), root.options());
  }
  NoGradGuard no_grad;
  const bool profiling = profiler::enabled();
  const double start = profiling ? profiler::clock_seconds() : 0.0;
  double in_nodes = 0;                  // seconds inside backward functions
  profiler::QuietOps quiet(profiling);  // ops run by backward functions are not forward ops
  std::vector<std::shared_ptr<TensorImpl>> order = topological_order(root.impl_ptr());
  std::unordered_map<TensorImpl*, Tensor> pending;  // summed gradient of each tensor not yet processed
  pending[root.impl()] = seed;

  for (const std::shared_ptr<TensorImpl>& owner : order) {
    TensorImpl* tensor = owner.get();
    auto it = pending.find(tensor);
    if (it == pending.end()) continue;  // no gradient flows here (e.g. every path was cut)
    Tensor grad = std::move(it->second);
    pending.erase(it);
    Node* node = tensor->grad_fn.get();
    if (!node) {  // a leaf: accumulate into .grad
      if (!tensor->grad) {
        // Keep the buffer itself when nothing else can see it; otherwise copy, since `grad` may be a
        // view of another gradient (add() hands the same g to both inputs) or of saved data.
        tensor->grad = owns_whole_buffer(grad) ? grad.impl_ptr() : grad.contiguous().clone().impl_ptr();
      } else {
        Tensor accumulated(tensor->grad);
        add_(accumulated, grad);
      }
      continue;
    }
    if (node->released)
      throw std::logic_error("backward through " + node->name +
                             " a second time: its saved tensors were freed; pass retain_graph=true to "
                             "the first backward");
    std::vector<Tensor> input_grads;
    if (profiling) {
      const double t = profiler::clock_seconds();
      input_grads = node->backward(grad);
      const double seconds = profiler::clock_seconds() - t;
      profiler::charge(node->name + " backward", seconds);
      in_nodes += seconds;
    } else {
      input_grads = node->backward(grad);
    }
    if (input_grads.size() != node->inputs.size())
      throw std::logic_error("backward of " + node->name + " returned the wrong number of gradients");
    for (std::size_t i = 0; i < input_grads.size(); ++i) {
      const Tensor& input = node->inputs[i];
      const Tensor& g = input_grads[i];
      if (!input.defined() || !input.requires_grad() || !g.defined()) continue;
      check_gradient_matches(g, input.impl(), node->name);
      auto [slot, inserted] = pending.try_emplace(input.impl(), g);
      if (!inserted) slot->second = add(slot->second, g);
    }
    if (!retain_graph) {
      node->inputs.clear();
      node->backward = nullptr;
      node->released = true;
    }
  }
  if (profiling) profiler::charge("backward: graph walk", profiler::clock_seconds() - start - in_nodes);
}

}  // namespace icd::autograd
