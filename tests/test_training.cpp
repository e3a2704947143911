// The training loop end to end on a tiny built-in dataset: a run that is interrupted and resumed ends
// bit-for-bit where an uninterrupted run ends (model, optimizer, loss normaliser, data order, and the ICD
// modules with their AdamW); a NaN loss stops the run with a message and keeps the last good checkpoint;
// evaluation produces COCO stats; a checkpoint alone rebuilds its model.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <map>
#include <optional>

#include "apps/common/decoder_pretraining.h"
#include "apps/common/experiment.h"
#include "apps/common/run_folder.h"
#include "apps/common/trainer.h"
#include "datasets/builtin_dataset.h"
#include "distill/objectives.h"
#include "engine/checkpoint.h"
#include "engine/factory.h"
#include "engine/ops/elementwise.h"
#include "temp_dir.h"

using namespace icd;
using namespace icd::app;
namespace fs = std::filesystem;

namespace {

// A small detector that trains in well under a second per step on 128 px images.
RetinaNetConfig small_config(int64_t num_classes) {
  RetinaNetConfig c;
  c.num_classes = num_classes;
  c.backbone = ResNetConfig{.depth = 18, .norm = NormKind::batch_norm, .freeze_at = 0, .num_classes = 0};
  c.fpn_channels = 16;
  c.head_convs = 1;
  return c;
}

TrainOptions small_options(int64_t iterations) {
  TrainOptions o;
  o.iterations = iterations;
  o.batch_size = 2;
  o.num_workers = 1;
  o.checkpoint_every = 3;
  o.warmup = {.factor = 0.1, .iters = 2};
  o.lr_step_fractions = {4.0 / static_cast<double>(iterations)};  // drops after iteration 4
  o.transform.short_edge_sizes = {96, 128};
  o.transform.max_long_edge = 160;
  return o;
}

struct TinyData {
  testing::TempDir dir{"training"};
  std::unique_ptr<CocoDataset> train, val;
  bool available = false;

  TinyData() {
    BuiltinDatasetConfig config = builtin_dataset_preset("tiny");
    if (!fs::exists(config.sources_dir / "fashion-mnist" / ".complete") ||
        !fs::exists(config.sources_dir / "backgrounds" / ".complete")) {
      MESSAGE("SKIPPED: dataset sources not cached in " << config.sources_dir.string()
                                                        << "; run scripts/fetch_dataset_sources.sh");
      WARN_MESSAGE(false, "training test skipped: no dataset sources");
      return;
    }
    config.output_dir = dir.path() / "data";
    BuiltinDataset d = build_builtin_dataset(config);
    train = std::make_unique<CocoDataset>(CocoDataset::load(d.train_json.string(), d.train_images.string()));
    val = std::make_unique<CocoDataset>(CocoDataset::load(d.val_json.string(), d.val_images.string()));
    available = true;
  }
};

NamedTensors checkpoint_tensors(const std::string& path) {
  return load_checkpoint(path).tensors;
}

void check_identical(const NamedTensors& a, const NamedTensors& b) {
  REQUIRE(a.size() == b.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    INFO(a[i].first);
    REQUIRE(a[i].first == b[i].first);
    CHECK(a[i].second.to_vector<double>() == b[i].second.to_vector<double>());
  }
}

// Returns a NaN loss from iteration `bad` on.
class NanObjective : public TrainingObjective {
 public:
  explicit NanObjective(int64_t bad) : bad_(bad) {}
  NamedLosses losses(RetinaNet& model, const TrainingBatch& batch, int64_t iteration) override {
    NamedLosses l = inner_.losses(model, batch, iteration);
    if (iteration >= bad_) l[0].second = mul(l[0].second, NAN);
    return l;
  }

 private:
  DetectionObjective inner_;
  int64_t bad_;
};

}  // namespace

