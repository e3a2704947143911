// Multi-head attention, laid out as torch.nn.MultiheadAttention (sequence first, packed input
// projection) so weights and parity fixtures map one to one:
//   in_proj_weight [3E, E] = [W_q; W_k; W_v], in_proj_bias [3E], out_proj.weight [E, E], out_proj.bias [E].
//
//   q = query W_q^T + b_q   [L, B, E]     split into H heads of size d = E / H
//   k = key   W_k^T + b_k   [S, B, E]
//   v = value W_v^T + b_v   [S, B, E]
//   logits[b, h, i, s] = <q[i, b, h], k[s, b, h]> / sqrt(d),  -inf where key_padding_mask[b, s] != 0
//   A = softmax over s;  out = concat_h(A v) W_o^T + b_o   [L, B, E]
//
// Besides the output, the distillation method needs the pre-softmax logits and the raw value projection
// (before attention), so forward() returns them too. Init as torch: xavier_uniform for in_proj_weight,
// zero biases, out_proj.weight like a Linear layer.
#pragma once
#include <memory>

#include "engine/random.h"
#include "layers/linear.h"
#include "layers/module.h"

namespace icd {

struct AttentionOutput {
  Tensor output;  // [L, B, E]
  Tensor logits;  // [B, H, L, S], pre-softmax, -inf at padded keys
  Tensor value;   // [S, B, H, d], the value projection before attention is applied
};

class MultiheadAttention : public Module {
 public:
  MultiheadAttention(int64_t embed_dim, int64_t num_heads, Generator& gen);
  // query [L, B, E], key and value [S, B, E]; key_padding_mask [B, S] (nonzero = ignore that key) or
  // undefined.
  AttentionOutput forward(const Tensor& query, const Tensor& key, const Tensor& value,
                          const Tensor& key_padding_mask = Tensor());
  // Only the value projection of `value` ([S, B, E] -> [S, B, H, d]): what a student adapter needs.
  Tensor project_value(const Tensor& value);
  int64_t embed_dim() const { return embed_dim_; }
  int64_t num_heads() const { return num_heads_; }

 private:
  // x W_part^T + b_part for part 0 (query), 1 (key) or 2 (value) of the packed projection.
  Tensor project(const Tensor& x, int64_t part);

  int64_t embed_dim_, num_heads_;
  std::shared_ptr<Linear> out_proj_;
};

}  // namespace icd
