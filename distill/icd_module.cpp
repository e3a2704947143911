#include "distill/icd_module.h"

#include <stdexcept>
#include <string>

#include "engine/ops/elementwise.h"

namespace icd {

Tensor IcdOutput::total() const {
  return add(add(aux_identification, aux_localization), distill);
}

InstanceConditionalDistiller::InstanceConditionalDistiller(const IcdConfig& config, FakeInstancePrior prior,
                                                           Generator& gen)
    : config_(config), prior_(std::move(prior)) {
  if (prior_.num_classes() != config.num_classes)
    throw std::invalid_argument("InstanceConditionalDistiller: the fake-instance prior has " +
                                std::to_string(prior_.num_classes()) + " classes, the config " +
                                std::to_string(config.num_classes));
  encoder_ = register_module("encoder",
                             std::make_shared<InstanceEncoder>(config.num_classes, config.hidden_dim, gen));
  decoder_ = register_module(
      "decoder", std::make_shared<ConditionalDecoder>(
                     ConditionalDecoderConfig{config.hidden_dim, config.num_heads, config.ffn_dim}, gen));
  predictor_ = register_module("predictor", std::make_shared<AuxiliaryPredictor>(config.hidden_dim, gen));
  student_adapter_ = register_module(
      "student_adapter", std::make_shared<Linear>(config.student_channels, config.hidden_dim, gen));
}

std::vector<ImageQueries> InstanceConditionalDistiller::sample_queries(
    const std::vector<ImageInstances>& ground_truth, Generator& gen) const {
  std::vector<ImageQueries> queries;
  for (const ImageInstances& image : ground_truth)
    queries.push_back(sample_image_queries(image, prior_, config_.sampling, gen));
  return queries;
}

IcdOutput InstanceConditionalDistiller::forward(const IcdInputs& inputs,
                                                const std::vector<ImageInstances>& ground_truth,
                                                int64_t iteration, Generator& gen) {
  return forward(inputs, sample_queries(ground_truth, gen), iteration);
}

IcdOutput InstanceConditionalDistiller::decode(const std::vector<Tensor>& teacher_features,
                                               ImageSize padded_size,
                                               const std::vector<ImageQueries>& queries) {
  IcdOutput out;
  const Tensor weight = encoder_->parameters().front();
  out.queries = build_query_batch(queries, config_.num_classes, weight.dtype(), weight.device());
  const Tensor q0 = encoder_->forward(out.queries.descriptors).permute({1, 0, 2});  // [L, B, C]

  std::vector<Tensor> teacher;
  std::vector<ImageSize> sizes;
  for (const Tensor& t : teacher_features)
    teacher.push_back(t.detach());  // frozen teacher: never a gradient
  for (const ImageQueries& q : queries)
    sizes.push_back(q.size);
  out.teacher_keys = make_feature_sequence(teacher, padded_size, sizes);
  out.teacher = decoder_->forward(q0, out.teacher_keys);
  return out;
}

IcdOutput InstanceConditionalDistiller::auxiliary(const std::vector<Tensor>& teacher_features,
                                                  ImageSize padded_size,
                                                  const std::vector<ImageQueries>& queries) {
  IcdOutput out = decode(teacher_features, padded_size, queries);
  const Tensor predictions = predictor_->predict(out.teacher.decoded);
  AuxiliaryLosses aux =
      auxiliary_losses(predictions, out.queries.padding_mask, out.queries.real_mask, out.queries.targets);
  out.aux_identification = aux.identification;
  out.aux_localization = aux.localization;
  return out;
}

IcdOutput InstanceConditionalDistiller::forward(const IcdInputs& inputs,
                                                const std::vector<ImageQueries>& queries, int64_t iteration) {
  const std::size_t levels = inputs.teacher_features.size();
  if (levels == 0 || inputs.student_features.size() != levels)
    throw std::invalid_argument(
        "InstanceConditionalDistiller: need the same number of teacher and student levels, got " +
        std::to_string(levels) + " and " + std::to_string(inputs.student_features.size()));
  const int64_t B = inputs.teacher_features[0].size(0);
  if (static_cast<int64_t>(queries.size()) != B)
    throw std::invalid_argument("InstanceConditionalDistiller: " + std::to_string(queries.size()) +
                                " images of queries for a batch of " + std::to_string(B));
  for (std::size_t l = 0; l < levels; ++l) {
    const Tensor& t = inputs.teacher_features[l];
    const Tensor& s = inputs.student_features[l];
    if (t.dim() != 4 || s.dim() != 4 || s.size(0) != t.size(0) || s.size(2) != t.size(2) ||
        s.size(3) != t.size(3))
      throw std::invalid_argument(
          "InstanceConditionalDistiller: level " + std::to_string(l) + ": student " + shape_str(s.shape()) +
          " and teacher " + shape_str(t.shape()) +
          " must be [B, C, H, W] with the same B, H, W (run both on the same padded batch)");
  }

  IcdOutput out = auxiliary(inputs.teacher_features, inputs.padded_size, queries);
  const bool warmup = iteration < config_.warmup_iterations;
  out.distill =
      distillation_loss(flatten_levels(inputs.student_features), *student_adapter_, out.teacher.value,
                        out.teacher.logits, out.queries.real_mask, config_.distill, warmup);
  return out;
}

}  // namespace icd
