// The Distillator: everything ICD adds to a teacher-student pair, in one module (spec/icd.md sections 0-4).
//
// It owns the four trainable parts, which the ICD optimizer (AdamW, global-norm clip 0.01) trains:
//   encoder           InstanceEncoder: descriptors -> queries q0               (instance_encoder.h)
//   decoder           ConditionalDecoder on the teacher's FPN                  (conditional_decoder.h)
//   predictor         AuxiliaryPredictor: identification + localisation heads  (auxiliary_task.h)
//   student_adapter   Linear(C_s -> C): the student's value projection         (distill_loss.h)
// and the FakeInstancePrior the fake queries come from. Parameter names are those prefixes plus the parts'
// own names, e.g. "decoder.multihead_attn.in_proj_weight", "student_adapter.weight".
//
// One call per training iteration (steps 3 and 4 of spec section 0):
//   queries   = real GT + fakes from the prior, jittered points          (random, from the caller's
//   Generator) q0        = encoder(descriptors) g, a, v^T = decoder(q0, teacher p3..p7) (teacher features
//   detached) aux_conf, aux_reg = auxiliary losses of predictor(g)                 (train encoder, decoder,
//   predictor) distill   = lambda * L(adapter(student p3..p7), v^T, a)              (trains the adapter, and
//   the student
//                                                                         once iteration >=
//                                                                         warmup_iterations)
// The caller adds aux_conf + aux_reg + distill to the detection losses and runs one backward pass.
#pragma once
#include <memory>
#include <vector>

#include "distill/auxiliary_task.h"
#include "distill/conditional_decoder.h"
#include "distill/distill_loss.h"
#include "distill/fake_instance_prior.h"
#include "distill/image_instances.h"
#include "distill/instance_encoder.h"
#include "engine/random.h"
#include "layers/linear.h"
#include "layers/module.h"

namespace icd {

struct IcdConfig {
  int64_t num_classes = 80;
  int64_t hidden_dim = 256;        // C: the teacher's FPN channels, the decoder's width
  int64_t student_channels = 256;  // C_s: the student's FPN channels (the adapter's input)
  int64_t num_heads = 8;
  int64_t ffn_dim = 1024;
  QuerySamplingConfig sampling;
  DistillLossConfig distill;
  int64_t warmup_iterations = 1000;  // BYPASS_DISTILL: student features detached before this iteration
};

struct IcdInputs {
  std::vector<Tensor> teacher_features;  // p3..p7 of the frozen teacher, [B, C, H_l, W_l]
  std::vector<Tensor> student_features;  // p3..p7 of the student, [B, C_s, H_l, W_l], with their graph
  ImageSize padded_size;                 // of the batch tensor both networks ran on
};

struct IcdOutput {
  Tensor aux_identification;  // aux_conf
  Tensor aux_localization;    // aux_reg
  Tensor distill;             // already multiplied by lambda
  QueryBatch queries;         // masks, targets and jittered points of this iteration
  DecoderOutput teacher;      // g, logits (for attention pictures) and v^T
  FeatureSequence teacher_keys;
  Tensor total() const;  // aux_conf + aux_reg + distill
};

class InstanceConditionalDistiller : public Module {
 public:
  InstanceConditionalDistiller(const IcdConfig& config, FakeInstancePrior prior, Generator& gen);

  // Samples this iteration's queries from ground_truth (one entry per image), then runs the deterministic
  // call.
  IcdOutput forward(const IcdInputs& inputs, const std::vector<ImageInstances>& ground_truth,
                    int64_t iteration, Generator& gen);
  // With the queries given: fully deterministic (tests, replays).
  IcdOutput forward(const IcdInputs& inputs, const std::vector<ImageQueries>& queries, int64_t iteration);
  // The teacher half alone: the queries encoded and decoded over the teacher's levels (fills queries,
  // teacher and teacher_keys; no losses). forward() runs it first; pictures of the attention use it alone.
  IcdOutput decode(const std::vector<Tensor>& teacher_features, ImageSize padded_size,
                   const std::vector<ImageQueries>& queries);
  // decode() plus the predictor and the auxiliary losses: everything but the student (fills aux_* too;
  // distill stays undefined). Decoder pretraining on the frozen teacher trains with this alone.
  IcdOutput auxiliary(const std::vector<Tensor>& teacher_features, ImageSize padded_size,
                      const std::vector<ImageQueries>& queries);
  std::vector<ImageQueries> sample_queries(const std::vector<ImageInstances>& ground_truth,
                                           Generator& gen) const;

  const IcdConfig& config() const { return config_; }
  const FakeInstancePrior& prior() const { return prior_; }
  InstanceEncoder& encoder() { return *encoder_; }
  ConditionalDecoder& decoder() { return *decoder_; }
  AuxiliaryPredictor& predictor() { return *predictor_; }
  Linear& student_adapter() { return *student_adapter_; }

 private:
  IcdConfig config_;
  FakeInstancePrior prior_;
  std::shared_ptr<InstanceEncoder> encoder_;
  std::shared_ptr<ConditionalDecoder> decoder_;
  std::shared_ptr<AuxiliaryPredictor> predictor_;
  std::shared_ptr<Linear> student_adapter_;
};

}  // namespace icd
