// distill_retinanet: the main experiment. Trains a student RetinaNet (ResNet-18 FPN) from the same
// initialisation and seed without distillation (the baseline), with instance-conditional distillation
// (ICD, the method of Kang et al., NeurIPS 2021) and optionally with FitNet feature imitation, all from
// one frozen teacher (ResNet-50 FPN), evaluates every model with the COCO protocol and prints one table.
//
// With no flags it runs the whole default experiment: builds the built-in dataset if it is not cached,
// trains the teacher if runs/teacher-default has no checkpoint, then the students, then the table.
//
// Read first: distill/objectives.h (the teacher-student wiring), distill/icd_module.h (the method),
// apps/common/trainer.h (the loop), apps/common/experiment.h (what the presets choose).
//
//   ./build/apps/distill_retinanet                               # the default experiment
//   ./build/apps/distill_retinanet --preset tiny                 # every stage in a few minutes
//   ./build/apps/distill_retinanet --methods none,icd,fitnet --seeds 1,2
//   ./build/apps/distill_retinanet --teacher runs/teacher-default/checkpoint.safetensors --methods icd
//   ./build/apps/distill_retinanet --resume                      # continue interrupted runs
//   ./build/apps/distill_retinanet --preset large --device cuda --precision bf16   # on a GPU
#include <omp.h>

#include <CLI/CLI.hpp>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>

#include "apps/common/attention_pictures.h"
#include "apps/common/device_flag.h"
#include "apps/common/experiment.h"
#include "apps/common/progress.h"
#include "apps/common/run_folder.h"
#include "apps/common/trainer.h"
#include "distill/objectives.h"
#include "engine/autocast.h"

using namespace icd;
using namespace icd::app;

namespace {

const char* kColumns[6] = {"AP", "AP50", "AP75", "APs", "APm", "APl"};

// The fake-instance prior from the training annotations (spec/icd.md: our data is not COCO).
FakeInstancePrior training_prior(const CocoDataset& train) {
  std::vector<ImageInstances> images;
  for (int64_t i = 0; i < train.num_images(); ++i) {
    DetectionTargets targets = train.targets(i);
    ImageInstances image{.size = {train.image(i).height, train.image(i).width}};
    for (const BoxXYXY& b : targets.boxes)
      image.boxes.push_back({b.x1, b.y1, b.x2, b.y2});
    image.labels = targets.classes;
    images.push_back(std::move(image));
  }
  return FakeInstancePrior::from_annotations(images, train.num_classes());
}

std::optional<CocoEvalResult> read_eval(const std::string& path) {
  if (!std::filesystem::exists(path)) return std::nullopt;
  std::ifstream in(path);
  nlohmann::json j = nlohmann::json::parse(in);
  CocoEvalResult r;
  for (int i = 0; i < 12; ++i)
    r.stats[i] = j.at("stats").at(i).get<double>();
  return r;
}

// printf into a string (the table goes to the terminal and to a file).
template <typename... Args>
void append(std::string& out, const char* format, Args... args) {
  char buffer[256];
  std::snprintf(buffer, sizeof buffer, format, args...);
  out += buffer;
}

void append_row(std::string& out, const std::string& name, const std::array<double, 6>& values,
                const std::array<double, 6>* spread) {
  append(out, "%-22s", name.c_str());
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

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "Distil a RetinaNet student from a RetinaNet teacher with ICD, and compare with the baselines"};
  std::string preset_name = "default", teacher_path, methods_text = "none,icd", seeds_text = "1,2",
              runs_dir = "runs", device = "auto", precision = "f32";
  std::string train_json, val_json;
  int64_t iterations = 0;
  int threads = omp_get_max_threads();
  bool resume = false, skip_bad_images = false, no_inherit = false, no_imagenet = false;
  app.add_option("--preset", preset_name, "tiny, default or large")->capture_default_str();
  app.add_option("--teacher", teacher_path, "teacher checkpoint (default: trained into runs/teacher-PRESET)");
  app.add_option("--methods", methods_text, "comma-separated: none (the baseline), icd, fitnet")
      ->capture_default_str();
  app.add_option("--seeds", seeds_text, "comma-separated student seeds (several give the spread)")
      ->capture_default_str();
  app.add_option("--runs", runs_dir, "folder for the run folders")->capture_default_str();
  app.add_option("--train-json", train_json, "COCO training annotations (default: the built-in dataset)");
  app.add_option("--val-json", val_json, "COCO validation annotations");
  app.add_option("--iterations", iterations, "override the preset's iterations (teacher and students)");
  app.add_option("--threads", threads, "CPU threads")->capture_default_str();
  app.add_flag("--skip-bad-images", skip_bad_images,
               "skip unreadable images with a warning instead of stopping");
  app.add_flag("--resume", resume, "continue interrupted runs from their checkpoints");
  app.add_flag("--no-inherit", no_inherit, "do not copy the teacher's FPN and head into the ICD student");
  app.add_flag("--no-imagenet", no_imagenet, "train the teacher's backbone from random weights");
  add_device_flag(app, device);
  add_precision_flag(app, precision);
  CLI11_PARSE(app, argc, argv);
  omp_set_num_threads(threads);

