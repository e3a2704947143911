// How instance-specific the teacher decoder's attention is: a number that says whether ICD's attention
// mask singles out each query's own object, or lights up "objectness" the same way for every query.
//
// For a real query i of image b, take its attention over the S positions of all levels averaged over the
// heads, p_i(s) = mean_h softmax_s(a[b, h, i, s]), and spread each position's probability evenly over
// the pixels of its cell (cell (r, c) of level l covers [c sx, (c+1) sx) x [r sy, (r+1) sy), with
// sx = W_pad / W_l, sy = H_pad / H_l). The mass of p_i inside a box B is
//   mass_i(B) = sum_s p_i(s) area(cell_s ∩ B) / area(cell_s),
// and the box's share of the image is share(B) = area(B) / (w_b h_b) (the unpadded image). Then
//   specificity_i       = mass_i(B_i) / share(B_i)                     (own box; over all levels)
//   specificity_i(l)    = [mass_i,l(B_i) / mass_i,l] / share(B_i)      (level l alone, its mass renormalised)
//   cross_i,j           = mass_i(B_j) / share(B_j)                     (another real box j != i of image b)
// Attention spread evenly over the image gives about 1 everywhere; attention that finds the query's own
// instance gives specificity >> 1 and cross << specificity; attention to every object alike (objectness)
// gives specificity ≈ cross > 1. The reported numbers are means over the real queries (over the ordered
// pairs i != j for cross; images with one box have none).
//
// Means of ratios are ruled by small boxes (one cell of attention in a 12-pixel box scores in the
// hundreds), so a rank says it more robustly: in an image with n_b >= 2 real boxes, query i puts its own box
// first when mass_i(B_i) / share(B_i) > mass_i(B_j) / share(B_j) for every other real box j.
//   own_first          share of such queries that put their own box first
//   own_first_chance   the mean of 1 / n_b over the same queries: what attention blind to the query scores
//                      (objectness ranks the boxes the same way for every query of an image, so each image
//                      then has one winner)
#pragma once
#include <cstdint>
#include <vector>

#include "distill/instance_encoder.h"
#include "engine/tensor.h"

namespace icd {

struct AttentionSpecificity {
  double overall = 0;             // mean specificity_i over real queries
  std::vector<double> per_level;  // mean specificity_i(l), one per level (p3 first)
  double cross = 0;               // mean cross_i,j over pairs; 0 when there are no pairs
  int64_t num_queries = 0;        // real queries measured
  int64_t num_pairs = 0;          // (i, j) pairs in `cross`
  double own_first = 0;           // share of ranked queries whose own box is first; 0 when none
  double own_first_chance = 0;    // mean 1 / n_b over the ranked queries
  int64_t num_ranked = 0;         // real queries of images with at least two real boxes
  std::vector<double> per_query;  // specificity_i, image by image, real queries in order
};

// logits: the decoder's pre-softmax attention [B, H, L, S] (-inf at padded positions), on any device;
// level_sizes: H_l, W_l in the order of S; padded: the batch tensor's H x W; queries: the batch's queries
// (the first num_real of each image are real; their boxes are what is measured). Throws
// std::invalid_argument on shapes that do not agree.
AttentionSpecificity attention_specificity(const Tensor& logits, const std::vector<ImageSize>& level_sizes,
                                           ImageSize padded, const std::vector<ImageQueries>& queries);

// The mean of several measurements, weighted by their query and pair counts.
AttentionSpecificity combine(const std::vector<AttentionSpecificity>& parts);

}  // namespace icd
