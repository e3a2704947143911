// Learning-rate schedules over iterations, as detectron2 builds them (solver/build.py: an fvcore
// ParamScheduler wrapped in WarmupParamScheduler and LRMultiplier). lr(iter) = base_lr * multiplier(iter)
// for iter in [0, max_iter]; iter is the number of optimizer steps already taken, so lr(0) is the rate of
// the first step (engine/optim/lr_schedule.cpp).
//
// Linear warmup (detectron2's WarmupParamScheduler): for iter < warmup_iters the multiplier goes in a
// straight line from warmup_factor * s(0) to s(warmup_iters), where s is the schedule being warmed up;
// from warmup_iters on it is s(iter).
#pragma once
#include <cstdint>
#include <vector>

namespace icd {

struct LinearWarmup {
  double factor = 0.001;  // the multiplier at iteration 0, relative to the schedule's own start
  int64_t iters = 1000;   // 0: no warmup
};

class LrSchedule {
 public:
  LrSchedule(double base_lr, int64_t max_iter, LinearWarmup warmup);
  virtual ~LrSchedule() = default;
  double lr(int64_t iter) const;  // throws std::out_of_range outside [0, max_iter]
  double base_lr() const { return base_lr_; }
  int64_t max_iter() const { return max_iter_; }

 protected:
  // The schedule without warmup, at iter in [0, max_iter].
  virtual double schedule(int64_t iter) const = 0;

 private:
  double base_lr_;
  int64_t max_iter_;
  LinearWarmup warmup_;
};

// detectron2 WarmupMultiStepLR: s(iter) = gamma^k with k the number of milestones <= iter.
struct MultiStepOptions {
  double base_lr = 0.01;
  int64_t max_iter = 90000;
  std::vector<int64_t> milestones{60000, 80000};  // strictly increasing, positive
  double gamma = 0.1;
  LinearWarmup warmup;
};

class WarmupMultiStepLR : public LrSchedule {
 public:
  explicit WarmupMultiStepLR(MultiStepOptions options);

 protected:
  double schedule(int64_t iter) const override;

 private:
  std::vector<int64_t> milestones_;
  double gamma_;
};

// detectron2 WarmupCosineLR: half a cosine from base_lr at iteration 0 to final_lr at max_iter,
//   s(iter) = e + (1 - e) (1 + cos(pi iter / max_iter)) / 2,   e = final_lr / base_lr.
struct CosineOptions {
  double base_lr = 1e-4;
  int64_t max_iter = 90000;
  double final_lr = 0.0;
  LinearWarmup warmup;
};

class WarmupCosineLR : public LrSchedule {
 public:
  explicit WarmupCosineLR(CosineOptions options);

 protected:
  double schedule(int64_t iter) const override;

 private:
  double end_multiplier_;
};

}  // namespace icd
