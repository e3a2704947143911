// Weight initialisers, in place (no graph). Fans follow torch: for a weight of shape [out, in, k...],
// fan_in = in * prod(k), fan_out = out * prod(k).
#pragma once
#include "engine/random.h"
#include "engine/tensor.h"

namespace icd::init {

enum class FanMode { fan_in, fan_out };

// N(0, std^2) with std = gain / sqrt(fan), gain = sqrt(2 / (1 + a^2)) (a: leaky-ReLU slope, 0 for ReLU).
void kaiming_normal_(const Tensor& w, Generator& gen, double a = 0.0, FanMode mode = FanMode::fan_in);
// U(-bound, bound) with bound = gain * sqrt(3 / fan).
void kaiming_uniform_(const Tensor& w, Generator& gen, double a = 0.0, FanMode mode = FanMode::fan_in);
// U(-bound, bound) with bound = gain * sqrt(6 / (fan_in + fan_out)).
void xavier_uniform_(const Tensor& w, Generator& gen, double gain = 1.0);
// detectron2's c2_xavier_fill: kaiming_uniform with a = 1 (bound = sqrt(3 / fan_in)); bias set to 0.
void c2_xavier_fill_(const Tensor& w, const Tensor& bias, Generator& gen);
void normal_(const Tensor& w, Generator& gen, double mean, double stddev);
void uniform_(const Tensor& w, Generator& gen, double low, double high);
void constant_(const Tensor& w, double value);
// The bias that makes sigmoid(bias) = prior at the start: -log((1 - prior) / prior) (RetinaNet, 0.01).
double prior_probability_bias(double prior);

int64_t fan_in(const Tensor& w);
int64_t fan_out(const Tensor& w);

}  // namespace icd::init
