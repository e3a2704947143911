#include "layers/linear.h"

#include <cmath>
#include <stdexcept>

#include "engine/factory.h"
#include "engine/ops/matmul.h"
#include "layers/init.h"

namespace icd {

Linear::Linear(int64_t in_features, int64_t out_features, Generator& gen, bool bias) : has_bias_(bias) {
  if (in_features <= 0 || out_features <= 0)
    throw std::invalid_argument("Linear: sizes must be positive, got " + std::to_string(in_features) +
                                " -> " + std::to_string(out_features));
  Tensor w = empty({out_features, in_features});
  init::kaiming_uniform_(w, gen, std::sqrt(5.0));
  register_parameter("weight", w);
  if (bias) {
    Tensor b = empty({out_features});
    double bound = 1.0 / std::sqrt(static_cast<double>(in_features));
    init::uniform_(b, gen, -bound, bound);
    register_parameter("bias", b);
  }
}

Tensor Linear::bias() {
  return has_bias_ ? parameter("bias") : Tensor();
}

Tensor Linear::forward(const Tensor& x) {
  return linear(x, weight(), bias());
}

}  // namespace icd
