// Tensor: a cheap handle (one shared pointer) to a strided view of a Storage.
//
//   element (i0, i1, ..., ik) lives at  storage.data + (offset + sum_j i_j * strides[j]) * dtype_size
//
// Copying a Tensor copies the handle, not the data (like torch.Tensor). Views (reshape, permute,
// transpose, narrow, expand, unsqueeze, squeeze) make a new handle over the same storage; contiguous()
// copies only when the strides are not already row-major. Strides are in elements; expand() gives
// stride 0 to broadcast dimensions.
//
// Autograd state lives on the handle: requires_grad, the accumulated .grad, and grad_fn, the node that
// produced this tensor (null for leaves). See engine/autograd.h.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "engine/device.h"
#include "engine/dtype.h"
#include "engine/storage.h"

namespace icd {

using Shape = std::vector<int64_t>;
struct Node;
class Tensor;

struct TensorOptions {
  DType dtype = DType::f32;
  Device device = Device::cpu();
  bool pinned = false;  // CPU only: page-locked memory, for batches uploaded to a GPU (engine/storage.h)
};

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  Shape shape;
  Shape strides;
  int64_t offset = 0;
  DType dtype = DType::f32;
  bool requires_grad = false;
  std::shared_ptr<TensorImpl> grad;  // accumulated gradient of a leaf (same shape and dtype)
  std::shared_ptr<Node> grad_fn;     // the node that produced this tensor; null for leaves
};

class Tensor {
 public:
  Tensor() = default;  // an undefined tensor: "no value", e.g. a gradient that does not exist
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  bool defined() const { return impl_ != nullptr; }
  TensorImpl* impl() const { return impl_.get(); }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }

  // ---- metadata
  const Shape& shape() const { return impl_->shape; }
  const Shape& strides() const { return impl_->strides; }
  int64_t dim() const { return static_cast<int64_t>(impl_->shape.size()); }
  int64_t size(int64_t d) const;  // negative d counts from the end
  int64_t stride(int64_t d) const;
  int64_t numel() const;
  int64_t offset() const { return impl_->offset; }
  DType dtype() const { return impl_->dtype; }
  Device device() const { return impl_->storage->device(); }
  bool is_pinned() const { return impl_->storage->pinned(); }    // page-locked host memory
  TensorOptions options() const { return {dtype(), device()}; }  // never pinned: new tensors are ordinary
  bool is_contiguous() const;
  // True when both handles view the same storage (views of one another, or the same tensor).
  bool shares_storage_with(const Tensor& other) const;

  // ---- data access (CPU). data<T>() points at element (0, ..., 0) and checks the dtype.
  template <class T>
  T* data() const;
  void* raw_data() const;
  double item() const;  // the value of a one-element tensor
  template <class T>
  std::vector<T> to_vector() const;  // row-major copy of all elements (read on the host from any device)

  // ---- autograd
  bool requires_grad() const { return impl_->requires_grad; }
  Tensor& set_requires_grad(bool on = true);  // leaves only
  bool is_leaf() const;
  Tensor grad() const;                   // undefined until backward() reaches this leaf
  void set_grad(const Tensor& g) const;  // the handle is const; the gradient lives in the shared state
  void zero_grad() const;                // drops the accumulated gradient
  // Back-propagates from this tensor. `grad` defaults to 1 for a one-element tensor. Without
  // retain_graph the graph's saved tensors are released and a second backward through it throws.
  void backward(const Tensor& grad = Tensor(), bool retain_graph = false) const;
  Tensor detach() const;  // same storage, no history, requires_grad off

  // ---- views (engine/ops/view.cpp); all are differentiable
  Tensor reshape(Shape shape) const;  // a view when the strides allow it, a copy otherwise; -1 infers
  Tensor view(Shape shape) const;     // like reshape but throws instead of copying
  Tensor permute(const std::vector<int64_t>& dims) const;
  Tensor transpose(int64_t dim0, int64_t dim1) const;
  Tensor narrow(int64_t dim, int64_t start, int64_t length) const;
  Tensor select(int64_t dim, int64_t index) const;  // narrow to one and drop the dimension
  Tensor expand(Shape shape) const;                 // broadcast size-1 dims (stride 0); -1 keeps
  Tensor unsqueeze(int64_t dim) const;
  Tensor squeeze(int64_t dim) const;  // only if that dimension has size 1
  Tensor squeeze() const;             // every size-1 dimension
  Tensor flatten(int64_t start_dim = 0, int64_t end_dim = -1) const;
  Tensor contiguous() const;  // this tensor if already row-major, else a differentiable copy
  Tensor clone() const;       // always a differentiable copy
  Tensor to(DType dtype) const;

  std::string str() const;  // shape, dtype, device and (for small tensors) the values

 private:
  std::shared_ptr<TensorImpl> impl_;
};

// Tensors by name: a module's state, a checkpoint's contents.
using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

// Row-major strides of a shape.
Shape contiguous_strides(const Shape& shape);
int64_t shape_numel(const Shape& shape);
std::string shape_str(const Shape& shape);
// Wraps a possibly negative dimension index into [0, ndim), with an error naming `op` if out of range.
int64_t wrap_dim(int64_t dim, int64_t ndim, const char* op);

}  // namespace icd
