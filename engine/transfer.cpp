#include "engine/transfer.h"

#include <stdexcept>

#include "engine/device_memory.h"
#include "engine/factory.h"

namespace icd {

Tensor to_device(const Tensor& t, Device device) {
  if (!t.defined()) throw std::invalid_argument("to_device: undefined tensor");
  if (t.device() == device) return t;
  // The CPU makes any view contiguous; a CUDA view would need a strided copy kernel.
  const Tensor source = t.device().is_cpu() ? t.detach().contiguous() : t.detach();
  if (!source.is_contiguous())
    throw std::invalid_argument("to_device: a non-contiguous tensor on " + t.device().str() +
                                " cannot be copied yet (" + shape_str(t.shape()) + ")");
  Tensor out = empty(t.shape(), {t.dtype(), device});
  copy_bytes(out.raw_data(), device, source.raw_data(), source.device(),
             static_cast<std::size_t>(source.numel()) * dtype_size(source.dtype()));
  return out;
}

}  // namespace icd
