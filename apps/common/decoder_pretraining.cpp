#include "apps/common/decoder_pretraining.h"

#include <cmath>
#include <filesystem>
#include <iostream>

#include "apps/common/attention_pictures.h"
#include "apps/common/plot.h"
#include "apps/common/progress.h"
#include "engine/autograd.h"
#include "engine/checkpoint.h"
#include "engine/ops/elementwise.h"
#include "engine/optim/adamw.h"
#include "engine/optim/clip_grad.h"
#include "engine/optim/lr_schedule.h"
#include "engine/transfer.h"

namespace icd::app {
namespace {

constexpr const char* kWeightsFile = "decoder.safetensors";
constexpr uint64_t kPretrainingStream =
    0x7072657472616e;  // "pretran": sets its streams apart from the students'

// The loss of predicting the batch's real share r for every valid query: the entropy
// -(r ln r + (1 - r) ln(1 - r)), what aux_conf must beat to show the decoder tells real from fake.
double constant_guess_loss(const QueryBatch& queries) {
  double real = 0, valid = 0;
  for (std::size_t b = 0; b < queries.num_real.size(); ++b) {
    real += static_cast<double>(queries.num_real[b]);
    valid += static_cast<double>(queries.num_queries[b]);
  }
  const double r = real / valid;
  if (r <= 0 || r >= 1) return 0;
  return -(r * std::log(r) + (1 - r) * std::log(1 - r));
}

std::vector<Tensor> decoder_parameters(InstanceConditionalDistiller& distiller) {
  std::vector<Tensor> out;
  for (Module* part :
       std::initializer_list<Module*>{&distiller.encoder(), &distiller.decoder(), &distiller.predictor()})
    for (const Tensor& p : part->parameters())
      out.push_back(p);
  return out;
}

std::optional<nlohmann::json> read_json(const std::string& path) {
  if (!std::filesystem::exists(path)) return std::nullopt;
  try {
    return read_json_file(path);
  } catch (const std::runtime_error& e) {
    std::cout << e.what() << ": it is made again\n";
    return std::nullopt;
  }
}

}  // namespace

nlohmann::json DecoderPretrainingOptions::to_json() const {
  nlohmann::json j{{"iterations", iterations},     {"lr", lr},
                   {"weight_decay", weight_decay}, {"clip_norm", clip_norm},
                   {"batch_size", batch_size},     {"seed", seed}};
  // Written only when they change what an iteration does, so that requests and caches from before these
  // options existed (no warm-up, one step per batch) still compare equal.
  if (warmup_iterations != 0) j["warmup_iterations"] = warmup_iterations;
  if (steps_per_batch != 1) j["steps_per_batch"] = steps_per_batch;
  return j;
}

nlohmann::json file_identity(const std::string& path) {
  const auto modified = std::filesystem::last_write_time(path).time_since_epoch().count();
  return {{"path", std::filesystem::weakly_canonical(path).string()},
          {"bytes", static_cast<int64_t>(std::filesystem::file_size(path))},
          {"modified", static_cast<int64_t>(modified)}};
}

nlohmann::json specificity_to_json(const AttentionSpecificity& s) {
  return {{"overall", s.overall},
          {"cross", s.cross},
          {"per_level", s.per_level},
          {"queries", s.num_queries},
          {"pairs", s.num_pairs},
          {"own_first", s.own_first},
          {"own_first_chance", s.own_first_chance},
          {"ranked", s.num_ranked}};
}

AttentionSpecificity specificity_from_json(const nlohmann::json& j) {
  AttentionSpecificity s;
  s.overall = j.at("overall").get<double>();
  s.cross = j.at("cross").get<double>();
  s.per_level = j.at("per_level").get<std::vector<double>>();
  s.num_queries = j.at("queries").get<int64_t>();
  s.num_pairs = j.at("pairs").get<int64_t>();
  // Files written before the rank existed have none: 0 ranked queries.
  s.own_first = j.value("own_first", 0.0);
  s.own_first_chance = j.value("own_first_chance", 0.0);
  s.num_ranked = j.value("ranked", int64_t{0});
  return s;
}

PretrainedDecoder pretrain_decoder(InstanceConditionalDistiller& distiller, RetinaNet& teacher,
                                   const CocoDataset& train, const CocoDataset& val,
                                   const DecoderPretrainingOptions& options,
                                   const nlohmann::json& teacher_identity, const std::string& dir) {
  if (options.iterations <= 0) throw std::invalid_argument("pretrain_decoder: iterations must be positive");
  if (options.steps_per_batch < 1 || options.warmup_iterations < 0 ||
      options.warmup_iterations >= options.iterations)
    throw std::invalid_argument(
        "pretrain_decoder: steps_per_batch must be at least 1 and warmup_iterations "
        "in [0, iterations), got " +
        std::to_string(options.steps_per_batch) + " and " + std::to_string(options.warmup_iterations) +
        " of " + std::to_string(options.iterations));
  PretrainedDecoder result{.dir = dir};
  RunFolder run(dir);
  const nlohmann::json config{{"app", "decoder_pretraining"},
                              {"format", 1},
                              {"teacher", teacher_identity},
                              {"train", {{"source", train.source()}, {"images", train.num_images()}}},
                              {"fake_instance_prior", distiller.prior().to_json()},
                              {"options", options.to_json()},
                              {"distiller",
                               {{"hidden_dim", distiller.config().hidden_dim},
                                {"num_heads", distiller.config().num_heads},
                                {"ffn_dim", distiller.config().ffn_dim},
                                {"num_classes", distiller.config().num_classes}}}};
  const std::string weights_path = run.file(kWeightsFile);
  const std::optional<nlohmann::json> cached_config = read_json(run.file("config.json"));
  const std::optional<nlohmann::json> cached_summary = read_json(run.file("specificity.json"));
  if (cached_config && *cached_config == config && cached_summary && std::filesystem::exists(weights_path)) {
    result.state = load_checkpoint(weights_path).tensors;
    load_pretrained_decoder(distiller, result.state);
    result.before = specificity_from_json(cached_summary->at("before"));
    result.after = specificity_from_json(cached_summary->at("after"));
    result.final_aux_conf = cached_summary->at("final_aux_conf").get<double>();
    result.constant_aux_conf = cached_summary->at("constant_aux_conf").get<double>();
    result.reused = true;
    std::cout << "decoder pretraining: reusing " << weights_path << "\n";
    return result;
  }
  // Anything else in the folder belongs to another (or an unfinished) pretraining.
  std::filesystem::remove(weights_path);
  std::filesystem::remove(run.file("specificity.json"));
  run.write_config(config);
  run.truncate_metrics_after(0);

  teacher.set_requires_grad(false);
  teacher.eval();
  distiller.train();
  result.before =
      validation_specificity(distiller, teacher, val, options.test_transform, options.validation_images);
  draw_attention_pictures(distiller, teacher, val, options.test_transform, run.file("attention-before.png"));

  // Its own streams of batches, fakes and jitter: a student of the same seed must not replay them.
  const uint64_t stream = (options.seed ^ kPretrainingStream) * 0x9E3779B97F4A7C15ull;
  LoaderConfig loader_config{.batch_size = options.batch_size,
                             .num_workers = options.num_workers,
                             .shuffle = true,
                             .drop_last = true,
                             .only_images_with_targets = true,
                             .pin_memory = teacher.device().is_cuda(),
                             .seed = stream,
                             .transform = options.transform};
  DetectionLoader loader(train, loader_config);
  if (loader.batches_per_epoch() == 0)
    throw std::invalid_argument("decoder pretraining: " + train.source() +
                                " has fewer images with boxes than one batch");
  AdamW optimizer(decoder_parameters(distiller),
                  AdamWOptions{.lr = options.lr, .weight_decay = options.weight_decay});
  WarmupCosineLR schedule(
      CosineOptions{.base_lr = options.lr,
                    .max_iter = options.iterations,
                    .final_lr = 0.0,
                    .warmup = options.warmup_iterations > 0
                                  ? LinearWarmup{.factor = 0.001, .iters = options.warmup_iterations}
                                  : LinearWarmup{.factor = 1.0, .iters = 10}});
  // The rate counts the images the teacher sees: a batch per steps_per_batch steps.
  ProgressLine progress("pretrain decoder " + dir, options.iterations,
                        std::max<int64_t>(1, options.batch_size / options.steps_per_batch));
  int64_t epoch = 0;
  loader.start_epoch(epoch);
  const int64_t tail_start = options.iterations - std::max<int64_t>(1, options.iterations / 10);
  double tail_conf = 0, tail_constant = 0;
  TrainingBatch inputs;
  ImageSize padded;
  std::vector<Tensor> features;
  int64_t teacher_batches = 0;
  for (int64_t iteration = 0; iteration < options.iterations; ++iteration) {
    if (iteration % options.steps_per_batch == 0) {
      ++teacher_batches;
      std::optional<DetectionBatch> batch = loader.next();
      if (!batch) {
        loader.start_epoch(++epoch);
        batch = loader.next();
      }
      inputs = training_batch(*batch);
      inputs.images = to_device(inputs.images, teacher.device());
      padded = ImageSize{inputs.images.size(2), inputs.images.size(3)};
      NoGradGuard no_grad;
      features = teacher.features(inputs.images);
    }
    Generator gen(stream + static_cast<uint64_t>(iteration));
    const std::vector<ImageQueries> queries = distiller.sample_queries(image_instances(inputs), gen);
    const IcdOutput out = distiller.auxiliary(features, padded, queries);
    const Tensor total = add(out.aux_identification, out.aux_localization);
    const double conf = out.aux_identification.item(), reg = out.aux_localization.item();
    if (!std::isfinite(conf) || !std::isfinite(reg))
      throw std::runtime_error("decoder pretraining: the auxiliary loss is not finite at iteration " +
                               std::to_string(iteration) + " (aux_conf=" + std::to_string(conf) +
                               " aux_reg=" + std::to_string(reg) + ")");
    total.backward();
    if (options.clip_norm > 0) clip_grad_norm(optimizer.parameters(), options.clip_norm);
    const double lr = schedule.lr(iteration);
    optimizer.set_lr(lr);
    optimizer.step();
    optimizer.zero_grad();

    const double constant = constant_guess_loss(out.queries);
    if (iteration >= tail_start) tail_conf += conf, tail_constant += constant;
    nlohmann::json record{{"step", iteration + 1},
                          {"lr", lr},
                          {"loss", conf + reg},
                          {"aux_conf", conf},
                          {"aux_reg", reg},
                          {"aux_conf_constant", constant},
                          {"epoch", epoch},
                          {"teacher_batches", teacher_batches},
                          {"seconds", progress.seconds_elapsed()}};
    const bool last = iteration + 1 == options.iterations;
    if (options.log_specificity_every > 0 && ((iteration + 1) % options.log_specificity_every == 0 || last))
      for (const auto& [name, v] : specificity_numbers(
               attention_specificity(out.teacher.logits, out.teacher_keys.level_sizes, padded, queries)))
        record[name] = v;
    run.log_metrics(record);
    progress.update(iteration + 1, {{"aux_conf", conf}, {"aux_reg", reg}});
  }
  progress.finish();
  const double tail = static_cast<double>(options.iterations - tail_start);
  result.final_aux_conf = tail_conf / tail;
  result.constant_aux_conf = tail_constant / tail;
  plot_metrics(run.read_metrics(), {"loss", "aux_conf", "aux_reg", "aux_conf_constant"},
               "decoder pretraining (moving average of 10 steps)", run.file("losses.png"));
  result.after =
      validation_specificity(distiller, teacher, val, options.test_transform, options.validation_images);
  draw_attention_pictures(distiller, teacher, val, options.test_transform, run.file("attention-after.png"));
  write_file_atomically(run.file("specificity.json"),
                        nlohmann::json{{"before", specificity_to_json(result.before)},
                                       {"after", specificity_to_json(result.after)},
                                       {"final_aux_conf", result.final_aux_conf},
                                       {"constant_aux_conf", result.constant_aux_conf}}
                                .dump(2) +
                            "\n");
  result.state = distiller.state_dict();
  save_checkpoint(weights_path, result.state, {{"pretraining", config.dump()}});
  return result;
}

}  // namespace icd::app
