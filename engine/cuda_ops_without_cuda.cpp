// engine/cuda_ops.h for a build without the CUDA backend. No tensor can live on a CUDA device in such a
// build (allocating one fails first, see device_memory_without_cuda.cpp), so these are unreachable from
// the ops; they still refuse clearly, naming the op.
#include <stdexcept>

#include "engine/cuda_ops.h"
#include "engine/dispatch.h"

namespace icd::cuda_ops {

void map_unary(const char* op, kernels::UnaryOpCall, const Tensor&, Tensor&) {
  throw std::runtime_error(no_cuda_backend_message(op));
}
void map_binary(const char* op, kernels::BinaryOpCall, const Tensor&, const Tensor&, Tensor&) {
  throw std::runtime_error(no_cuda_backend_message(op));
}
void where(const char* op, const Tensor&, const Tensor&, const Tensor&, Tensor&) {
  throw std::runtime_error(no_cuda_backend_message(op));
}
void copy(const char* op, const Tensor&, Tensor&) {
  throw std::runtime_error(no_cuda_backend_message(op));
}
void fill(const char* op, Tensor&, double) {
  throw std::runtime_error(no_cuda_backend_message(op));
}
void sum(const char* op, const Tensor&, const std::vector<bool>&, Tensor&) {
  throw std::runtime_error(no_cuda_backend_message(op));
}

void sgd_update(const char* op, const kernels::SgdUpdate<double>&, Tensor&, const Tensor&, Tensor*) {
  throw std::runtime_error(no_cuda_backend_message(op));
}
void adamw_update(const char* op, const kernels::AdamWUpdate<double>&, Tensor&, const Tensor&, Tensor&,
                  Tensor&) {
  throw std::runtime_error(no_cuda_backend_message(op));
}
void clip_by_value(const char* op, Tensor&, double) {
  throw std::runtime_error(no_cuda_backend_message(op));
}

}  // namespace icd::cuda_ops
