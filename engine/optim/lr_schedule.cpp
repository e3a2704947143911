// Learning-rate schedules, following detectron2's build_lr_scheduler (fvcore ParamSchedulers): the rate
// is base_lr times a multiplier, and warmup is a straight line from warmup_factor * s(0) at iteration 0
// to s(warmup_iters), the value the schedule itself has where warmup ends:
//
//   multiplier(i) = a s(W) + (1 - a) warmup_factor s(0),  a = i / W     for i < W
//   multiplier(i) = s(i)                                                for i >= W
//
// with W = min(warmup_iters, max_iter). For the multi-step schedule s(W) is normally 1 (milestones come
// after warmup), which gives the classic warmup_factor (1 - a) + a ramp of WarmupMultiStepLR.
#include "engine/optim/lr_schedule.h"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <stdexcept>
#include <string>

namespace icd {

LrSchedule::LrSchedule(double base_lr, int64_t max_iter, LinearWarmup warmup)
    : base_lr_(base_lr), max_iter_(max_iter), warmup_(warmup) {
  if (!(base_lr > 0.0)) throw std::invalid_argument("lr schedule: base_lr must be > 0");
  if (max_iter <= 0) throw std::invalid_argument("lr schedule: max_iter must be > 0");
  if (warmup.iters < 0) throw std::invalid_argument("lr schedule: warmup iters must be >= 0");
  if (!(warmup.factor >= 0.0)) throw std::invalid_argument("lr schedule: warmup factor must be >= 0");
}

double LrSchedule::lr(int64_t iter) const {
  if (iter < 0 || iter > max_iter_)
    throw std::out_of_range("lr schedule: iteration " + std::to_string(iter) + " is outside [0, " +
                            std::to_string(max_iter_) + "]");
  const int64_t warmup_end = std::min(warmup_.iters, max_iter_);
  if (iter >= warmup_end) return base_lr_ * schedule(iter);
  const double a = static_cast<double>(iter) / static_cast<double>(warmup_end);
  const double start = warmup_.factor * schedule(0), end = schedule(warmup_end);
  return base_lr_ * (end * a + start * (1.0 - a));
}

WarmupMultiStepLR::WarmupMultiStepLR(MultiStepOptions options)
    : LrSchedule(options.base_lr, options.max_iter, options.warmup),
      milestones_(std::move(options.milestones)),
      gamma_(options.gamma) {
  for (std::size_t k = 0; k < milestones_.size(); ++k)
    if (milestones_[k] <= 0 || (k > 0 && milestones_[k] <= milestones_[k - 1]))
      throw std::invalid_argument("WarmupMultiStepLR: milestones must be positive and strictly increasing");
  if (!(gamma_ > 0.0)) throw std::invalid_argument("WarmupMultiStepLR: gamma must be > 0");
}

double WarmupMultiStepLR::schedule(int64_t iter) const {
  const auto passed = std::upper_bound(milestones_.begin(), milestones_.end(), iter) - milestones_.begin();
  return std::pow(gamma_, static_cast<double>(passed));
}

WarmupCosineLR::WarmupCosineLR(CosineOptions options)
    : LrSchedule(options.base_lr, options.max_iter, options.warmup),
      end_multiplier_(options.final_lr / options.base_lr) {
  if (!(options.final_lr >= 0.0)) throw std::invalid_argument("WarmupCosineLR: final_lr must be >= 0");
}

double WarmupCosineLR::schedule(int64_t iter) const {
  const double where = static_cast<double>(iter) / static_cast<double>(max_iter());
  return end_multiplier_ + 0.5 * (1.0 - end_multiplier_) * (1.0 + std::cos(std::numbers::pi * where));
}

}  // namespace icd
