// distill_retinanet: the main experiment. Trains a student RetinaNet (ResNet-18 FPN from scratch, or with
// --student resnet50-cut a ResNet-50 FPN with fewer blocks starting from ImageNet) several ways from the
// same initialisation, seed, data order and schedule, all from one frozen teacher (ResNet-50 FPN):
// alone (the baseline), alone but starting from the teacher's FPN and head (inheriting), with
// instance-conditional distillation (ICD, Kang et al., NeurIPS 2021) with and without inheriting, and with
// the FitNet and FGFI imitation baselines (apps/common/student_arms.h). Evaluates every model with the COCO
// protocol and prints one table, with each arm's gain over the baseline and ICD's over inheriting alone.
//
// With no flags it runs the whole default experiment: builds the built-in dataset if it is not cached,
// trains the teacher if runs/teacher-default holds no finished one, pretrains ICD's decoder on the frozen
// teacher once (cached beside it: apps/common/decoder_pretraining.h), then the students, then the table.
//
// Read first: apps/common/student_arms.h (the arms), distill/objectives.h (the teacher-student wiring),
// distill/icd_module.h (the method), apps/common/trainer.h (the loop), apps/common/experiment.h (what the
// presets choose).
//
//   ./build/apps/distill_retinanet                               # the default experiment
//   ./build/apps/distill_retinanet --preset tiny                 # every stage in a few minutes
//   ./build/apps/distill_retinanet --methods none,inherit,icd,icd-no-inherit,fitnet,fgfi --seeds 1,2
//   ./build/apps/distill_retinanet --teacher runs/teacher-default/checkpoint.safetensors --methods icd
//   ./build/apps/distill_retinanet --resume                      # continue; finished runs are kept
//   ./build/apps/distill_retinanet --pretrain-only --pretrain-lr 3e-3   # study decoder pretraining alone
//   ./build/apps/distill_retinanet --preset large --device cuda --precision bf16   # on a GPU
//   ./build/apps/distill_retinanet --student resnet50-cut --student-blocks 3,4,3,3   # an ImageNet student
#include <omp.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <map>

#include "apps/common/device_flag.h"
#include "apps/common/experiment.h"
#include "apps/common/plot.h"
#include "apps/common/progress.h"
#include "apps/common/run_folder.h"
#include "apps/common/student_arms.h"
#include "engine/autocast.h"
#include "engine/checkpoint.h"

using namespace icd;
using namespace icd::app;

