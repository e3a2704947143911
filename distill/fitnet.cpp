#include "distill/fitnet.h"

#include <stdexcept>
#include <string>

#include "engine/ops/elementwise.h"
#include "engine/ops/loss.h"

namespace icd {

FitNetDistiller::FitNetDistiller(const FitNetConfig& config, Generator& gen) : config_(config) {
  if (config.num_levels <= 0 || config.student_channels <= 0 || config.teacher_channels <= 0)
    throw std::invalid_argument("FitNetDistiller: num_levels and channel counts must be positive");
  if (config.shared_adapter) {
    auto adapter = register_module(
        "adapter", std::make_shared<Conv2d>(config.student_channels, config.teacher_channels, 1, gen));
    adapters_.assign(static_cast<std::size_t>(config.num_levels), adapter);
  } else {
    auto dict = register_module("adapters", std::make_shared<ModuleDict>());
    for (int64_t l = 0; l < config.num_levels; ++l)
      adapters_.push_back(
          dict->add(std::to_string(l),
                    std::make_shared<Conv2d>(config.student_channels, config.teacher_channels, 1, gen)));
  }
}

Tensor FitNetDistiller::forward(const std::vector<Tensor>& student, const std::vector<Tensor>& teacher) {
  const std::size_t n = adapters_.size();
  if (student.size() != n || teacher.size() != n)
    throw std::invalid_argument("FitNetDistiller: expected " + std::to_string(n) + " levels, got " +
                                std::to_string(student.size()) + " student and " +
                                std::to_string(teacher.size()) + " teacher maps");
  Tensor total;
  for (std::size_t l = 0; l < n; ++l) {
    const Tensor adapted = adapters_[l]->forward(student[l]);
    if (adapted.shape() != teacher[l].shape())
      throw std::invalid_argument("FitNetDistiller: level " + std::to_string(l) + ": adapted student " +
                                  shape_str(adapted.shape()) + " does not match teacher " +
                                  shape_str(teacher[l].shape()));
    const Tensor level = mse_loss(adapted, teacher[l].detach(), Reduction::mean);
    total = total.defined() ? add(total, level) : level;
  }
  return mul(total, config_.weight / static_cast<double>(n));
}

}  // namespace icd