TEST_CASE("a resumed run ends exactly where an uninterrupted run ends") {
  TinyData data;
  if (!data.available) return;
  const RetinaNetConfig config = small_config(data.train->num_classes());

  RunFolder straight((data.dir.path() / "straight").string());
  {
    Generator gen(3);
    RetinaNet model(config, gen);
    DetectionObjective objective;
    train_detector(model, objective, *data.train, small_options(6), straight);
  }
  RunFolder interrupted((data.dir.path() / "interrupted").string());
  {
    Generator gen(3);
    RetinaNet model(config, gen);
    DetectionObjective objective;
    train_detector(model, objective, *data.train, small_options(3), interrupted);
  }
  {
    Generator gen(99);  // different initial weights: everything must come from the checkpoint
    RetinaNet model(config, gen);
    DetectionObjective objective;
    TrainOptions options = small_options(6);
    options.resume = true;
    TrainResult r = train_detector(model, objective, *data.train, options, interrupted);
    CHECK(r.iterations == 3);
  }
  check_identical(checkpoint_tensors(straight.file("checkpoint.safetensors")),
                  checkpoint_tensors(interrupted.file("checkpoint.safetensors")));
  std::vector<nlohmann::json> a = straight.read_metrics(), b = interrupted.read_metrics();
  REQUIRE(a.size() == 6);
  REQUIRE(b.size() == 6);
  for (std::size_t i = 0; i < a.size(); ++i) {
    CHECK(a[i]["step"] == b[i]["step"]);
    CHECK(a[i]["loss"] == b[i]["loss"]);
  }
}

TEST_CASE("ICD: resuming restores the distiller and its AdamW exactly") {
  TinyData data;
  if (!data.available) return;
  const int64_t K = data.train->num_classes();
  Generator teacher_gen(5);
  RetinaNet teacher(small_config(K), teacher_gen);
  FakeInstancePrior prior = training_prior(*data.train);
  IcdConfig icd{.num_classes = K,
                .hidden_dim = 16,
                .student_channels = 16,
                .num_heads = 2,
                .ffn_dim = 32,
                .warmup_iterations = 2};
  auto run = [&](const std::string& name, int64_t iterations, bool resume, uint64_t init_seed) {
    RunFolder folder((data.dir.path() / name).string());
    Generator gen(init_seed);
    RetinaNet student(small_config(K), gen);
    IcdObjective objective(teacher, icd, prior, DistillerOptimizerConfig{.iterations = 6}, 7);
    TrainOptions options = small_options(iterations);
    options.resume = resume;
    options.clip_value = 1.0;
    train_detector(student, objective, *data.train, options, folder);
    return folder.file("checkpoint.safetensors");
  };
  std::string straight = run("icd-straight", 6, false, 1);
  run("icd-interrupted", 3, false, 1);
  std::string resumed = run("icd-interrupted", 6, true, 2);
  NamedTensors a = checkpoint_tensors(straight), b = checkpoint_tensors(resumed);
  bool has_distiller = false;
  for (const auto& [name, t] : a)
    has_distiller |= name.starts_with("objective.distiller.");
  CHECK(has_distiller);
  check_identical(a, b);
}

TEST_CASE("a NaN loss stops the run, names the iteration, and keeps the last good checkpoint") {
  TinyData data;
  if (!data.available) return;
  RunFolder run((data.dir.path() / "nan").string());
  Generator gen(4);
  RetinaNet model(small_config(data.train->num_classes()), gen);
  NanObjective objective(4);
  try {
    train_detector(model, objective, *data.train, small_options(6), run);
    FAIL("expected the NaN to stop training");
  } catch (const std::runtime_error& e) {
    std::string msg = e.what();
    CHECK(msg.find("iteration 4") != std::string::npos);
    CHECK(msg.find("nan") != std::string::npos);
    CHECK(msg.find("checkpoint.safetensors") != std::string::npos);
  }
  Checkpoint last = load_checkpoint(run.file("checkpoint.safetensors"));
  CHECK(last.metadata.at("iteration") == "3");
  CHECK(run.read_metrics().size() == 4);  // iterations 1-4 were logged before the NaN at 5
}

