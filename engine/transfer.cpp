#include "engine/transfer.h"

#include <stdexcept>

#include "engine/device_memory.h"
#include "engine/factory.h"

namespace icd {

Tensor to_device(const Tensor& t, Device device) {
  if (!t.defined()) throw std::invalid_argument("to_device: undefined tensor");
  if (t.device() == device) return t;
  // A view is first made contiguous on its own device (the CPU's loops or the CUDA strided copy).
  const Tensor source = t.detach().contiguous();
  Tensor out = empty(t.shape(), {t.dtype(), device});
  copy_bytes(out.raw_data(), device, source.raw_data(), source.device(),
             static_cast<std::size_t>(source.numel()) * dtype_size(source.dtype()));
  return out;
}

}  // namespace icd
