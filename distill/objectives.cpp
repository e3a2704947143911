#include "distill/objectives.h"

#include <map>
#include <stdexcept>

#include "engine/autograd.h"
#include "engine/ops/elementwise.h"
#include "engine/optim/clip_grad.h"
#include "engine/transfer.h"

namespace icd {
namespace {

NamedTensors prefixed(const NamedTensors& tensors, const std::string& prefix) {
  NamedTensors out;
  for (const auto& [name, t] : tensors)
    out.emplace_back(prefix + name, t);
  return out;
}

NamedTensors unprefixed(const NamedTensors& tensors, const std::string& prefix) {
  NamedTensors out;
  for (const auto& [name, t] : tensors)
    if (name.starts_with(prefix)) out.emplace_back(name.substr(prefix.size()), t);
  return out;
}

void freeze(RetinaNet& teacher) {
  teacher.set_requires_grad(false);
  teacher.eval();
}

void check_same_device(const RetinaNet& student, const RetinaNet& teacher, const char* objective) {
  if (student.device() != teacher.device())
    throw std::invalid_argument(std::string(objective) + ": the student is on " + student.device().str() +
                                " but the teacher is on " + teacher.device().str() +
                                " (move both with Module::to before training)");
}

// The distiller computes with the teacher's features: same device, same dtype (f64 in tests).
void match_teacher(Module& distiller, const RetinaNet& teacher) {
  const Tensor weight = teacher.parameters().front();
  distiller.to(weight.dtype());
  distiller.to(weight.device());
}

std::vector<Tensor> teacher_features(RetinaNet& teacher, const Tensor& images) {
  NoGradGuard no_grad;
  return teacher.features(images);
}

// Each iteration draws its fake instances and jitter from its own stream, so a resumed run draws the
// same ones as an uninterrupted run.
Generator iteration_generator(uint64_t seed, int64_t iteration) {
  return Generator(seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(iteration));
}

// A distiller initialised from its own generator of `seed`.
template <typename Distiller, typename... Config>
std::shared_ptr<Distiller> seeded(uint64_t seed, Config&&... config) {
  Generator gen(seed);
  return std::make_shared<Distiller>(std::forward<Config>(config)..., gen);
}

}  // namespace

std::vector<ImageInstances> image_instances(const TrainingBatch& batch) {
  std::vector<ImageInstances> out;
  for (std::size_t i = 0; i < batch.targets.size(); ++i) {
    ImageInstances image{.size = batch.sizes.at(i)};
    std::vector<double> boxes = batch.targets[i].boxes.to_vector<double>();
    for (std::size_t k = 0; k + 3 < boxes.size(); k += 4)
      image.boxes.push_back({boxes[k], boxes[k + 1], boxes[k + 2], boxes[k + 3]});
    image.labels = batch.targets[i].labels.to_vector<int64_t>();
    out.push_back(std::move(image));
  }
  return out;
}

DistillationObjective::DistillationObjective(RetinaNet& teacher, std::shared_ptr<Module> distiller,
                                             const DistillerOptimizerConfig& optimizer)
    : teacher_(teacher), module_(std::move(distiller)), optimizer_config_(optimizer) {
  freeze(teacher_);
  match_teacher(*module_, teacher_);  // before its optimizer takes the parameters
  optimizer_ = std::make_unique<AdamW>(
      module_->parameters(), AdamWOptions{.lr = optimizer.lr, .weight_decay = optimizer.weight_decay});
  // Warmup factor 1 over 10 iterations: the released config's "no real warmup".
  schedule_ =
      std::make_unique<WarmupCosineLR>(CosineOptions{.base_lr = optimizer.lr,
                                                     .max_iter = optimizer.iterations,
                                                     .final_lr = 0.0,
                                                     .warmup = LinearWarmup{.factor = 1.0, .iters = 10}});
}

void DistillationObjective::after_backward(int64_t iteration) {
  if (optimizer_config_.clip_norm > 0) clip_grad_norm(optimizer_->parameters(), optimizer_config_.clip_norm);
  optimizer_->set_lr(schedule_->lr(std::min(iteration, schedule_->max_iter())));
  optimizer_->step();
  optimizer_->zero_grad();
}

NamedTensors DistillationObjective::state() const {
  NamedTensors out = prefixed(module_->state_dict(), "distiller.");
  for (auto& e : prefixed(optimizer_->state(), "adamw."))
    out.push_back(e);
  return out;
}

void DistillationObjective::load_state(const NamedTensors& state) {
  module_->load_state_dict(unprefixed(state, "distiller."));
  optimizer_->load_state(unprefixed(state, "adamw."));
}

IcdObjective::IcdObjective(RetinaNet& teacher, const IcdConfig& config, FakeInstancePrior prior,
                           const DistillerOptimizerConfig& optimizer, uint64_t seed)
    : IcdObjective(teacher, seeded<InstanceConditionalDistiller>(seed, config, std::move(prior)), optimizer,
                   seed) {}

IcdObjective::IcdObjective(RetinaNet& teacher, std::shared_ptr<InstanceConditionalDistiller> distiller,
                           const DistillerOptimizerConfig& optimizer, uint64_t seed)
    : DistillationObjective(teacher, distiller, optimizer), distiller_(std::move(distiller)), seed_(seed) {}

NamedLosses IcdObjective::losses(RetinaNet& student, const TrainingBatch& batch, int64_t iteration) {
  check_same_device(student, teacher_, "IcdObjective");
  RetinaNetOutputs outputs = student.forward(batch.images);
  RetinaNetLosses detection = student.losses(outputs, batch.targets);
  IcdInputs inputs{.teacher_features = teacher_features(teacher_, batch.images),
                   .student_features = outputs.features,
                   .padded_size = {batch.images.size(2), batch.images.size(3)}};
  Generator gen = iteration_generator(seed_, iteration);
  last_queries_ = distiller_->sample_queries(image_instances(batch), gen);
  last_padded_size_ = inputs.padded_size;
  last_ = distiller_->forward(inputs, last_queries_, iteration);
  return {{"loss_cls", detection.classification},
          {"loss_box", detection.box_regression},
          {"aux_conf", last_.aux_identification},
          {"aux_reg", last_.aux_localization},
          {"distill", last_.distill}};
}

std::vector<std::pair<std::string, double>> IcdObjective::diagnostics() {
  if (!last_.teacher.logits.defined()) return {};
  return specificity_numbers(attention_specificity(last_.teacher.logits, last_.teacher_keys.level_sizes,
                                                   last_padded_size_, last_queries_));
}

FitNetObjective::FitNetObjective(RetinaNet& teacher, const FitNetConfig& config,
                                 const DistillerOptimizerConfig& optimizer, uint64_t seed)
    : FitNetObjective(teacher, seeded<FitNetDistiller>(seed, config), optimizer) {}

FitNetObjective::FitNetObjective(RetinaNet& teacher, std::shared_ptr<FitNetDistiller> distiller,
                                 const DistillerOptimizerConfig& optimizer)
    : DistillationObjective(teacher, distiller, optimizer), distiller_(std::move(distiller)) {}

NamedLosses FitNetObjective::losses(RetinaNet& student, const TrainingBatch& batch, int64_t iteration) {
  check_same_device(student, teacher_, "FitNetObjective");
  RetinaNetOutputs outputs = student.forward(batch.images);
  RetinaNetLosses detection = student.losses(outputs, batch.targets);
  Tensor imitation = distiller_->forward(outputs.features, teacher_features(teacher_, batch.images));
  return {
      {"loss_cls", detection.classification}, {"loss_box", detection.box_regression}, {"fitnet", imitation}};
}

FgfiObjective::FgfiObjective(RetinaNet& teacher, const FgfiConfig& config,
                             const DistillerOptimizerConfig& optimizer, uint64_t seed)
    : FgfiObjective(teacher, seeded<FgfiDistiller>(seed, config), optimizer) {}

FgfiObjective::FgfiObjective(RetinaNet& teacher, std::shared_ptr<FgfiDistiller> distiller,
                             const DistillerOptimizerConfig& optimizer)
    : DistillationObjective(teacher, distiller, optimizer), distiller_(std::move(distiller)) {}

NamedLosses FgfiObjective::losses(RetinaNet& student, const TrainingBatch& batch, int64_t iteration) {
  check_same_device(student, teacher_, "FgfiObjective");
  RetinaNetOutputs outputs = student.forward(batch.images);
  RetinaNetLosses detection = student.losses(outputs, batch.targets);
  std::vector<Tensor> boxes;
  for (const TargetBoxes& t : batch.targets)
    boxes.push_back(t.boxes.to(outputs.anchors.boxes.dtype()));
  Tensor imitation =
      distiller_->forward(outputs.features, teacher_features(teacher_, batch.images), outputs.anchors, boxes);
  return {
      {"loss_cls", detection.classification}, {"loss_box", detection.box_regression}, {"fgfi", imitation}};
}

std::vector<std::pair<std::string, double>> specificity_numbers(const AttentionSpecificity& s) {
  std::vector<std::pair<std::string, double>> out{{"spec", s.overall}};
  if (s.num_pairs > 0) out.emplace_back("spec_cross", s.cross);
  if (s.num_ranked > 0) out.emplace_back("spec_own_first", s.own_first);
  for (std::size_t l = 0; l < s.per_level.size(); ++l)
    out.emplace_back("spec_p" + std::to_string(l + 3), s.per_level[l]);
  return out;
}

void load_pretrained_decoder(InstanceConditionalDistiller& distiller, const NamedTensors& decoder_state) {
  const std::pair<const char*, Module*> parts[] = {{"encoder.", &distiller.encoder()},
                                                   {"decoder.", &distiller.decoder()},
                                                   {"predictor.", &distiller.predictor()}};
  for (const auto& [prefix, part] : parts) {
    try {
      part->load_state_dict(unprefixed(decoder_state, prefix));
    } catch (const std::exception& e) {
      throw std::runtime_error(std::string("the pretrained decoder's ") + prefix +
                               "* does not fit: " + e.what());
    }
  }
}

std::vector<std::string> inherit_from_teacher(RetinaNet& student, const RetinaNet& teacher) {
  std::map<std::string, Tensor> source;
  for (const auto& [name, t] : teacher.state_dict())
    if (name.starts_with("backbone.fpn.") || name.starts_with("head.")) source.emplace(name, t);
  std::vector<std::string> copied;
  NoGradGuard no_grad;
  for (auto& [name, target] : student.state_dict()) {
    auto it = source.find(name);
    if (it == source.end() || it->second.shape() != target.shape()) continue;
    Tensor destination = target;
    copy_(destination, to_device(it->second, target.device()));
    copied.push_back(name);
  }
  return copied;
}

}  // namespace icd
