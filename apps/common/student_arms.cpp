#include "apps/common/student_arms.h"

#include <filesystem>
#include <iostream>
#include <set>
#include <stdexcept>

#include "apps/common/attention_pictures.h"

namespace icd::app {
namespace {

nlohmann::json training_to_json(const TrainOptions& t) {
  return {{"iterations", t.iterations},
          {"batch_size", t.batch_size},
          {"lr", t.lr},
          {"momentum", t.momentum},
          {"weight_decay", t.weight_decay},
          {"warmup_iterations", t.warmup.iters},
          {"lr_step_fractions", t.lr_step_fractions},
          {"clip_value", t.clip_value},
          {"seed", t.seed}};
}

// What config.json says of the student's backbone (its model config has the rest).
nlohmann::json student_backbone_json(const ExperimentPreset& preset) {
  return {{"name", preset.student_backbone.name},
          {"blocks", preset.student.backbone.blocks},
          {"imagenet_weights",
           preset.student_backbone.imagenet ? nlohmann::json(preset.imagenet_weights) : nlohmann::json()}};
}

int64_t anchors_per_cell(const RetinaNetConfig& model) {
  return static_cast<int64_t>(model.anchors.sizes.at(0).size() * model.anchors.aspect_ratios.size());
}

std::unique_ptr<TrainingObjective> make_objective(const StudentArm& arm, uint64_t seed,
                                                  const StudentRunContext& context, RunFolder& run,
                                                  nlohmann::json& config) {
  const ExperimentPreset& preset = *context.preset;
  const DistillationRecipe& recipe = preset.distillation;
  const int64_t teacher_channels = preset.teacher.fpn_channels,
                student_channels = preset.student.fpn_channels;
  switch (arm.distiller) {
    case DistillerKind::none:
      return std::make_unique<DetectionObjective>();
    case DistillerKind::icd: {
      const IcdConfig icd =
          recipe.icd_config(context.data->train->num_classes(), teacher_channels, student_channels);
      auto objective =
          std::make_unique<IcdObjective>(*context.teacher, icd, *context.prior, recipe.optimizer, seed);
      if (context.pretrained_decoder) {
        load_pretrained_decoder(objective->distiller(), context.pretrained_decoder->state);
        config["decoder_pretraining"] = {
            {"dir", context.pretrained_decoder->dir},
            {"specificity_before", specificity_to_json(context.pretrained_decoder->before)},
            {"specificity_after", specificity_to_json(context.pretrained_decoder->after)}};
      } else {
        config["decoder_pretraining"] = nullptr;
      }
      context.prior->save(run.file("fake_instance_prior.json"));
      return objective;
    }
    case DistillerKind::fitnet:
      return std::make_unique<FitNetObjective>(
          *context.teacher,
          FitNetConfig{.student_channels = student_channels, .teacher_channels = teacher_channels},
          recipe.optimizer, seed);
    case DistillerKind::fgfi:
      return std::make_unique<FgfiObjective>(*context.teacher,
                                             FgfiConfig{.student_channels = student_channels,
                                                        .teacher_channels = teacher_channels,
                                                        .anchors_per_cell = anchors_per_cell(preset.student),
                                                        .psi = recipe.fgfi_psi,
                                                        .weight = recipe.fgfi_weight},
                                             recipe.optimizer, seed);
  }
  throw std::logic_error("make_objective: unknown distiller");
}

}  // namespace

const std::vector<StudentArm>& student_arms() {
  static const std::vector<StudentArm> arms{
      {"none", DistillerKind::none, false, "baseline: the student alone"},
      {"inherit", DistillerKind::none, true, "baseline starting from the teacher's FPN and head"},
      {"icd", DistillerKind::icd, true, "instance-conditional distillation with inheriting (the paper's)"},
      {"icd-no-inherit", DistillerKind::icd, false, "instance-conditional distillation alone"},
      {"fitnet", DistillerKind::fitnet, false, "FitNet imitation of every FPN position"},
      {"fgfi", DistillerKind::fgfi, false, "FGFI imitation near the objects' anchors"}};
  return arms;
}

std::string student_arm_names() {
  std::string names;
  for (const StudentArm& arm : student_arms())
    names += (names.empty() ? "" : ", ") + arm.name;
  return names;
}

const StudentArm& find_student_arm(const std::string& name) {
  for (const StudentArm& arm : student_arms())
    if (arm.name == name) return arm;
  throw std::invalid_argument("unknown method '" + name + "' (" + student_arm_names() + ")");
}

std::vector<StudentArm> parse_student_arms(const std::string& comma_separated) {
  std::vector<StudentArm> arms;
  std::set<std::string> seen;
  std::size_t start = 0;
  while (start <= comma_separated.size()) {
    std::size_t end = comma_separated.find(',', start);
    if (end == std::string::npos) end = comma_separated.size();
    const std::string name = comma_separated.substr(start, end - start);
    if (!seen.insert(name).second) throw std::invalid_argument("method '" + name + "' is given twice");
    arms.push_back(find_student_arm(name));
    start = end + 1;
  }
  return arms;
}

std::string student_run_dir(const StudentRunContext& context, const StudentArm& arm, uint64_t seed) {
  return context.runs_dir + "/student-" + arm.name + "-" + context.preset->name +
         student_folder_tag(*context.preset) + "-s" + std::to_string(seed);
}

ArmOutcome run_student_arm(const StudentArm& arm, uint64_t seed, const StudentRunContext& context) {
  const ExperimentPreset& preset = *context.preset;
  ArmOutcome outcome{.run_dir = student_run_dir(context, arm, seed), .seed = seed};
  TrainOptions options = context.training;
  options.seed = seed;
  options.clip_value = preset.distillation.student_clip_value;
  // What decides the result: a run may be continued or read back only when it was asked the same.
  nlohmann::json request{{"preset", preset.name},
                         {"method", arm.name},
                         {"inherit", arm.inherit},
                         {"seed", seed},
                         {"teacher", context.teacher_path},
                         {"student", to_json(preset.student)},
                         {"training", training_to_json(options)},
                         {"distillation", preset.distillation.to_json()},
                         {"precision", dtype_name(options.precision)}};
  // The model config above already tells the backbones apart; the name and the weights file it starts from
  // (its path: a file imported again in the same place counts as the same) are asked for too, except for
  // the presets' own resnet18, so that runs from before the choice still match.
  if (preset.student_backbone.name != "resnet18") request["student_backbone"] = student_backbone_json(preset);
  const std::string eval_name = "eval.json", config_name = "config.json";
  const std::filesystem::path folder(outcome.run_dir);
  if (context.training.resume && std::filesystem::exists(folder / config_name)) {
    const nlohmann::json stored = read_json_file((folder / config_name).string());
    for (const auto& [key, value] : request.items())
      if (!stored.contains(key) || stored[key] != value)
        throw std::runtime_error(
            outcome.run_dir + " was run with another \"" + key +
            "\" than asked now: --resume continues only the same run (remove the folder, " +
            "or run without --resume, to start it again)");
  }
  if (context.training.resume && std::filesystem::exists(folder / eval_name)) {
    outcome.row = ap_row(*read_eval_json((folder / eval_name).string()));
    if (std::filesystem::exists(folder / "attention.json"))
      outcome.specificity =
          specificity_from_json(read_json_file((folder / "attention.json").string()).at("specificity"));
    outcome.reused = true;
    std::cout << outcome.run_dir << " is finished: its evaluation is read back\n";
    return outcome;
  }
  Generator gen(seed);
  RetinaNet student(preset.student, gen);  // every arm of a seed starts from these weights
  if (preset.student_backbone.imagenet) {
    require_imagenet_weights(preset.imagenet_weights, "the " + preset.student_backbone.name + " student");
    if (!load_imagenet_backbone(student, preset.imagenet_weights))
      throw std::logic_error("the " + preset.student_backbone.name + " student's backbone does not take " +
                             "the ImageNet ResNet-50");
  }
  // A fresh start leaves nothing of an earlier run (its checkpoint above all) for a later --resume to find;
  // only now, once the student could be built, so that a weights file that does not fit loses nothing.
  if (!context.training.resume) std::filesystem::remove_all(folder);
  RunFolder run(outcome.run_dir);
  student.to(options.device);  // before inheriting from the teacher, which lives there
  nlohmann::json config = request;
  config["student_backbone"] = student_backbone_json(preset);
  config["app"] = "distill_retinanet";
  config["description"] = arm.description;
  config["device"] = options.device.str();
  if (arm.inherit) {
    const std::vector<std::string> copied = inherit_from_teacher(student, *context.teacher);
    std::cout << "inherited " << copied.size() << " FPN and head tensors from the teacher\n";
    config["inherited"] = copied;
  }
  std::unique_ptr<TrainingObjective> objective = make_objective(arm, seed, context, run, config);
  run.write_config(config);
  enable_ap_over_time(options, preset, *context.data);
  train_detector(student, *objective, *context.data->train, options, run);

  if (auto* icd = dynamic_cast<IcdObjective*>(objective.get())) {
    outcome.specificity = validation_specificity(icd->distiller(), *context.teacher, *context.data->val,
                                                 preset.evaluation.transform,
                                                 preset.distillation.decoder_pretraining.validation_images);
    write_file_atomically(
        run.file("attention.json"),
        nlohmann::json{{"specificity", specificity_to_json(*outcome.specificity)}}.dump(2) + "\n");
    draw_attention_pictures(icd->distiller(), *context.teacher, *context.data->val,
                            preset.evaluation.transform, run.file("attention.png"));
    std::cout << "wrote " << run.file("attention.png") << "\n";
  }
  EvalOptions eval = preset.evaluation;
  eval.detections_path = run.file("detections.json");
  const CocoEvalResult result = evaluate_detector(student, *context.data->val, eval);
  write_file_atomically(run.file(eval_name),
                        coco_eval_to_json(result).dump(2) + "\n");  // last: marks it finished
  outcome.row = ap_row(result);
  return outcome;
}

}  // namespace icd::app