TEST_CASE("evaluation gives COCO stats, and a checkpoint alone rebuilds its model") {
  TinyData data;
  if (!data.available) return;
  RunFolder run((data.dir.path() / "eval").string());
  Generator gen(6);
  RetinaNet model(small_config(data.train->num_classes()), gen);
  DetectionObjective objective;
  train_detector(model, objective, *data.train, small_options(3), run);
  EvalOptions eval{.batch_size = 2, .num_workers = 1, .detections_path = run.file("detections.json")};
  eval.transform.short_edge_sizes = {128};
  eval.transform.max_long_edge = 160;
  CocoEvalResult result = evaluate_detector(model, *data.val, eval);
  for (double s : result.stats)
    CHECK((s == -1.0 || (s >= 0.0 && s <= 1.0)));
  CHECK(fs::exists(run.file("detections.json")));

  std::optional<DetectorUsage> usage;
  std::unique_ptr<RetinaNet> reloaded = load_retinanet(run.file("checkpoint.safetensors"), &usage);
  CHECK(to_json(reloaded->config()) == to_json(model.config()));
  REQUIRE(usage.has_value());  // the class names and test transform travel with the weights
  REQUIRE(static_cast<int>(usage->class_names.size()) == data.train->num_classes());
  CHECK(usage->class_names[0] == data.train->class_name(0));
  CHECK(usage->test_transform.short_edge_sizes == TransformConfig::test().short_edge_sizes);
  NamedTensors a = model.state_dict(), b = reloaded->state_dict();
  REQUIRE(a.size() == b.size());
  for (std::size_t i = 0; i < a.size(); ++i)
    CHECK(a[i].second.to_vector<double>() == b[i].second.to_vector<double>());
  CocoEvalResult again = evaluate_detector(*reloaded, *data.val, eval);
  CHECK(again.stats == result.stats);
}

TEST_CASE("AP over time: the periodic evaluation is logged at its steps and drawn") {
  TinyData data;
  if (!data.available) return;
  RunFolder run((data.dir.path() / "ap").string());
  Generator gen(7);
  RetinaNet model(small_config(data.train->num_classes()), gen);
  DetectionObjective objective;
  TrainOptions options = small_options(6);
  options.eval_every = 4;
  std::vector<int> calls;
  options.periodic_eval = [&](RetinaNet& m) -> std::vector<std::pair<std::string, double>> {
    m.eval();  // as evaluate_detector does; training must switch back to train mode
    calls.push_back(static_cast<int>(calls.size()));
    return {{"val_AP", 10.0 * static_cast<double>(calls.size())}};
  };
  train_detector(model, objective, *data.train, options, run);
  CHECK(calls.size() == 2);  // after step 4 and at the end (step 6)
  CHECK(model.is_training());
  std::vector<std::pair<int64_t, double>> logged;
  for (const nlohmann::json& r : run.read_metrics())
    if (r.contains("val_AP")) logged.emplace_back(r["step"].get<int64_t>(), r["val_AP"].get<double>());
  CHECK(logged == std::vector<std::pair<int64_t, double>>{{4, 10.0}, {6, 20.0}});
  CHECK(fs::file_size(run.file("ap.png")) > 0);
}

TEST_CASE("detector usage metadata: round trip, and a malformed entry names the file and the field") {
  DetectorUsage usage{.class_names = {"cat", "dog"}, .test_transform = TransformConfig::test()};
  usage.test_transform.short_edge_sizes = {256};
  usage.test_transform.max_long_edge = 320;
  usage.test_transform.normalize = NormalizeConfig::torchvision_rgb();
  const std::map<std::string, std::string> metadata = usage_metadata(usage);
  std::optional<DetectorUsage> back = read_usage(metadata, "a.safetensors");
  REQUIRE(back.has_value());
  CHECK(back->class_names == usage.class_names);
  CHECK(back->test_transform.short_edge_sizes == std::vector<int>{256});
  CHECK(back->test_transform.max_long_edge == 320);
  CHECK(back->test_transform.normalize.order == ChannelOrder::rgb);
  CHECK(back->test_transform.normalize.std == usage.test_transform.normalize.std);

  CHECK_FALSE(read_usage({}, "old.safetensors").has_value());
  std::map<std::string, std::string> bad = metadata;
  bad["test_transform"] = R"({"short_edge_sizes": [256]})";
  CHECK_THROWS_WITH(read_usage(bad, "b.safetensors"),
                    doctest::Contains("b.safetensors: bad metadata test_transform"));
  bad.erase("test_transform");
  CHECK_THROWS_WITH(read_usage(bad, "c.safetensors"), doctest::Contains("c.safetensors"));
}

