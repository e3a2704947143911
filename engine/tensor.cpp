#include "engine/tensor.h"

#include <cstring>
#include <sstream>
#include <stdexcept>

#include "engine/autograd.h"
#include "engine/cpu/strided.h"
#include "engine/transfer.h"

namespace icd {

Shape contiguous_strides(const Shape& shape) {
  Shape strides(shape.size());
  int64_t stride = 1;
  for (int64_t d = static_cast<int64_t>(shape.size()) - 1; d >= 0; --d) {
    strides[d] = stride;
    stride *= shape[d];
  }
  return strides;
}

int64_t shape_numel(const Shape& shape) {
  int64_t n = 1;
  for (int64_t s : shape)
    n *= s;
  return n;
}

std::string shape_str(const Shape& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i)
    s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

int64_t wrap_dim(int64_t dim, int64_t ndim, const char* op) {
  int64_t wrapped = dim < 0 ? dim + ndim : dim;
  if (wrapped < 0 || wrapped >= ndim)
    throw std::out_of_range(std::string(op) + ": dimension " + std::to_string(dim) +
                            " is out of range for a tensor of " + std::to_string(ndim) + " dimensions");
  return wrapped;
}

int64_t Tensor::size(int64_t d) const {
  return impl_->shape[wrap_dim(d, dim(), "size")];
}
int64_t Tensor::stride(int64_t d) const {
  return impl_->strides[wrap_dim(d, dim(), "stride")];
}
int64_t Tensor::numel() const {
  return shape_numel(impl_->shape);
}

bool Tensor::is_contiguous() const {
  int64_t expected = 1;
  for (int64_t d = dim() - 1; d >= 0; --d) {
    if (impl_->shape[d] != 1 && impl_->strides[d] != expected) return false;
    expected *= impl_->shape[d];
  }
  return true;
}

bool Tensor::shares_storage_with(const Tensor& other) const {
  return defined() && other.defined() && impl_->storage == other.impl_->storage;
}

void* Tensor::raw_data() const {
  return static_cast<char*>(impl_->storage->data()) + impl_->offset * dtype_size(impl_->dtype);
}

template <class T>
T* Tensor::data() const {
  if (dtype() != dtype_of<T>())
    throw std::invalid_argument(std::string("data<") + dtype_name(dtype_of<T>()) +
                                ">() on a tensor of dtype " + dtype_name(dtype()));
  if (!device().is_cpu()) throw std::invalid_argument("data(): the tensor lives on " + device().str());
  return static_cast<T*>(raw_data());
}
template float* Tensor::data<float>() const;
template double* Tensor::data<double>() const;
template int64_t* Tensor::data<int64_t>() const;

template <class T>
std::vector<T> Tensor::to_vector() const {
  if (!device().is_cpu()) return to_device(*this, Device::cpu()).to_vector<T>();  // read on the host
  std::vector<T> out(numel());
  dispatch_all(dtype(), "to_vector", [&](auto tag) {
    using S = decltype(tag);
    const S* src = data<S>();
    T* dst = out.data();
    cpu::for_each_offset(shape(), strides(), [&](int64_t offset) { *dst++ = static_cast<T>(src[offset]); });
  });
  return out;
}
template std::vector<float> Tensor::to_vector<float>() const;
template std::vector<double> Tensor::to_vector<double>() const;
template std::vector<int64_t> Tensor::to_vector<int64_t>() const;

double Tensor::item() const {
  if (numel() != 1)
    throw std::invalid_argument("item(): the tensor has " + std::to_string(numel()) + " elements, not 1");
  if (!device().is_cpu()) return to_device(*this, Device::cpu()).item();
  return dispatch_all(dtype(), "item", [&](auto tag) { return static_cast<double>(*data<decltype(tag)>()); });
}

Tensor& Tensor::set_requires_grad(bool on) {
  if (on && dtype() == DType::i64)
    throw std::logic_error("set_requires_grad: i64 tensors are not differentiable");
  if (!is_leaf())
    throw std::logic_error("set_requires_grad: only leaves can be marked; this tensor was produced by " +
                           impl_->grad_fn->name + " (use detach() first)");
  impl_->requires_grad = on;
  return *this;
}

bool Tensor::is_leaf() const {
  return impl_->grad_fn == nullptr;
}
Tensor Tensor::grad() const {
  return Tensor(impl_->grad);
}

void Tensor::set_grad(const Tensor& g) const {
  if (g.defined() && (g.shape() != shape() || g.dtype() != dtype()))
    throw std::invalid_argument("set_grad: gradient " + shape_str(g.shape()) + " does not match tensor " +
                                shape_str(shape()));
  impl_->grad = g.impl_ptr();
}

void Tensor::zero_grad() const {
  impl_->grad.reset();
}

void Tensor::backward(const Tensor& grad, bool retain_graph) const {
  autograd::backward(*this, grad, retain_graph);
}

Tensor Tensor::detach() const {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = impl_->storage;
  impl->shape = impl_->shape;
  impl->strides = impl_->strides;
  impl->offset = impl_->offset;
  impl->dtype = impl_->dtype;
  return Tensor(std::move(impl));
}

std::string Tensor::str() const {
  if (!defined()) return "Tensor(undefined)";
  std::ostringstream out;
  out << "Tensor(shape=" << shape_str(shape()) << ", dtype=" << dtype_name(dtype())
      << ", device=" << device().str();
  if (requires_grad())
    out << ", requires_grad" << (impl_->grad_fn ? ", grad_fn=" + impl_->grad_fn->name : "");
  out << ")";
  if (numel() <= 64 && dtype() != DType::f16 && dtype() != DType::bf16) {  // any device: read on the host
    std::vector<double> values = to_vector<double>();
    int64_t row = dim() ? size(-1) : 1;
    out << "\n[";
    for (std::size_t i = 0; i < values.size(); ++i) {
      if (i && row && i % row == 0) out << "\n ";
      out << values[i] << (i + 1 < values.size() ? " " : "");
    }
    out << "]";
  }
  return out.str();
}

}  // namespace icd
