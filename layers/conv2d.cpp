#include "layers/conv2d.h"

#include <cmath>
#include <stdexcept>

#include "engine/factory.h"
#include "layers/init.h"

namespace icd {

Conv2d::Conv2d(const Conv2dConfig& config, Generator& gen) : config_(config) {
  const int64_t groups = config.options.groups;
  if (config.in_channels <= 0 || config.out_channels <= 0 || groups <= 0 || config.in_channels % groups ||
      config.out_channels % groups)
    throw std::invalid_argument("Conv2d: channels " + std::to_string(config.in_channels) + " -> " +
                                std::to_string(config.out_channels) + " do not fit groups " +
                                std::to_string(groups));
  Tensor w = empty({config.out_channels, config.in_channels / groups, config.kernel_h, config.kernel_w});
  init::kaiming_uniform_(w, gen, std::sqrt(5.0));
  register_parameter("weight", w);
  if (config.bias) {
    Tensor b = empty({config.out_channels});
    double bound = 1.0 / std::sqrt(static_cast<double>(init::fan_in(w)));
    init::uniform_(b, gen, -bound, bound);
    register_parameter("bias", b);
  }
}

Conv2d::Conv2d(int64_t in, int64_t out, int64_t kernel, Generator& gen, int64_t stride, int64_t padding,
               bool bias, int64_t groups)
    : Conv2d(Conv2dConfig{.in_channels = in,
                          .out_channels = out,
                          .kernel_h = kernel,
                          .kernel_w = kernel,
                          .options = Conv2dOptions::square(stride, padding, 1, groups),
                          .bias = bias},
             gen) {}

Tensor Conv2d::bias() {
  return config_.bias ? parameter("bias") : Tensor();
}

Tensor Conv2d::forward(const Tensor& x) {
  return conv2d(x, weight(), bias(), config_.options);
}

}  // namespace icd