TEST_CASE("mixed precision: bf16 trains; f16 scales the loss, checkpoints the scale and resumes exactly") {
  TinyData data;
  if (!data.available) return;
  const RetinaNetConfig config = small_config(data.train->num_classes());
  auto run = [&](const std::string& name, DType precision, int64_t iterations, bool resume) {
    RunFolder folder((data.dir.path() / name).string());
    Generator gen(3);
    RetinaNet model(config, gen);
    DetectionObjective objective;
    TrainOptions options = small_options(iterations);
    options.precision = precision;
    options.resume = resume;
    train_detector(model, objective, *data.train, options, folder);
    return folder;
  };

  RunFolder bf16 = run("bf16", DType::bf16, 3, false);
  for (const nlohmann::json& record : bf16.read_metrics()) {
    CHECK(std::isfinite(record["loss"].get<double>()));
    CHECK_FALSE(record.contains("loss_scale"));  // bf16 needs no scaling
  }

  RunFolder straight = run("f16-straight", DType::f16, 6, false);
  run("f16-interrupted", DType::f16, 3, false);
  RunFolder resumed = run("f16-interrupted", DType::f16, 6, true);
  const NamedTensors a = checkpoint_tensors(straight.file("checkpoint.safetensors"));
  bool has_scale = false;
  for (const auto& [name, t] : a)
    has_scale |= name == "grad_scaler.scale";
  CHECK(has_scale);
  check_identical(a, checkpoint_tensors(resumed.file("checkpoint.safetensors")));
  for (const nlohmann::json& record : straight.read_metrics()) {
    CHECK(std::isfinite(record["loss"].get<double>()));
    CHECK(record["loss_scale"].get<double>() > 0);
  }
  // The f16 run computed differently from an f32 one: its first loss is not the f32 loss.
  RunFolder f32 = run("f32", DType::f32, 1, false);
  CHECK(f32.read_metrics()[0]["loss"] != straight.read_metrics()[0]["loss"]);
}

