// Feature Pyramid Network (Lin et al. 2017) as RetinaNet uses it: P3-P5 from C3-C5 through lateral 1x1
// convs and a top-down path, P6 and P7 from strided 3x3 convs.
//
//   inner_l = lateral_l(C_l)                              1x1, C_l -> channels
//   top-down: inner_5; inner_4 += up2(inner_5); inner_3 += up2(inner_4)   (nearest 2x, "sum" fuse)
//   P_l = output_l(inner_l)                               3x3, channels -> channels
//   P6 = conv3x3/2(C5)   (detectron2; or of P5: torchvision)    P7 = conv3x3/2(ReLU(P6))
//
// Parameter names follow torchvision: inner_blocks.{0,1,2}.0, layer_blocks.{0,1,2}.0, extra_blocks.p6/p7.
// Init (detectron2): c2_xavier_fill for every conv (kaiming_uniform a=1, bias 0).
#pragma once
#include <memory>
#include <vector>

#include "engine/random.h"
#include "layers/sequential.h"

namespace icd {

struct FpnConfig {
  std::vector<int64_t> in_channels = {512, 1024, 2048};  // C3, C4, C5
  int64_t channels = 256;
  bool p6_from_c5 = true;  // detectron2 (the paper); false: from P5 (torchvision)
};

class Fpn : public Module {
 public:
  Fpn(const FpnConfig& config, Generator& gen);
  // {C3, C4, C5} -> {P3, P4, P5, P6, P7}
  std::vector<Tensor> forward(const std::vector<Tensor>& features);
  const FpnConfig& config() const { return config_; }

 private:
  FpnConfig config_;
  std::shared_ptr<Sequential> inner_blocks_, layer_blocks_;
  std::shared_ptr<UnaryModule> p6_, p7_;
};

}  // namespace icd