namespace {

const char* kColumns[6] = {"AP", "AP50", "AP75", "APs", "APm", "APl"};

// printf into a string (the table goes to the terminal and to a file).
template <typename... Args>
void append(std::string& out, const char* format, Args... args) {
  char buffer[256];
  std::snprintf(buffer, sizeof buffer, format, args...);
  out += buffer;
}

void append_row(std::string& out, const std::string& name, const std::array<double, 6>& values,
                const std::array<double, 6>* spread) {
  append(out, "%-28s", name.c_str());
  for (int i = 0; i < 6; ++i) {
    if (values[i] < 0)
      append(out, " %12s", "n/a");  // COCO's -1: no ground truth in that area range
    else if (spread)
      append(out, " %6.2f±%-5.2f", values[i], (*spread)[i]);
    else
      append(out, " %12.2f", values[i]);
  }
  out += "\n";
}

// A teacher run is finished when its evaluation is written and its checkpoint holds every iteration its
// config.json asked for (an evaluation of an interrupted teacher through --teacher does not finish it).
bool teacher_finished(const std::string& run_dir) {
  const std::string checkpoint = run_dir + "/checkpoint.safetensors", config = run_dir + "/config.json";
  if (!std::filesystem::exists(checkpoint) || !std::filesystem::exists(run_dir + "/eval.json") ||
      !std::filesystem::exists(config))
    return false;
  const int64_t asked = read_json_file(config).at("iterations").get<int64_t>();
  const auto& metadata = load_checkpoint(checkpoint).metadata;
  const auto done = metadata.find("iteration");
  return done != metadata.end() && std::stoll(done->second) >= asked;
}

// One arm's outcomes over the seeds (a failed seed holds its error instead).
struct ArmResults {
  std::vector<ArmOutcome> outcomes;
  std::vector<std::pair<uint64_t, std::string>> failures;  // seed, what went wrong
};

// Mean and spread (half the range) of the seeds' rows.
std::pair<std::array<double, 6>, std::array<double, 6>> mean_and_spread(const std::vector<ArmOutcome>& runs) {
  std::array<double, 6> mean{}, spread{};
  for (int i = 0; i < 6; ++i) {
    double lo = INFINITY, hi = -INFINITY;
    for (const ArmOutcome& run : runs)
      mean[i] += run.row[i] / static_cast<double>(runs.size()), lo = std::min(lo, run.row[i]),
                                                                hi = std::max(hi, run.row[i]);
    spread[i] = (hi - lo) / 2;
  }
  return {mean, spread};
}

void append_specificity(std::string& out, const std::string& label, const AttentionSpecificity& s) {
  char rank[48] = "  n/a";  // a measurement saved before the rank existed
  if (s.num_ranked > 0)
    std::snprintf(rank, sizeof rank, "%5.0f%% (chance %2.0f%%)", 100 * s.own_first, 100 * s.own_first_chance);
  append(out, "  %-40s %6.2f  %6.2f  %s  (%lld instances)\n", label.c_str(), s.overall, s.cross, rank,
         static_cast<long long>(s.num_queries));
}

// AP over training of every run in one picture: the val_AP records of each run's metrics.jsonl.
void plot_ap_over_time(const std::vector<StudentArm>& arms, const std::map<std::string, ArmResults>& results,
                       const std::string& png_path) {
  std::vector<nlohmann::json> records;
  std::vector<std::string> series;
  for (const StudentArm& arm : arms)
    for (const ArmOutcome& run : results.at(arm.name).outcomes) {
      const std::string name = arm.name + " " + run.run_dir.substr(run.run_dir.rfind('-') + 1);
      series.push_back(name);
      for (const nlohmann::json& r : RunFolder(run.run_dir).read_metrics())
        if (r.contains("val_AP")) records.push_back({{"step", r.at("step")}, {name, r.at("val_AP")}});
    }
  if (!records.empty())
    plot_metrics(records, series, "validation AP (first 100 val images) over training", png_path, 1);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "Distil a RetinaNet student from a RetinaNet teacher with ICD, and compare with the baselines"};
  std::string preset_name = "default", teacher_path, methods_text, seeds_text, runs_dir = "runs",
              device = "auto", precision = "f32";
  std::string train_json, val_json, student_name = "resnet18";
  std::vector<int> student_blocks;
  // -1 / 0: the preset's.
  int64_t iterations = 0, pretrain_iterations = -1, pretrain_warmup = -1, pretrain_steps = 0, icd_warmup = -1;
  double icd_lr = 0, pretrain_lr = 0;
  int threads = omp_get_max_threads();
  bool resume = false, skip_bad_images = false, no_imagenet = false, pretrain_only = false;
  app.add_option("--preset", preset_name, "tiny, default or large")->capture_default_str();
  app.add_option("--teacher", teacher_path, "teacher checkpoint (default: trained into runs/teacher-PRESET)");
  app.add_option("--student", student_name,
                 "the student's backbone: resnet18 (from scratch) or resnet50-cut (ResNet-50 v1 with fewer "
                 "blocks, from the ImageNet weights)")
      ->capture_default_str();
  app.add_option("--student-blocks", student_blocks,
                 "resnet50-cut's blocks per stage, each at most ResNet-50's 3,4,6,3 (default: 3,4,3,3)")
      ->delimiter(',');
  app.add_option("--methods", methods_text,
                 "comma-separated arms (" + student_arm_names() + "); default: the preset's (" +
                     ExperimentPreset{}.default_arms + ")");
  app.add_option("--seeds", seeds_text,
                 "comma-separated student seeds (several give the spread); default: the "
                 "preset's");
  app.add_option("--runs", runs_dir, "folder for the run folders")->capture_default_str();
  app.add_option("--train-json", train_json, "COCO training annotations (default: the built-in dataset)");
  app.add_option("--val-json", val_json, "COCO validation annotations");
  app.add_option("--iterations", iterations,
                 "override the preset's iterations (a teacher still to train and the students)");
  app.add_option(
      "--decoder-pretraining", pretrain_iterations,
      "iterations of ICD decoder pretraining on the frozen teacher (0: none; default: the preset's)");
  app.add_option("--pretrain-lr", pretrain_lr,
                 "learning rate of decoder pretraining (default: the preset's)");
  app.add_option("--pretrain-warmup", pretrain_warmup,
                 "iterations of linear learning-rate warm-up in decoder pretraining (default: the preset's)")
      ->check(CLI::NonNegativeNumber);
  app.add_option(
         "--pretrain-steps-per-batch", pretrain_steps,
         "decoder pretraining steps per teacher forward, each with fresh queries (default: the preset's)")
      ->check(CLI::PositiveNumber);
  app.add_flag("--pretrain-only", pretrain_only,
               "stop after the teacher and ICD's decoder pretraining (to study the pretraining alone)");
  app.add_option("--icd-warmup", icd_warmup,
                 "iterations with the student's features detached from the ICD loss (default: the preset's)");
  app.add_option("--icd-lr", icd_lr, "learning rate of the distillers' AdamW (default: the preset's)");
  app.add_option("--threads", threads, "CPU threads")->capture_default_str();
  app.add_flag("--skip-bad-images", skip_bad_images,
               "skip unreadable images with a warning instead of stopping");
  app.add_flag("--resume", resume,
               "continue interrupted runs from their checkpoints; finished ones are read back, not redone");
  app.add_flag("--no-imagenet", no_imagenet, "train the teacher's backbone from random weights");
  add_device_flag(app, device);
  add_precision_flag(app, precision);
  CLI11_PARSE(app, argc, argv);
  omp_set_num_threads(threads);

