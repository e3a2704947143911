#include "layers/init.h"

#include <cmath>
#include <stdexcept>

#include "engine/autograd.h"
#include "engine/factory.h"
#include "engine/ops/elementwise.h"

namespace icd::init {
namespace {

int64_t receptive_field(const Tensor& w) {
  if (w.dim() < 2)
    throw std::invalid_argument("init: fan needs a weight of at least 2 dims, got " + shape_str(w.shape()));
  int64_t r = 1;
  for (int64_t d = 2; d < w.dim(); ++d)
    r *= w.size(d);
  return r;
}

double gain_for(double a) {
  return std::sqrt(2.0 / (1.0 + a * a));
}

int64_t chosen_fan(const Tensor& w, FanMode mode) {
  return mode == FanMode::fan_in ? fan_in(w) : fan_out(w);
}

// Copies `values` into w (any dtype, any layout) without recording a graph.
void fill_from(const Tensor& w, const Tensor& values) {
  NoGradGuard no_grad;
  Tensor target = w;  // a handle to the same storage: the values change, the handle does not
  copy_(target, values);
}

}  // namespace

int64_t fan_in(const Tensor& w) {
  const int64_t r = receptive_field(w);  // checks the rank first
  return w.size(1) * r;
}
int64_t fan_out(const Tensor& w) {
  const int64_t r = receptive_field(w);
  return w.size(0) * r;
}

void normal_(const Tensor& w, Generator& gen, double mean, double stddev) {
  fill_from(w, normal(w.shape(), mean, stddev, gen, {DType::f64}));
}

void uniform_(const Tensor& w, Generator& gen, double low, double high) {
  fill_from(w, uniform(w.shape(), low, high, gen, {DType::f64}));
}

void constant_(const Tensor& w, double value) {
  NoGradGuard no_grad;
  Tensor target = w;
  fill_(target, value);
}

void kaiming_normal_(const Tensor& w, Generator& gen, double a, FanMode mode) {
  normal_(w, gen, 0.0, gain_for(a) / std::sqrt(static_cast<double>(chosen_fan(w, mode))));
}

void kaiming_uniform_(const Tensor& w, Generator& gen, double a, FanMode mode) {
  double bound = gain_for(a) * std::sqrt(3.0 / static_cast<double>(chosen_fan(w, mode)));
  uniform_(w, gen, -bound, bound);
}

void xavier_uniform_(const Tensor& w, Generator& gen, double gain) {
  double bound = gain * std::sqrt(6.0 / static_cast<double>(fan_in(w) + fan_out(w)));
  uniform_(w, gen, -bound, bound);
}

void c2_xavier_fill_(const Tensor& w, const Tensor& bias, Generator& gen) {
  kaiming_uniform_(w, gen, 1.0);
  if (bias.defined()) constant_(bias, 0.0);
}

double prior_probability_bias(double prior) {
  if (!(prior > 0.0 && prior < 1.0))
    throw std::invalid_argument("prior_probability_bias: prior must be in (0, 1)");
  return -std::log((1.0 - prior) / prior);
}

}  // namespace icd::init
