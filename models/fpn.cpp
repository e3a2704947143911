#include "models/fpn.h"

#include <stdexcept>

#include "engine/ops/elementwise.h"
#include "engine/ops/resize.h"
#include "layers/conv2d.h"
#include "layers/init.h"

namespace icd {
namespace {

std::shared_ptr<Conv2d> xavier_conv(int64_t in, int64_t out, int64_t kernel, int64_t stride, Generator& gen) {
  auto conv = std::make_shared<Conv2d>(in, out, kernel, gen, stride, kernel / 2);
  init::c2_xavier_fill_(conv->weight(), conv->bias(), gen);
  return conv;
}

// torchvision wraps each FPN conv in a one-element Sequential (Conv2dNormActivation), hence ".0." in names.
std::shared_ptr<Sequential> wrapped(std::shared_ptr<UnaryModule> conv) {
  auto seq = std::make_shared<Sequential>();
  seq->push_back(std::move(conv));
  return seq;
}

}  // namespace

Fpn::Fpn(const FpnConfig& config, Generator& gen) : config_(config) {
  if (config.in_channels.size() != 3)
    throw std::invalid_argument("Fpn: expects the channels of C3, C4, C5 (3 levels), got " +
                                std::to_string(config.in_channels.size()));
  inner_blocks_ = register_module("inner_blocks", std::make_shared<Sequential>());
  layer_blocks_ = register_module("layer_blocks", std::make_shared<Sequential>());
  for (int64_t in : config.in_channels) {
    inner_blocks_->push_back(wrapped(xavier_conv(in, config.channels, 1, 1, gen)));
    layer_blocks_->push_back(wrapped(xavier_conv(config.channels, config.channels, 3, 1, gen)));
  }
  // Named children (not a Sequential) to match torchvision's LastLevelP6P7: extra_blocks.p6, extra_blocks.p7.
  auto extra = register_module("extra_blocks", std::make_shared<ModuleDict>());
  const int64_t p6_in = config.p6_from_c5 ? config.in_channels.back() : config.channels;
  p6_ = extra->add("p6", xavier_conv(p6_in, config.channels, 3, 2, gen));
  p7_ = extra->add("p7", xavier_conv(config.channels, config.channels, 3, 2, gen));
}

std::vector<Tensor> Fpn::forward(const std::vector<Tensor>& features) {
  if (features.size() != 3) throw std::invalid_argument("Fpn: expects {C3, C4, C5}");
  std::vector<Tensor> inner(3);
  inner[2] = (*inner_blocks_)[2].forward(features[2]);
  for (int l = 1; l >= 0; --l) {
    Tensor lateral = (*inner_blocks_)[l].forward(features[l]);
    inner[l] = add(lateral, upsample_nearest2d(inner[l + 1], lateral.size(2), lateral.size(3)));
  }
  std::vector<Tensor> out;
  for (int l = 0; l < 3; ++l)
    out.push_back((*layer_blocks_)[l].forward(inner[l]));
  Tensor p6 = p6_->forward(config_.p6_from_c5 ? features[2] : out[2]);
  out.push_back(p6);
  out.push_back(p7_->forward(relu(p6)));
  return out;
}

}  // namespace icd
