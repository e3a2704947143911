#include "distill/attention_specificity.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

#include "engine/autograd.h"

namespace icd {
namespace {

// One level's grid over the padded batch: cell (r, c) covers [c sx, (c+1) sx) x [r sy, (r+1) sy).
struct LevelGrid {
  int64_t height, width, offset;  // offset: the level's first position in S
  double stride_y, stride_x;
};

// sum_s p(s) area(cell_s ∩ box) / area(cell_s) over the cells of one level.
double mass_in_box(const double* p, const LevelGrid& level, const InstanceBox& box) {
  const auto first_col = std::max<int64_t>(0, static_cast<int64_t>(std::floor(box[0] / level.stride_x)));
  const auto last_col = std::min(level.width - 1, static_cast<int64_t>(std::floor(box[2] / level.stride_x)));
  const auto first_row = std::max<int64_t>(0, static_cast<int64_t>(std::floor(box[1] / level.stride_y)));
  const auto last_row = std::min(level.height - 1, static_cast<int64_t>(std::floor(box[3] / level.stride_y)));
  double mass = 0;
  for (int64_t r = first_row; r <= last_row; ++r) {
    const double y0 = static_cast<double>(r) * level.stride_y, y1 = y0 + level.stride_y;
    const double overlap_y = std::min(y1, box[3]) - std::max(y0, box[1]);
    if (overlap_y <= 0) continue;
    for (int64_t c = first_col; c <= last_col; ++c) {
      const double x0 = static_cast<double>(c) * level.stride_x, x1 = x0 + level.stride_x;
      const double overlap_x = std::min(x1, box[2]) - std::max(x0, box[0]);
      if (overlap_x <= 0) continue;
      mass +=
          p[level.offset + r * level.width + c] * overlap_x * overlap_y / (level.stride_x * level.stride_y);
    }
  }
  return mass;
}

}  // namespace

AttentionSpecificity attention_specificity(const Tensor& logits, const std::vector<ImageSize>& level_sizes,
                                           ImageSize padded, const std::vector<ImageQueries>& queries) {
  if (logits.dim() != 4 || logits.size(0) != static_cast<int64_t>(queries.size()))
    throw std::invalid_argument("attention_specificity: logits " + shape_str(logits.shape()) +
                                " must be [B, H, L, S] with B = " + std::to_string(queries.size()) +
                                " images of queries");
  std::vector<LevelGrid> levels;
  int64_t num_positions = 0;
  for (const ImageSize& l : level_sizes) {
    if (l.height <= 0 || l.width <= 0)
      throw std::invalid_argument("attention_specificity: a level has a non-positive size");
    levels.push_back({l.height, l.width, num_positions, static_cast<double>(padded.height) / l.height,
                      static_cast<double>(padded.width) / l.width});
    num_positions += l.height * l.width;
  }
  if (num_positions != logits.size(3))
    throw std::invalid_argument("attention_specificity: the levels hold " + std::to_string(num_positions) +
                                " positions, the logits " + std::to_string(logits.size(3)));
  int64_t max_real = 0;
  for (const ImageQueries& q : queries) {
    if (q.num_real < 0 || q.num_real > static_cast<int64_t>(q.queries.size()) || q.num_real > logits.size(2))
      throw std::invalid_argument("attention_specificity: an image has " + std::to_string(q.num_real) +
                                  " real queries, the logits " + std::to_string(logits.size(2)));
    max_real = std::max(max_real, q.num_real);
  }
  AttentionSpecificity result;
  result.per_level.assign(levels.size(), 0.0);
  if (max_real == 0) return result;

  // Only the real queries' rows come to the host.
  NoGradGuard no_grad;
  const std::vector<double> a = logits.narrow(2, 0, max_real).contiguous().to_vector<double>();
  const int64_t H = logits.size(1), S = num_positions;
  std::vector<double> p(static_cast<std::size_t>(S)), head(static_cast<std::size_t>(S));
  for (std::size_t b = 0; b < queries.size(); ++b) {
    const ImageQueries& image = queries[b];
    const double image_area = static_cast<double>(image.size.height * image.size.width);
    for (int64_t i = 0; i < image.num_real; ++i) {
      std::fill(p.begin(), p.end(), 0.0);
      for (int64_t h = 0; h < H; ++h) {
        const double* row = &a[static_cast<std::size_t>(((b * H + h) * max_real + i) * S)];
        const double peak = *std::max_element(row, row + S);
        double sum = 0;
        for (int64_t s = 0; s < S; ++s)
          sum += head[s] = std::exp(row[s] - peak);  // exp(-inf) = 0 at padding
        for (int64_t s = 0; s < S; ++s)
          p[s] += head[s] / (sum * static_cast<double>(H));
      }
      const auto box_of = [&](int64_t k) { return image.queries[static_cast<std::size_t>(k)].box; };
      const auto share_of = [&](const InstanceBox& box) {
        return std::max(1e-12, (box[2] - box[0]) * (box[3] - box[1]) / image_area);
      };
      const InstanceBox own = box_of(i);
      double own_mass = 0;
      for (std::size_t l = 0; l < levels.size(); ++l) {
        const double in_box = mass_in_box(p.data(), levels[l], own);
        double level_mass = 0;
        for (int64_t s = 0; s < levels[l].height * levels[l].width; ++s)
          level_mass += p[levels[l].offset + s];
        own_mass += in_box;
        if (level_mass > 0) result.per_level[l] += in_box / level_mass / share_of(own);
      }
      const double specificity = own_mass / share_of(own);
      result.overall += specificity;
      result.per_query.push_back(specificity);
      ++result.num_queries;
      bool own_is_first = true;
      for (int64_t j = 0; j < image.num_real; ++j) {
        if (j == i) continue;
        double mass = 0;
        for (const LevelGrid& level : levels)
          mass += mass_in_box(p.data(), level, box_of(j));
        const double other = mass / share_of(box_of(j));
        result.cross += other;
        own_is_first = own_is_first && specificity > other;
        ++result.num_pairs;
      }
      if (image.num_real >= 2) {
        result.own_first += own_is_first ? 1.0 : 0.0;
        result.own_first_chance += 1.0 / static_cast<double>(image.num_real);
        ++result.num_ranked;
      }
    }
  }
  result.overall /= static_cast<double>(result.num_queries);
  for (double& v : result.per_level)
    v /= static_cast<double>(result.num_queries);
  if (result.num_pairs > 0) result.cross /= static_cast<double>(result.num_pairs);
  if (result.num_ranked > 0) {
    result.own_first /= static_cast<double>(result.num_ranked);
    result.own_first_chance /= static_cast<double>(result.num_ranked);
  }
  return result;
}

AttentionSpecificity combine(const std::vector<AttentionSpecificity>& parts) {
  AttentionSpecificity total;
  for (const AttentionSpecificity& part : parts) {
    if (total.per_level.empty()) total.per_level.assign(part.per_level.size(), 0.0);
    if (part.per_level.size() != total.per_level.size())
      throw std::invalid_argument("combine: measurements over different numbers of levels");
    total.overall += part.overall * static_cast<double>(part.num_queries);
    for (std::size_t l = 0; l < part.per_level.size(); ++l)
      total.per_level[l] += part.per_level[l] * static_cast<double>(part.num_queries);
    total.cross += part.cross * static_cast<double>(part.num_pairs);
    total.own_first += part.own_first * static_cast<double>(part.num_ranked);
    total.own_first_chance += part.own_first_chance * static_cast<double>(part.num_ranked);
    total.num_queries += part.num_queries;
    total.num_pairs += part.num_pairs;
    total.num_ranked += part.num_ranked;
    total.per_query.insert(total.per_query.end(), part.per_query.begin(), part.per_query.end());
  }
  if (total.num_queries > 0) {
    total.overall /= static_cast<double>(total.num_queries);
    for (double& v : total.per_level)
      v /= static_cast<double>(total.num_queries);
  }
  if (total.num_pairs > 0) total.cross /= static_cast<double>(total.num_pairs);
  if (total.num_ranked > 0) {
    total.own_first /= static_cast<double>(total.num_ranked);
    total.own_first_chance /= static_cast<double>(total.num_ranked);
  }
  return total;
}

}  // namespace icd
