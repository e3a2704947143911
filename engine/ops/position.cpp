#include "engine/ops/position.h"

#include <stdexcept>
#include <string>

#include "engine/cuda_ops.h"
#include "engine/dispatch.h"
#include "engine/factory.h"
#include "engine/kernels/position_math.h"
#include "engine/transfer.h"

namespace icd {

Tensor sine_position_embedding_rect(const std::vector<ImageSize>& level_sizes,
                                    const std::vector<std::vector<ImageSize>>& valid, int64_t channels,
                                    TensorOptions options) {
  const char* op = "sine_position_embedding_rect";
  if (channels <= 0 || channels % 4)
    throw std::invalid_argument(std::string(op) + ": channels must be a positive multiple of 4, got " +
                                std::to_string(channels));
  if (level_sizes.empty() || level_sizes.size() > kernels::kMaxPositionLevels)
    throw std::invalid_argument(std::string(op) + ": need 1 to " +
                                std::to_string(kernels::kMaxPositionLevels) + " levels, got " +
                                std::to_string(level_sizes.size()));
  const int64_t B = static_cast<int64_t>(valid.size()), L = static_cast<int64_t>(level_sizes.size());
  if (B == 0) throw std::invalid_argument(std::string(op) + ": no images");
  kernels::PositionLevels levels{};
  levels.count = static_cast<int>(L);
  int64_t S = 0;
  for (int64_t l = 0; l < L; ++l) {
    const ImageSize size = level_sizes[static_cast<std::size_t>(l)];
    if (size.height <= 0 || size.width <= 0)
      throw std::invalid_argument(std::string(op) + ": level " + std::to_string(l) + " is empty");
    levels.start[l] = S;
    levels.height[l] = size.height;
    levels.width[l] = size.width;
    S += size.height * size.width;
  }
  std::vector<int64_t> extents;  // [B, L, 2]: rows, cols
  for (int64_t b = 0; b < B; ++b) {
    const std::vector<ImageSize>& image = valid[static_cast<std::size_t>(b)];
    if (static_cast<int64_t>(image.size()) != L)
      throw std::invalid_argument(std::string(op) + ": image " + std::to_string(b) + " has " +
                                  std::to_string(image.size()) + " valid extents for " + std::to_string(L) +
                                  " levels");
    for (int64_t l = 0; l < L; ++l) {
      const ImageSize e = image[static_cast<std::size_t>(l)];
      if (e.height < 0 || e.width < 0 || e.height > levels.height[l] || e.width > levels.width[l])
        throw std::invalid_argument(std::string(op) + ": image " + std::to_string(b) + ", level " +
                                    std::to_string(l) + ": valid " + std::to_string(e.height) + "x" +
                                    std::to_string(e.width) + " does not fit the level's " +
                                    std::to_string(levels.height[l]) + "x" + std::to_string(levels.width[l]));
      extents.push_back(e.height);
      extents.push_back(e.width);
    }
  }
  Tensor out = empty({S, B, channels}, options);
  if (options.device.is_cuda()) {
    cuda_ops::sine_position_embedding(op, levels, to_device(from_vector(extents, {B, L, 2}), options.device),
                                      out);
    return out;
  }
  dispatch_floating(options.dtype, op, [&](auto tag) {
    using T = decltype(tag);
    T* o = out.data<T>();
    const int64_t n = S * B * channels;
    for (int64_t i = 0; i < n; ++i)
      o[i] = kernels::sine_position_at<T>(levels, extents.data(), B, channels, i);
  });
  return out;
}

}  // namespace icd