TEST_CASE("decoder pretraining trains the encoder, decoder and predictor alone, and is cached per request") {
  TinyData data;
  if (!data.available) return;
  const int64_t K = data.train->num_classes();
  Generator teacher_gen(5);
  RetinaNet teacher(small_config(K), teacher_gen);
  const IcdConfig icd{
      .num_classes = K, .hidden_dim = 16, .student_channels = 16, .num_heads = 2, .ffn_dim = 32};
  DecoderPretrainingOptions options;
  options.iterations = 4;
  options.batch_size = 2;
  options.num_workers = 1;
  options.log_specificity_every = 2;
  options.validation_images = 2;
  options.transform = small_options(1).transform;
  options.test_transform.short_edge_sizes = {128};
  options.test_transform.max_long_edge = 160;
  const nlohmann::json teacher_id{{"path", "teacher.safetensors"}, {"bytes", 1}};
  const std::string dir = (data.dir.path() / "pretraining").string();

  Generator gen(1);
  InstanceConditionalDistiller distiller(icd, training_prior(*data.train), gen);
  const NamedTensors initial = distiller.state_dict();
  std::map<std::string, std::vector<double>> before;
  for (const auto& [name, t] : initial)
    before[name] = t.to_vector<double>();
  const PretrainedDecoder first =
      pretrain_decoder(distiller, teacher, *data.train, *data.val, options, teacher_id, dir);
  CHECK_FALSE(first.reused);
  std::map<std::string, bool> part_changed;
  for (const auto& [name, t] : distiller.state_dict()) {
    const std::string part = name.substr(0, name.find('.'));
    const bool changed = t.to_vector<double>() != before[name];
    part_changed[part] = part_changed[part] || changed;
  }
  CHECK(part_changed["encoder"]);
  CHECK(part_changed["decoder"]);
  CHECK(part_changed["predictor"]);
  CHECK_FALSE(part_changed["student_adapter"]);  // the student's side is not pretrained
  for (const char* file : {"config.json", "metrics.jsonl", "decoder.safetensors", "specificity.json",
                           "losses.png", "attention-before.png", "attention-after.png"})
    CHECK(fs::exists(fs::path(dir) / file));
  const std::vector<nlohmann::json> metrics = RunFolder(dir).read_metrics();
  REQUIRE(metrics.size() == 4);
  CHECK_FALSE(metrics[0].contains("spec"));
  CHECK(metrics[1].contains("spec"));
  CHECK(metrics[3].contains("spec_p3"));
  // The constant guess at about 1 real : 5 fake queries: -(1/6 ln 1/6 + 5/6 ln 5/6) = 0.451.
  CHECK(metrics[0].at("aux_conf_constant").get<double>() == doctest::Approx(0.4506).epsilon(0.05));
  CHECK(first.before.num_queries > 0);
  CHECK(first.after.num_queries == first.before.num_queries);

  // The same request is read back into a differently initialised distiller, weights and numbers alike.
  Generator other_gen(2);
  InstanceConditionalDistiller again(icd, training_prior(*data.train), other_gen);
  const PretrainedDecoder second =
      pretrain_decoder(again, teacher, *data.train, *data.val, options, teacher_id, dir);
  CHECK(second.reused);
  CHECK(second.after.overall == first.after.overall);
  CHECK(second.final_aux_conf == first.final_aux_conf);
  const NamedTensors trained = distiller.state_dict(), loaded = again.state_dict();
  for (std::size_t i = 0; i < trained.size(); ++i)
    if (!trained[i].first.starts_with("student_adapter.")) {
      INFO(trained[i].first);
      CHECK(trained[i].second.to_vector<double>() == loaded[i].second.to_vector<double>());
    }

  // Another learning rate, or another teacher, trains again.
  DecoderPretrainingOptions faster = options;
  faster.lr = 2e-3;
  Generator third_gen(3);
  InstanceConditionalDistiller third(icd, training_prior(*data.train), third_gen);
  CHECK_FALSE(pretrain_decoder(third, teacher, *data.train, *data.val, faster, teacher_id, dir).reused);
  nlohmann::json other_teacher = teacher_id;
  other_teacher["bytes"] = 2;
  CHECK_FALSE(pretrain_decoder(third, teacher, *data.train, *data.val, faster, other_teacher, dir).reused);
  CHECK(pretrain_decoder(third, teacher, *data.train, *data.val, faster, other_teacher, dir).reused);
  CHECK(RunFolder(dir).read_metrics().size() == 4);  // the folder holds one pretraining's records
  CHECK(metrics[3].at("teacher_batches").get<int64_t>() == 4);

  // Two steps per teacher batch: half the teacher forwards; a warm-up starts the learning rate at lr / 1000.
  DecoderPretrainingOptions reusing = options;
  reusing.steps_per_batch = 2;
  reusing.warmup_iterations = 2;
  Generator fourth_gen(4);
  InstanceConditionalDistiller fourth(icd, training_prior(*data.train), fourth_gen);
  CHECK_FALSE(pretrain_decoder(fourth, teacher, *data.train, *data.val, reusing, teacher_id, dir).reused);
  const std::vector<nlohmann::json> reused_metrics = RunFolder(dir).read_metrics();
  REQUIRE(reused_metrics.size() == 4);
  CHECK(reused_metrics[1].at("teacher_batches").get<int64_t>() == 1);
  CHECK(reused_metrics[3].at("teacher_batches").get<int64_t>() == 2);
  CHECK(reused_metrics[0].at("lr").get<double>() == doctest::Approx(reusing.lr * 0.001));
  // Requests made before these options existed (no warm-up, one step per batch) still compare equal.
  CHECK_FALSE(options.to_json().contains("steps_per_batch"));
  CHECK_FALSE(options.to_json().contains("warmup_iterations"));
  CHECK(reusing.to_json().at("steps_per_batch") == 2);
  // Bad options fail before anything in the folder is touched.
  const auto weights_time = fs::last_write_time(fs::path(dir) / "decoder.safetensors");
  reusing.steps_per_batch = 0;
  CHECK_THROWS_AS(pretrain_decoder(fourth, teacher, *data.train, *data.val, reusing, teacher_id, dir),
                  std::invalid_argument);
  reusing.steps_per_batch = 1;
  reusing.warmup_iterations = reusing.iterations;  // the cosine would end before the warm-up does
  CHECK_THROWS_AS(pretrain_decoder(fourth, teacher, *data.train, *data.val, reusing, teacher_id, dir),
                  std::invalid_argument);
  CHECK(fs::last_write_time(fs::path(dir) / "decoder.safetensors") == weights_time);
}