  std::vector<std::string> methods;
  for (std::string m; const auto& part : CLI::detail::split(methods_text, ',')) {
    m = part;
    if (m != "none" && m != "icd" && m != "fitnet") {
      std::cerr << "distill_retinanet: unknown method '" << m << "' (none, icd, fitnet)\n";
      return 2;
    }
    methods.push_back(m);
  }
  std::vector<uint64_t> seeds;
  for (const auto& part : CLI::detail::split(seeds_text, ','))
    seeds.push_back(std::stoull(part));

  try {
    const Device where = use_device_flag(device);
    ProgressLine clock("experiment", 1, 1);
    DatasetSplits data = load_datasets(preset_name, train_json, val_json);
    ExperimentPreset preset = experiment_preset(preset_name, data.train->num_classes());
    if (iterations > 0) preset.teacher_training.iterations = preset.student_training.iterations = iterations;

    // 1. The teacher.
    std::string teacher_run = runs_dir + "/teacher-" + preset_name;
    if (teacher_path.empty()) {
      teacher_path = teacher_run + "/checkpoint.safetensors";
      if (!std::filesystem::exists(teacher_path) || resume) {
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
    const std::string teacher_eval_path =
        std::filesystem::path(teacher_path).parent_path().string() + "/eval.json";
    std::optional<CocoEvalResult> teacher_eval = read_eval(teacher_eval_path);
    if (!teacher_eval) {
      std::cout << "== evaluating the teacher " << teacher_path << "\n";
      teacher_eval = evaluate_detector(*teacher, *data.val, preset.evaluation);
      write_file_atomically(teacher_eval_path, coco_eval_to_json(*teacher_eval).dump(2) + "\n");
    }

    // 2. The students: one run per (method, seed), every method of a seed from the same initial weights.
    FakeInstancePrior prior = training_prior(*data.train);
    std::map<std::string, std::vector<std::array<double, 6>>> rows;
    for (uint64_t seed : seeds) {
      for (const std::string& method : methods) {
        const std::string name = "student-" + method + "-" + preset_name + "-s" + std::to_string(seed);
        std::cout << "== " << name << "\n";
        RunFolder run(runs_dir + "/" + name);
        TrainOptions options = preset.student_training;
        options.seed = seed;
        options.resume = resume;
        options.skip_unreadable_images = skip_bad_images;
        options.device = where;
        options.precision = parse_precision(precision);
        Generator gen(seed);
        RetinaNet student(preset.student, gen);
        student.to(where);  // before inheriting from the teacher, which lives there
        std::unique_ptr<TrainingObjective> objective;
        DistillerOptimizerConfig optimizer{.iterations = options.iterations};
        nlohmann::json config{{"app", "distill_retinanet"}, {"preset", preset_name},
                              {"method", method},           {"seed", seed},
                              {"teacher", teacher_path},    {"student", to_json(preset.student)},
                              {"device", where.str()},      {"precision", precision}};
        if (method == "none") {
          objective = std::make_unique<DetectionObjective>();
        } else if (method == "icd") {
          IcdConfig icd{.num_classes = data.train->num_classes(),
                        .hidden_dim = preset.teacher.fpn_channels,
                        .student_channels = preset.student.fpn_channels,
                        .num_heads = 8,
                        .ffn_dim = 4 * preset.teacher.fpn_channels,
                        .warmup_iterations = std::min<int64_t>(1000, options.iterations / 5)};
          objective = std::make_unique<IcdObjective>(*teacher, icd, prior, optimizer, seed);
          options.clip_value = 1.0;  // the distillation config clips the student's gradients per element
          if (!no_inherit) {
            std::vector<std::string> copied = inherit_from_teacher(student, *teacher);
            std::cout << "inherited " << copied.size() << " FPN and head tensors from the teacher\n";
            config["inherited"] = copied.size();
          }
          config["warmup_iterations"] = icd.warmup_iterations;
          prior.save(run.file("fake_instance_prior.json"));
        } else {
          objective =
              std::make_unique<FitNetObjective>(*teacher,
                                                FitNetConfig{.student_channels = preset.student.fpn_channels,
                                                             .teacher_channels = preset.teacher.fpn_channels},
                                                optimizer, seed);
        }
        run.write_config(config);
        enable_ap_over_time(options, preset, data);
        train_detector(student, *objective, *data.train, options, run);
        if (auto* icd_objective = dynamic_cast<IcdObjective*>(objective.get())) {
          draw_attention_pictures(icd_objective->distiller(), *teacher, *data.val,
                                  preset.evaluation.transform, run.file("attention.png"));
          std::cout << "wrote " << run.file("attention.png") << "\n";
        }
        EvalOptions eval = preset.evaluation;
        eval.detections_path = run.file("detections.json");
        CocoEvalResult result = evaluate_detector(student, *data.val, eval);
        write_file_atomically(run.file("eval.json"), coco_eval_to_json(result).dump(2) + "\n");
        rows[method].push_back(ap_row(result));
      }
    }

    // 3. The table: mean over seeds, with the spread (half the range) when there are several; then each
    // seed's AP.
    std::string table;
    append(table, "COCO box AP on %s (%zu val images), preset %s, %zu seed(s), %s\n",
           data.val->source().c_str(), static_cast<size_t>(data.val->num_images()), preset_name.c_str(),
           seeds.size(), format_duration(clock.seconds_elapsed()).c_str());
    append(table, "%-22s", "model");
    for (const char* c : kColumns)
      append(table, " %12s", c);
    table += "\n";
    append_row(table, "teacher (R50)", ap_row(*teacher_eval), nullptr);
    std::map<std::string, std::array<double, 6>> means;
    for (const std::string& method : methods) {
      std::array<double, 6> mean{}, spread{};
      const auto& r = rows[method];
      for (int i = 0; i < 6; ++i) {
        double lo = INFINITY, hi = -INFINITY;
        for (const auto& row : r)
          mean[i] += row[i] / r.size(), lo = std::min(lo, row[i]), hi = std::max(hi, row[i]);
        spread[i] = (hi - lo) / 2;
      }
      means[method] = mean;
      const std::string label = method == "none" ? "student (R18) baseline" : "student (R18) " + method;
      append_row(table, label, mean, r.size() > 1 ? &spread : nullptr);
    }
    if (means.count("none")) {
      for (const std::string& method : methods) {
        if (method == "none") continue;
        append(table, "%-22s", (method + " gain").c_str());
        for (int i = 0; i < 6; ++i)
          append(table, " %+12.2f", means[method][i] - means["none"][i]);
        table += "\n";
      }
    }
    if (seeds.size() > 1) {
      table += "AP per seed:";
      for (const std::string& method : methods) {
        append(table, "  %s", method.c_str());
        for (std::size_t k = 0; k < seeds.size(); ++k)
          append(table, " s%llu %.2f", static_cast<unsigned long long>(seeds[k]), rows[method][k][0]);
      }
      table += "\n";
    }
    std::cout << "\n" << table;
    const std::string table_path = runs_dir + "/results-" + preset_name + ".txt";
    write_file_atomically(table_path, table);
    std::cout << "wrote " << table_path << "\n";
  } catch (const std::exception& e) {
    std::cerr << "distill_retinanet: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
