// A seeded random generator whose streams are identical on every platform: std::mt19937_64 is fully
// specified by the standard, while std::normal_distribution and friends are not, so the transforms
// to uniform and normal variates are written out here.
#pragma once
#include <cstdint>
#include <random>

namespace icd {

class Generator {
 public:
  explicit Generator(uint64_t seed = 0) : engine_(seed) {}
  void seed(uint64_t seed) {
    engine_.seed(seed);
    has_spare_normal_ = false;
  }

  uint64_t next_u64() { return engine_(); }
  // Uniform in [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>(engine_() >> 11) * 0x1.0p-53; }
  double uniform(double low, double high) { return low + (high - low) * uniform(); }
  // Standard normal by the Box-Muller transform; the second variate of each pair is kept for the next call.
  double normal();
  // Uniform integer in [0, n).
  uint64_t integer(uint64_t n);

 private:
  std::mt19937_64 engine_;
  bool has_spare_normal_ = false;
  double spare_normal_ = 0.0;
};

}  // namespace icd
