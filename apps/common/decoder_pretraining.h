// Decoder pretraining: the instance encoder, the teacher's conditional decoder and the auxiliary predictor
// trained on the frozen teacher's features alone, before any student leans on their attention (the
// reference code's PRETRAIN_TEACHER_ITERS, 0 in its released configs, where the decoder then learns jointly
// over 90k iterations). A short student schedule gives the decoder far less than that, so its attention
// would stay "objectness" (every query looking at every object) and the distillation loss would be
// foreground-weighted imitation; pretrained once per teacher, every student run and seed reuses it.
//
// One iteration: a training batch (the students' augmentation) -> teacher backbone + FPN under no-grad ->
// queries (real + fake, jittered; distill/instance_encoder.h) -> decoder -> auxiliary losses
// aux_conf + aux_reg -> backward -> global-norm clip -> AdamW with cosine decay. No student is involved;
// the student adapter is left as it was. With steps_per_batch = k, a batch's teacher features serve k
// consecutive iterations, each with fresh queries.
//
// Cached beside the teacher, in DIR = <teacher folder>/decoder-pretraining/: config.json (what was asked,
// including the teacher checkpoint's identity), metrics.jsonl (aux_conf, aux_reg, aux_conf_constant (the
// loss of guessing the batch's real share for every query: 0.451 at 1 real : 5 fake) and the attention
// specificity of the batch every few iterations), losses.png, attention-before.png, attention-after.png,
// specificity.json (validation specificity before and after), and decoder.safetensors, the distiller's
// weights, written last and atomically. A folder whose config.json equals the request and whose
// decoder.safetensors exists is reused; anything else (including an interrupted pretraining) is trained
// again from the start: it is a few minutes.
#pragma once
#include <nlohmann/json.hpp>
#include <string>

#include "apps/common/trainer.h"
#include "distill/objectives.h"

namespace icd::app {

struct DecoderPretrainingOptions {
  int64_t iterations = 0;  // 0: no pretraining
  double lr = 1e-3;        // AdamW, cosine from lr to 0 over the iterations
  // Linear warm-up from lr / 1000 over this many iterations (0: the reference's, none). Adam's first steps
  // are its largest relative to the gradient's scale; at lr 3e-3 and above they collapsed every query's
  // attention onto one cell before the decoder had learnt anything.
  int64_t warmup_iterations = 0;
  // Optimizer steps per teacher forward: each step draws its own fakes and jitter over the same batch's
  // features. The frozen teacher's forward is most of an iteration's time (measured on the default
  // preset: 0.40 s a step with a batch each, 0.11 s with 4 steps per batch), so the decoder gets 3-4 times
  // the steps in the same minutes (the queries still change every step).
  int64_t steps_per_batch = 1;
  double weight_decay = 1e-4;
  double clip_norm = 0.01;  // global L2 norm of the gradients, as in the joint stage (spec section 5)
  int batch_size = 4;
  int num_workers = 2;
  uint64_t seed = 1;  // data order, fake instances and jitter
  int64_t log_specificity_every = 10;
  TransformConfig transform = TransformConfig::train();
  int validation_images = 50;  // for the specificity before and after (validation_specificity)
  TransformConfig test_transform = TransformConfig::test();

  nlohmann::json to_json() const;
};

struct PretrainedDecoder {
  NamedTensors state;  // the distiller's state_dict after pretraining (load_pretrained_decoder)
  AttentionSpecificity before, after;  // on the validation images
  double final_aux_conf = 0;           // mean over the last tenth of the iterations
  double constant_aux_conf = 0;        // the constant guess's loss over the same iterations
  bool reused = false;                 // read from the cache, not trained now
  std::string dir;
};

// Pretrains `distiller` (made with the configuration the students will use) on `teacher`'s features of
// `train`, or reads the cached result; `teacher_identity` names the teacher checkpoint (its path, size and
// modification time) so that a new teacher is never paired with an old decoder. The distiller holds the
// pretrained weights afterwards.
PretrainedDecoder pretrain_decoder(InstanceConditionalDistiller& distiller, RetinaNet& teacher,
                                   const CocoDataset& train, const CocoDataset& val,
                                   const DecoderPretrainingOptions& options,
                                   const nlohmann::json& teacher_identity, const std::string& dir);

// The identity of a checkpoint file for caches: {"path", "bytes", "modified"}.
nlohmann::json file_identity(const std::string& path);

// A specificity measurement as JSON: {"overall", "cross", "per_level": [...], "queries", "pairs",
// "own_first", "own_first_chance", "ranked"} (the last three default to 0 when read from older files).
nlohmann::json specificity_to_json(const AttentionSpecificity& s);
AttentionSpecificity specificity_from_json(const nlohmann::json& j);

}  // namespace icd::app
