// DETR's normalised sine position embedding (engine/ops/position.cpp) of a batch of feature pyramids,
// for valid regions that are rectangles: image b occupies the top-left valid[b][l] = (rows, cols) cells of
// level l (the rest is padding). The arithmetic, element by element, is engine/kernels/position_math.h.
//
//   out [S, B, channels], S = sum_l H_l W_l, each level row-major, levels in order; no gradient.
//
// distill/conditional_decoder.h computes the same embedding from a padding mask (any mask, on the host);
// this op is how it is made directly on a GPU, where only the extents cross the bus. channels must be a
// positive multiple of 4; every level non-empty; rows <= H_l and cols <= W_l. Throws std::invalid_argument
// naming what is wrong.
#pragma once
#include <vector>

#include "engine/geometry.h"
#include "engine/tensor.h"

namespace icd {

Tensor sine_position_embedding_rect(const std::vector<ImageSize>& level_sizes,
                                    const std::vector<std::vector<ImageSize>>& valid, int64_t channels,
                                    TensorOptions options = {});

}  // namespace icd
