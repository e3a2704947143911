#include "distill/conditional_decoder.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "engine/factory.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/position.h"
#include "engine/ops/shape.h"

namespace icd {

namespace {

int64_t total_positions(const std::vector<ImageSize>& level_sizes) {
  int64_t S = 0;
  for (const ImageSize& l : level_sizes) {
    if (l.height <= 0 || l.width <= 0)
      throw std::invalid_argument("feature levels: a level of size " + std::to_string(l.height) + "x" +
                                  std::to_string(l.width) + " is empty");
    S += l.height * l.width;
  }
  return S;
}

}  // namespace

Tensor flatten_levels(const std::vector<Tensor>& levels) {
  if (levels.empty()) throw std::invalid_argument("flatten_levels: no feature levels");
  std::vector<Tensor> flat;
  for (std::size_t i = 0; i < levels.size(); ++i) {
    const Tensor& x = levels[i];
    if (!x.defined() || x.dim() != 4)
      throw std::invalid_argument("flatten_levels: level " + std::to_string(i) +
                                  " must be [B, C, H, W], got " +
                                  (x.defined() ? shape_str(x.shape()) : std::string("undefined")));
    if (x.size(0) != levels[0].size(0) || x.size(1) != levels[0].size(1))
      throw std::invalid_argument("flatten_levels: level " + std::to_string(i) + " " + shape_str(x.shape()) +
                                  " does not share batch and channels with level 0 " +
                                  shape_str(levels[0].shape()));
    flat.push_back(x.flatten(2).permute({2, 0, 1}));  // [H W, B, C]
  }
  return cat(flat, 0);
}

namespace {

// Per image and level, the valid (unpadded) rows and cols: the top-left cells the image covers,
// ceil(h_b / stride_est) x ceil(w_b / stride_est) clamped to the level (see conditional_decoder.h).
std::vector<std::vector<ImageSize>> valid_extents(const std::vector<ImageSize>& level_sizes, ImageSize padded,
                                                  const std::vector<ImageSize>& images) {
  total_positions(level_sizes);  // checks that no level is empty
  if (padded.height <= 0 || padded.width <= 0 || images.empty())
    throw std::invalid_argument("feature_padding_mask: need a positive padded size and at least one image");
  std::vector<std::vector<ImageSize>> out;
  for (std::size_t b = 0; b < images.size(); ++b) {
    const ImageSize image = images[b];
    if (image.height <= 0 || image.width <= 0 || image.height > padded.height || image.width > padded.width)
      throw std::invalid_argument("feature_padding_mask: image " + std::to_string(b) + " of size " +
                                  std::to_string(image.height) + "x" + std::to_string(image.width) +
                                  " does not fit the padded size " + std::to_string(padded.height) + "x" +
                                  std::to_string(padded.width));
    std::vector<ImageSize> levels;
    for (const ImageSize& level : level_sizes) {
      const double stride = (static_cast<double>(padded.height) / static_cast<double>(level.height) +
                             static_cast<double>(padded.width) / static_cast<double>(level.width)) /
                            2.0;
      const int64_t rows = static_cast<int64_t>(std::ceil(static_cast<double>(image.height) / stride));
      const int64_t cols = static_cast<int64_t>(std::ceil(static_cast<double>(image.width) / stride));
      levels.push_back({std::min(rows, level.height), std::min(cols, level.width)});
    }
    out.push_back(std::move(levels));
  }
  return out;
}

Tensor padding_mask_of(const std::vector<ImageSize>& level_sizes,
                       const std::vector<std::vector<ImageSize>>& extents, TensorOptions options) {
  const int64_t S = total_positions(level_sizes), B = static_cast<int64_t>(extents.size());
  std::vector<double> mask(static_cast<std::size_t>(B * S), 1.0);
  for (int64_t b = 0; b < B; ++b) {
    int64_t start = 0;
    for (std::size_t l = 0; l < level_sizes.size(); ++l) {
      const ImageSize level = level_sizes[l], valid = extents[static_cast<std::size_t>(b)][l];
      for (int64_t y = 0; y < valid.height; ++y)
        for (int64_t x = 0; x < valid.width; ++x)
          mask[static_cast<std::size_t>(b * S + start + y * level.width + x)] = 0.0;
      start += level.height * level.width;
    }
  }
  return from_vector(mask, {B, S}, options);
}

}  // namespace

Tensor feature_padding_mask(const std::vector<ImageSize>& level_sizes, ImageSize padded,
                            const std::vector<ImageSize>& images, TensorOptions options) {
  return padding_mask_of(level_sizes, valid_extents(level_sizes, padded, images), options);
}

namespace {

// The encodings [sin(e / f_0), cos(e / f_0), sin(e / f_1), ...] of e = count / (last + 1e-6) * 2 pi, where
// count <= last <= max_count are running counts of valid cells. Only a few (count, last) pairs occur per
// level (one per row or column for a rectangular valid region), so each is computed once, on first use: the
// embedding of a large batch then costs a copy per position instead of C sines and cosines.
class SineTable {
 public:
  SineTable(int64_t max_count, const std::vector<double>& frequency)
      : max_count_(max_count),
        frequency_(frequency),
        slot_(static_cast<std::size_t>((max_count + 1) * (max_count + 1)), -1) {}

