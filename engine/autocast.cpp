#include "engine/autocast.h"

#include <stdexcept>
#include <string>

namespace icd {
namespace {

thread_local DType current_precision = DType::f32;

}  // namespace

AutocastGuard::AutocastGuard(DType precision) : previous_(current_precision) {
  if (precision != DType::f32 && precision != DType::f16 && precision != DType::bf16)
    throw std::invalid_argument(std::string("AutocastGuard: the precision must be f32, bf16 or f16, got ") +
                                dtype_name(precision));
  current_precision = precision;
}

AutocastGuard::~AutocastGuard() {
  current_precision = previous_;
}

DType autocast_precision() {
  return current_precision;
}

std::optional<DType> autocast_precision_for(const Tensor& operand) {
  if (current_precision == DType::f32 || operand.dtype() != DType::f32) return std::nullopt;
  return current_precision;
}

DType parse_precision(const std::string& text) {
  if (text == "f32") return DType::f32;
  if (text == "bf16") return DType::bf16;
  if (text == "f16") return DType::f16;
  throw std::invalid_argument("precision '" + text + "': expected f32, bf16 or f16");
}

}  // namespace icd