  try {
    // A wrong student fails here, before the dataset is built or the teacher trained.
    ExperimentPreset probe = experiment_preset(preset_name, 1);
    set_student(probe, student_name, student_blocks);
    if (probe.student_backbone.imagenet && !pretrain_only)
      require_imagenet_weights(probe.imagenet_weights, "--student " + student_name);
    const Device where = use_device_flag(device);
    ProgressLine clock("experiment", 1, 1);
    DatasetSplits data = load_datasets(preset_name, train_json, val_json);
    ExperimentPreset preset = experiment_preset(preset_name, data.train->num_classes());
    set_student(preset, student_name, student_blocks);
    const std::vector<StudentArm> arms =
        parse_student_arms(methods_text.empty() ? preset.default_arms : methods_text);
    std::vector<uint64_t> seeds;
    for (const auto& part : CLI::detail::split(seeds_text.empty() ? preset.default_seeds : seeds_text, ','))
      seeds.push_back(std::stoull(part));
    DistillationRecipe& recipe = preset.distillation;
    if (iterations > 0) set_iterations(preset, iterations);
    if (pretrain_iterations >= 0) recipe.decoder_pretraining.iterations = pretrain_iterations;
    if (pretrain_lr > 0) recipe.decoder_pretraining.lr = pretrain_lr;
    if (pretrain_warmup >= 0) recipe.decoder_pretraining.warmup_iterations = pretrain_warmup;
    if (pretrain_steps > 0) recipe.decoder_pretraining.steps_per_batch = pretrain_steps;
    if (icd_warmup >= 0) recipe.icd_warmup_iterations = icd_warmup;
    if (icd_lr > 0) recipe.optimizer.lr = icd_lr;

    // 1. The teacher. A finished one (its folder has eval.json) is never trained, extended or evaluated
    // again; an unfinished one continues only when asked to.
    const std::string teacher_run = runs_dir + "/teacher-" + preset_name;
    if (teacher_path.empty()) {
      teacher_path = teacher_run + "/checkpoint.safetensors";
      if (teacher_finished(teacher_run)) {
        std::cout << "== the teacher " << teacher_path << " is finished: it is used as it is\n";
      } else {
        if (std::filesystem::exists(teacher_path) && !resume)
          throw std::runtime_error(teacher_run + " holds an unfinished teacher: --resume continues it, " +
                                   "or remove the folder to start again");
        std::cout << "== training the teacher into " << teacher_run << "\n";
        TrainOptions options = preset.teacher_training;
        options.resume = resume;
        options.skip_unreadable_images = skip_bad_images;
        options.device = where;
        options.precision = parse_precision(precision);
        run_teacher_training(preset, data, teacher_run, options, !no_imagenet);
      }
    }
    std::unique_ptr<RetinaNet> teacher = load_retinanet(teacher_path);
    teacher->to(where);
    const std::string teacher_dir = std::filesystem::path(teacher_path).parent_path().string();
    const std::string teacher_eval_path = teacher_dir + "/eval.json";
    std::optional<CocoEvalResult> teacher_eval = read_eval_json(teacher_eval_path);
    if (!teacher_eval) {
      std::cout << "== evaluating the teacher " << teacher_path << "\n";
      teacher_eval = evaluate_detector(*teacher, *data.val, preset.evaluation);
      write_file_atomically(teacher_eval_path, coco_eval_to_json(*teacher_eval).dump(2) + "\n");
    }

    // 2. ICD's decoder, pretrained once on the frozen teacher for every ICD run.
    FakeInstancePrior prior = training_prior(*data.train);
    std::optional<PretrainedDecoder> pretrained;
    const bool any_icd = std::any_of(arms.begin(), arms.end(),
                                     [](const StudentArm& a) { return a.distiller == DistillerKind::icd; });
    std::string pretraining_failure;  // the ICD arms fail with it; the others still run
    if ((any_icd || pretrain_only) && recipe.decoder_pretraining.iterations > 0) try {
        std::cout << "== ICD decoder pretraining on the frozen teacher\n";
        Generator gen(recipe.decoder_pretraining.seed);
        InstanceConditionalDistiller distiller(
            recipe.icd_config(data.train->num_classes(), preset.teacher.fpn_channels,
                              preset.student.fpn_channels),
            prior, gen);
        distiller.to(teacher->parameters().front().dtype());
        distiller.to(where);
        pretrained = pretrain_decoder(distiller, *teacher, *data.train, *data.val, recipe.decoder_pretraining,
                                      file_identity(teacher_path), teacher_dir + "/decoder-pretraining");
        std::printf(
            "decoder pretraining: aux_conf %.3f (a constant guess: %.3f); attention specificity %.2f -> "
            "%.2f (other boxes %.2f -> %.2f)",
            pretrained->final_aux_conf, pretrained->constant_aux_conf, pretrained->before.overall,
            pretrained->after.overall, pretrained->before.cross, pretrained->after.cross);
        if (pretrained->after.num_ranked > 0)
          std::printf("; own box first %.0f%% -> %.0f%% (chance %.0f%%)", 100 * pretrained->before.own_first,
                      100 * pretrained->after.own_first, 100 * pretrained->after.own_first_chance);
        std::printf("\n");
      } catch (const std::exception& e) {
        pretraining_failure = std::string("decoder pretraining failed: ") + e.what();
        std::cerr << "distill_retinanet: " << pretraining_failure << "\n";
        if (pretrain_only) return 1;
      }
    if (pretrain_only) return 0;

    // 3. The students: one run per (arm, seed); a failed run is reported and the others still run.
    StudentRunContext context{.preset = &preset,
                              .data = &data,
                              .teacher = teacher.get(),
                              .teacher_path = teacher_path,
                              .prior = &prior,
                              .pretrained_decoder = pretrained ? &*pretrained : nullptr,
                              .training = preset.student_training,
                              .runs_dir = runs_dir};
    context.training.resume = resume;
    context.training.skip_unreadable_images = skip_bad_images;
    context.training.device = where;
    context.training.precision = parse_precision(precision);
    std::map<std::string, ArmResults> results;
    for (uint64_t seed : seeds) {
      for (const StudentArm& arm : arms) {
        std::cout << "== " << student_run_dir(context, arm, seed) << " (" << arm.description << ")\n";
        try {
          if (arm.distiller == DistillerKind::icd && !pretraining_failure.empty())
            throw std::runtime_error(pretraining_failure);
          results[arm.name].outcomes.push_back(run_student_arm(arm, seed, context));
        } catch (const std::exception& e) {
          std::cerr << "distill_retinanet: " << arm.name << " seed " << seed << " failed: " << e.what()
                    << "\n";
          results[arm.name].failures.emplace_back(seed, e.what());
        }
      }
    }

    // 4. The table: mean over seeds, with the spread (half the range) when there are several; the gains;
    // each seed's AP; the attention specificity.
    const std::string student_label = "student (" + student_backbone_label(preset) + ") ";
    std::string table;
    append(table, "COCO box AP on %s (%zu val images), preset %s, %zu seed(s), %s\n",
           data.val->source().c_str(), static_cast<size_t>(data.val->num_images()), preset_name.c_str(),
           seeds.size(), format_duration(clock.seconds_elapsed()).c_str());
    append(table, "%-28s", "model");
    for (const char* c : kColumns)
      append(table, " %12s", c);
    table += "\n";
    append_row(table, "teacher (R" + std::to_string(preset.teacher.backbone.depth) + ")",
               ap_row(*teacher_eval), nullptr);
    std::map<std::string, std::array<double, 6>> means;
    std::map<std::string, double> ap_spread;  // of AP, per arm
    for (const StudentArm& arm : arms) {
      const ArmResults& r = results[arm.name];
      if (r.outcomes.empty()) {
        append(table, "%-28s failed: %s\n", (student_label + arm.name).c_str(),
               r.failures.front().second.substr(0, 120).c_str());
        continue;
      }
      const auto [mean, spread] = mean_and_spread(r.outcomes);
      means[arm.name] = mean;
      ap_spread[arm.name] = spread[0];
      append_row(table, student_label + arm.name, mean, r.outcomes.size() > 1 ? &spread : nullptr);
    }
    // Gains over the seeds both arms finished (a failed seed would otherwise compare different draws).
    const auto gain_row = [&](const std::string& arm, const std::string& over) {
      std::array<double, 6> gain{};
      int paired = 0;
      for (const ArmOutcome& a : results[arm].outcomes)
        for (const ArmOutcome& b : results[over].outcomes)
          if (a.seed == b.seed) {
            ++paired;
            for (int i = 0; i < 6; ++i)
              gain[i] += a.row[i] - b.row[i];
          }
      if (paired == 0) return;
      append(table, "%-28s", (arm + " over " + over).c_str());
      for (int i = 0; i < 6; ++i)
        append(table, " %+12.2f", gain[i] / paired);
      if (static_cast<std::size_t>(paired) < seeds.size()) append(table, "  (%d paired seed(s))", paired);
      table += "\n";
    };
    for (const StudentArm& arm : arms)
      if (arm.name != "none") gain_row(arm.name, "none");
    gain_row("icd", "inherit");
    if (means.count("icd") && means.count("inherit") && seeds.size() > 1 && results["icd"].failures.empty() &&
        results["inherit"].failures.empty())
      append(table,
             "ICD's loss on top of inheriting: %+.2f AP; seed spread (half range) %.2f (icd), %.2f "
             "(inherit)\n",
             means["icd"][0] - means["inherit"][0], ap_spread["icd"], ap_spread["inherit"]);
    table += "AP per seed:";
    for (const StudentArm& arm : arms) {
      append(table, "  %s", arm.name.c_str());
      for (const ArmOutcome& run : results[arm.name].outcomes)
        append(table, " %s %.2f", run.run_dir.substr(run.run_dir.rfind('-') + 1).c_str(), run.row[0]);
      for (const auto& [seed, why] : results[arm.name].failures)
        append(table, " s%llu failed", static_cast<unsigned long long>(seed));
    }
    table += "\n";
    bool any_specificity = pretrained.has_value();
    for (const auto& [name, r] : results)
      for (const ArmOutcome& run : r.outcomes)
        any_specificity = any_specificity || run.specificity.has_value();
    if (any_specificity) {
      table += "ICD attention specificity on validation instances (1 = spread evenly):\n";
      append(table, "  %-40s %6s  %6s  %s\n", "", "own", "other", "own box first");
      if (pretrained) {
        append_specificity(table, "decoder before pretraining", pretrained->before);
        append_specificity(
            table, "after pretraining (" + std::to_string(recipe.decoder_pretraining.iterations) + " it)",
            pretrained->after);
      }
      for (const StudentArm& arm : arms)
        for (const ArmOutcome& run : results[arm.name].outcomes)
          if (run.specificity)
            append_specificity(table, "after " + run.run_dir.substr(run.run_dir.rfind('/') + 1),
                               *run.specificity);
    }
    std::cout << "\n" << table;
    const std::string table_path = runs_dir + "/results-" + preset_name + student_folder_tag(preset) + ".txt";
    write_file_atomically(table_path, table);
    std::cout << "wrote " << table_path << "\n";
    const std::string curves_path = runs_dir + "/ap-" + preset_name + student_folder_tag(preset) + ".png";
    plot_ap_over_time(arms, results, curves_path);
    std::cout << "wrote " << curves_path << "\n";
    for (const auto& [name, r] : results)
      if (!r.failures.empty()) return 1;
  } catch (const std::exception& e) {
    std::cerr << "distill_retinanet: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
