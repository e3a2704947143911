#include "layers/attention.h"

#include <cmath>
#include <stdexcept>

#include "engine/factory.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/matmul.h"
#include "engine/ops/reduce.h"
#include "layers/init.h"

namespace icd {

MultiheadAttention::MultiheadAttention(int64_t embed_dim, int64_t num_heads, Generator& gen)
    : embed_dim_(embed_dim), num_heads_(num_heads) {
  if (num_heads <= 0 || embed_dim % num_heads)
    throw std::invalid_argument("MultiheadAttention: embed_dim " + std::to_string(embed_dim) +
                                " is not divisible by num_heads " + std::to_string(num_heads));
  Tensor w = empty({3 * embed_dim, embed_dim});
  init::xavier_uniform_(w, gen);
  register_parameter("in_proj_weight", w);
  register_parameter("in_proj_bias", zeros({3 * embed_dim}));
  out_proj_ = register_module("out_proj", std::make_shared<Linear>(embed_dim, embed_dim, gen));
  init::constant_(out_proj_->bias(), 0.0);
}

Tensor MultiheadAttention::project(const Tensor& x, int64_t part) {
  if (x.dim() != 3 || x.size(2) != embed_dim_)
    throw std::invalid_argument("MultiheadAttention: expected [seq, batch, " + std::to_string(embed_dim_) +
                                "], got " + shape_str(x.shape()));
  Tensor w = parameter("in_proj_weight").narrow(0, part * embed_dim_, embed_dim_);
  Tensor b = parameter("in_proj_bias").narrow(0, part * embed_dim_, embed_dim_);
  return linear(x, w, b);
}

Tensor MultiheadAttention::project_value(const Tensor& value) {
  const int64_t head_dim = embed_dim_ / num_heads_;
  return project(value, 2).reshape({value.size(0), value.size(1), num_heads_, head_dim});
}

AttentionOutput MultiheadAttention::forward(const Tensor& query, const Tensor& key, const Tensor& value,
                                            const Tensor& key_padding_mask) {
  const int64_t L = query.size(0), B = query.size(1), S = key.size(0);
  const int64_t H = num_heads_, d = embed_dim_ / num_heads_;
  if (key.size(1) != B || value.size(0) != S || value.size(1) != B)
    throw std::invalid_argument("MultiheadAttention: query " + shape_str(query.shape()) + ", key " +
                                shape_str(key.shape()) + " and value " + shape_str(value.shape()) +
                                " do not agree");
  if (key_padding_mask.defined() && key_padding_mask.shape() != Shape{B, S})
    throw std::invalid_argument("MultiheadAttention: key_padding_mask must be [" + std::to_string(B) + ", " +
                                std::to_string(S) + "], got " + shape_str(key_padding_mask.shape()));
  // [seq, B, E] -> [B, H, seq, d]
  auto heads = [&](const Tensor& x, int64_t seq) { return x.reshape({seq, B, H, d}).permute({1, 2, 0, 3}); };
  Tensor q = heads(project(query, 0), L);
  Tensor k = heads(project(key, 1), S);
  Tensor v_seq = project(value, 2).reshape({S, B, H, d});
  Tensor v = v_seq.permute({1, 2, 0, 3});

  Tensor logits = mul(matmul(q, k.transpose(2, 3)), 1.0 / std::sqrt(static_cast<double>(d)));  // [B, H, L, S]
  if (key_padding_mask.defined())
    logits = masked_fill(logits, key_padding_mask.reshape({B, 1, 1, S}), -INFINITY);
  Tensor attention = softmax(logits, -1);
  Tensor mixed = matmul(attention, v);  // [B, H, L, d]
  Tensor merged = mixed.permute({2, 0, 1, 3}).reshape({L, B, embed_dim_});
  return {out_proj_->forward(merged), logits, v_seq};
}

}  // namespace icd