  const double* get(int64_t count, int64_t last) {
    int64_t& slot = slot_[static_cast<std::size_t>(count * (max_count_ + 1) + last)];
    const std::size_t width = 2 * frequency_.size();
    if (slot < 0) {
      slot = static_cast<int64_t>(values_.size() / width);
      const double e = static_cast<double>(count) / (static_cast<double>(last) + 1e-6) * 2.0 * M_PI;
      for (double f : frequency_) {
        values_.push_back(std::sin(e / f));
        values_.push_back(std::cos(e / f));
      }
    }
    return values_.data() + static_cast<std::size_t>(slot) * width;
  }

 private:
  int64_t max_count_;
  const std::vector<double>& frequency_;
  std::vector<int64_t> slot_;
  std::vector<double> values_;
};

}  // namespace

Tensor sine_position_embedding(const Tensor& padding_mask, const std::vector<ImageSize>& level_sizes,
                               int64_t channels) {
  const int64_t S = total_positions(level_sizes);
  if (padding_mask.dim() != 2 || padding_mask.size(1) != S)
    throw std::invalid_argument("sine_position_embedding: padding_mask must be [B, " + std::to_string(S) +
                                "], got " + shape_str(padding_mask.shape()));
  if (channels <= 0 || channels % 4)
    throw std::invalid_argument("sine_position_embedding: channels must be a positive multiple of 4, got " +
                                std::to_string(channels));
  const int64_t B = padding_mask.size(0), C = channels, per_axis = channels / 2;
  const std::vector<double> mask = padding_mask.to_vector<double>();
  std::vector<double> frequency(static_cast<std::size_t>(per_axis / 2));
  for (int64_t k = 0; k < per_axis / 2; ++k)
    frequency[static_cast<std::size_t>(k)] =
        std::pow(10000.0, 2.0 * static_cast<double>(k) / static_cast<double>(per_axis));
  std::vector<double> out(static_cast<std::size_t>(S * B * C), 0.0);
  int64_t start = 0;
  for (const ImageSize& level : level_sizes) {
    const int64_t H = level.height, W = level.width;
    SineTable y_table(H, frequency), x_table(W, frequency);
    std::vector<int64_t> y_count(static_cast<std::size_t>(H * W)), x_count(static_cast<std::size_t>(H * W));
    for (int64_t b = 0; b < B; ++b) {
      // Running counts of valid cells down each column (y) and along each row (x).
      for (int64_t y = 0; y < H; ++y)
        for (int64_t x = 0; x < W; ++x) {
          const std::size_t i = static_cast<std::size_t>(y * W + x);
          const int64_t valid = mask[static_cast<std::size_t>(b * S + start) + i] == 0.0 ? 1 : 0;
          y_count[i] = valid + (y > 0 ? y_count[i - static_cast<std::size_t>(W)] : 0);
          x_count[i] = valid + (x > 0 ? x_count[i - 1] : 0);
        }
      for (int64_t y = 0; y < H; ++y)
        for (int64_t x = 0; x < W; ++x) {
          const std::size_t i = static_cast<std::size_t>(y * W + x);
          const double* pe_y = y_table.get(y_count[i], y_count[static_cast<std::size_t>((H - 1) * W + x)]);
          const double* pe_x = x_table.get(x_count[i], x_count[static_cast<std::size_t>(y * W + W - 1)]);
          double* dst = out.data() + ((start + y * W + x) * B + b) * C;
          std::copy(pe_y, pe_y + per_axis, dst);
          std::copy(pe_x, pe_x + per_axis, dst + per_axis);
        }
    }
    start += H * W;
  }
  return from_vector(out, {S, B, C}, padding_mask.options());
}

FeatureSequence make_feature_sequence(const std::vector<Tensor>& levels, ImageSize padded,
                                      const std::vector<ImageSize>& images) {
  FeatureSequence seq;
  seq.features = flatten_levels(levels);
  if (static_cast<int64_t>(images.size()) != levels[0].size(0))
    throw std::invalid_argument("make_feature_sequence: " + std::to_string(images.size()) +
                                " image sizes for a batch of " + std::to_string(levels[0].size(0)));
  for (const Tensor& level : levels)
    seq.level_sizes.push_back({level.size(2), level.size(3)});
  const std::vector<std::vector<ImageSize>> extents = valid_extents(seq.level_sizes, padded, images);
  seq.padding_mask = padding_mask_of(seq.level_sizes, extents, seq.features.options());
  // The embedding is S x B x C numbers: on a GPU it is computed there from the extents alone
  // (engine/ops/position.h, the same values); on the CPU from the mask with the table above.
  seq.position = seq.features.device().is_cuda()
                     ? sine_position_embedding_rect(seq.level_sizes, extents, seq.features.size(2),
                                                    seq.features.options())
                     : sine_position_embedding(seq.padding_mask, seq.level_sizes, seq.features.size(2));
  return seq;
}

ConditionalDecoder::ConditionalDecoder(const ConditionalDecoderConfig& config, Generator& gen)
    : config_(config) {
  if (config.hidden_dim <= 0 || config.ffn_dim <= 0 || config.num_heads <= 0 ||
      config.hidden_dim % config.num_heads)
    throw std::invalid_argument("ConditionalDecoder: hidden_dim " + std::to_string(config.hidden_dim) +
                                " must be positive and divisible by num_heads " +
                                std::to_string(config.num_heads) + ", ffn_dim positive");
  const int64_t C = config.hidden_dim;
  pos_proj_ = register_module("pos_proj", std::make_shared<Linear>(C, C, gen));
  multihead_attn_ =
      register_module("multihead_attn", std::make_shared<MultiheadAttention>(C, config.num_heads, gen));
  norm1_ = register_module("norm1", std::make_shared<LayerNorm>(Shape{C}));
  linear1_ = register_module("linear1", std::make_shared<Linear>(C, config.ffn_dim, gen));
  linear2_ = register_module("linear2", std::make_shared<Linear>(config.ffn_dim, C, gen));
  norm2_ = register_module("norm2", std::make_shared<LayerNorm>(Shape{C}));
}

DecoderOutput ConditionalDecoder::forward(const Tensor& queries, const FeatureSequence& keys) {
  const int64_t C = config_.hidden_dim;
  const Tensor& X = keys.features;
  if (queries.dim() != 3 || queries.size(2) != C)
    throw std::invalid_argument("ConditionalDecoder: queries must be [L, B, " + std::to_string(C) +
                                "], got " + shape_str(queries.shape()));
  if (X.dim() != 3 || X.size(2) != C || X.size(1) != queries.size(1))
    throw std::invalid_argument("ConditionalDecoder: features must be [S, " +
                                std::to_string(queries.size(1)) + ", " + std::to_string(C) +
                                "] (hidden_dim is the teacher's FPN width), got " + shape_str(X.shape()));
  if (keys.position.shape() != X.shape())
    throw std::invalid_argument("ConditionalDecoder: position " + shape_str(keys.position.shape()) +
                                " does not match features " + shape_str(X.shape()));
  const Tensor key_in = add(X, pos_proj_->forward(keys.position));
  AttentionOutput attention = multihead_attn_->forward(queries, key_in, X, keys.padding_mask);
  const Tensor z = norm1_->forward(add(queries, attention.output));
  const Tensor ffn = linear2_->forward(relu(linear1_->forward(z)));
  return {norm2_->forward(add(z, ffn)), attention.logits, attention.value};
}

}  // namespace icd
