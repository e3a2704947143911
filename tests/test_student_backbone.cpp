// The student's backbone choice: a cut ResNet-50 (fewer blocks per stage) keeps ResNet-50's names for the
// blocks it has, starts from the first blocks of each stage of a whole ResNet-50's weights through the path
// the experiment uses for ImageNet (load_imagenet_backbone), and, having the teacher's C3..C5 channels,
// inherits the teacher's whole FPN; set_student names its choices and refuses what it cannot build.
#include <doctest/doctest.h>

#include <algorithm>
#include <map>
#include <set>

#include "apps/common/experiment.h"
#include "distill/objectives.h"
#include "engine/checkpoint.h"
#include "engine/factory.h"
#include "models/resnet.h"
#include "temp_dir.h"

using namespace icd;
using namespace icd::app;

namespace {

// The imported ImageNet ResNet-50's configuration (apps/import_weights), cut to `blocks` when given.
ResNetConfig keras_resnet50(std::vector<int> blocks, int64_t num_classes) {
  return ResNetConfig{.depth = 50,
                      .blocks = std::move(blocks),
                      .stride_on_3x3 = false,
                      .conv_bias = true,
                      .norm = NormKind::frozen_batch_norm,
                      .norm_eps = 1e-3,
                      .num_classes = num_classes};
}

std::vector<std::string> names_of(const NamedTensors& tensors) {
  std::vector<std::string> names;
  for (const auto& [name, t] : tensors)
    names.push_back(name);
  return names;
}

// The block index of "layerS.I.*" in stage S (1..4), -1 for other names.
int block_in_stage(const std::string& name, int stage) {
  const std::string prefix = "layer" + std::to_string(stage) + ".";
  if (!name.starts_with(prefix)) return -1;
  return std::stoi(name.substr(prefix.size(), name.find('.', prefix.size()) - prefix.size()));
}

std::map<std::string, Tensor> by_name(const NamedTensors& tensors) {
  return {tensors.begin(), tensors.end()};
}

ExperimentPreset tiny_preset() {
  return experiment_preset("tiny", 3);
}

}  // namespace

TEST_CASE("a cut ResNet-50 has the names of the whole one's first blocks, and its widths") {
  Generator gen(3);
  const std::vector<int> blocks{3, 4, 3, 3};
  ResNet full(keras_resnet50({}, 0), gen);
  ResNet cut(keras_resnet50(blocks, 0), gen);
  const std::vector<std::string> full_names = names_of(full.state_dict()),
                                 cut_names = names_of(cut.state_dict());
  std::vector<std::string> expected;
  for (const std::string& name : full_names) {
    bool kept = true;
    for (int stage = 1; stage <= 4; ++stage)
      kept = kept && block_in_stage(name, stage) < blocks[static_cast<std::size_t>(stage - 1)];
    if (kept) expected.push_back(name);
  }
  CHECK(cut_names == expected);
  CHECK(cut_names.size() < full_names.size());
  for (int stage = 1; stage <= 4; ++stage) {
    std::set<int> seen;
    for (const std::string& name : cut_names)
      if (block_in_stage(name, stage) >= 0) seen.insert(block_in_stage(name, stage));
    INFO("layer" << stage);
    CHECK(seen.size() == static_cast<std::size_t>(blocks[static_cast<std::size_t>(stage - 1)]));
  }
  CHECK(std::find(cut_names.begin(), cut_names.end(), "layer3.2.conv3.weight") != cut_names.end());
  CHECK(std::find(cut_names.begin(), cut_names.end(), "layer3.3.conv1.weight") == cut_names.end());
  CHECK(cut.stage_channels() == full.stage_channels());
  const ResNetOutput a = cut.forward(zeros({1, 3, 64, 96})), b = full.forward(zeros({1, 3, 64, 96}));
  CHECK(a.c2.shape() == b.c2.shape());
  CHECK(a.c3.shape() == b.c3.shape());
  CHECK(a.c4.shape() == Shape{1, 1024, 4, 6});
  CHECK(a.c5.shape() == Shape{1, 2048, 2, 3});

  CHECK_THROWS_WITH_AS(ResNet(keras_resnet50({3, 4, 3}, 0), gen), doctest::Contains("4 positive counts"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(ResNet(keras_resnet50({3, 0, 3, 3}, 0), gen), doctest::Contains("{3, 0, 3, 3}"),
                       std::invalid_argument);
}

TEST_CASE("the ImageNet path loads a whole ResNet-50's first blocks into a cut backbone") {
  testing::TempDir dir("student_backbone");
  Generator gen(5);
  // A stand-in for the imported ImageNet file: a whole ResNet-50 v1 with its classifier, every tensor
  // random, so that each tensor the cut backbone takes can be told from its own initialisation.
  ResNet full(keras_resnet50({}, 10), gen);
  NamedTensors file;
  for (const auto& [name, t] : full.state_dict())
    file.emplace_back(name, rand(t.shape(), gen));
  const std::string path = dir.file("resnet50.safetensors");
  save_checkpoint(path, file);

  ExperimentPreset preset = tiny_preset();
  set_student(preset, "resnet50-cut", {2, 3, 1, 2});
  RetinaNet student(preset.student, gen);
  const std::map<std::string, Tensor> from_file = by_name(file);
  const NamedTensors before = student.backbone_body().state_dict();
  CHECK(before.front().second.to_vector<double>() != from_file.at(before.front().first).to_vector<double>());
  REQUIRE(load_imagenet_backbone(student, path));
  const NamedTensors loaded = student.backbone_body().state_dict();
  // The backbone holds exactly the file's tensors of the kept blocks ({2, 3, 1, 2}), stem included.
  std::set<std::string> expected;
  const std::vector<int> kept{2, 3, 1, 2};
  for (const auto& [name, t] : file) {
    if (name.starts_with("fc.")) continue;
    bool keep = true;
    for (int stage = 1; stage <= 4; ++stage) {
      const int block = block_in_stage(name, stage);
      if (block >= 0) keep = block < kept[static_cast<std::size_t>(stage - 1)];
    }
    if (keep) expected.insert(name);
  }
  const std::vector<std::string> loaded_names = names_of(loaded);
  CHECK(std::set<std::string>(loaded_names.begin(), loaded_names.end()) == expected);
  CHECK(loaded.size() == expected.size());
  for (const auto& [name, t] : loaded) {
    INFO(name);
    REQUIRE(from_file.count(name));
    CHECK(t.to_vector<double>() == from_file.at(name).to_vector<double>());
  }

  // A file that lacks tensors the cut backbone has (here: all but the stem's) is refused, naming the file
  // and the tensors.
  NamedTensors incomplete;
  for (const auto& [name, t] : file)
    if (!name.starts_with("layer")) incomplete.emplace_back(name, t);
  const std::string incomplete_path = dir.file("incomplete.safetensors");
  save_checkpoint(incomplete_path, incomplete);
  RetinaNet other(preset.student, gen);
  std::string error;
  try {
    load_imagenet_backbone(other, incomplete_path);
  } catch (const std::runtime_error& e) {
    error = e.what();
  }
  CHECK(error.find("incomplete.safetensors does not fit the backbone") != std::string::npos);
  CHECK(error.find("missing: layer3.0.conv2.weight") != std::string::npos);

  // More blocks than ResNet-50 has cannot come from it.
  RetinaNetConfig longer = preset.student;
  longer.backbone.blocks = {3, 4, 7, 3};
  RetinaNet too_long(longer, gen);
  CHECK_FALSE(load_imagenet_backbone(too_long, path));
}

TEST_CASE("a resnet50-cut student inherits the teacher's whole FPN, a resnet18 one only what fits") {
  ExperimentPreset preset = tiny_preset();
  Generator gen(7);
  RetinaNet teacher(preset.teacher, gen);
  const std::map<std::string, Tensor> teacher_state = by_name(teacher.state_dict());

  set_student(preset, "resnet50-cut");
  RetinaNet cut(preset.student, gen);
  const std::vector<std::string> cut_copied = inherit_from_teacher(cut, teacher);
  std::vector<std::string> fpn_and_head;
  for (const auto& [name, t] : cut.state_dict())
    if (name.starts_with("backbone.fpn.") || name.starts_with("head.")) fpn_and_head.push_back(name);
  CHECK(cut_copied == fpn_and_head);
  for (const std::string name :
       {"backbone.fpn.inner_blocks.0.0.weight", "backbone.fpn.inner_blocks.2.0.weight",
        "backbone.fpn.extra_blocks.p6.weight", "backbone.fpn.layer_blocks.1.0.weight",
        "head.classification_head.cls_logits.weight"}) {
    INFO(name);
    REQUIRE(std::find(cut_copied.begin(), cut_copied.end(), name) != cut_copied.end());
    CHECK(by_name(cut.state_dict()).at(name).to_vector<double>() ==
          teacher_state.at(name).to_vector<double>());
  }

  set_student(preset, "resnet18");
  RetinaNet r18(preset.student, gen);
  const std::vector<std::string> r18_copied = inherit_from_teacher(r18, teacher);
  CHECK(r18_copied.size() < cut_copied.size());
  for (const std::string name :
       {"backbone.fpn.inner_blocks.0.0.weight", "backbone.fpn.extra_blocks.p6.weight"})
    CHECK(std::find(r18_copied.begin(), r18_copied.end(), name) == r18_copied.end());
  CHECK(std::find(r18_copied.begin(), r18_copied.end(), "backbone.fpn.layer_blocks.1.0.weight") !=
        r18_copied.end());
}

TEST_CASE("set_student: the choices, their configs and JSON, and clear refusals") {
  ExperimentPreset preset = tiny_preset();
  CHECK(preset.student_backbone.name == "resnet18");
  CHECK(preset.student.backbone.depth == 18);
  CHECK(student_backbone_label(preset) == "R18");
  CHECK(student_folder_tag(preset).empty());
  const nlohmann::json r18_json = to_json(preset.student);
  CHECK_FALSE(r18_json.at("backbone").contains("blocks"));  // as before the choice existed

  set_student(preset, "resnet50-cut");
  const ResNetConfig& b = preset.student.backbone;
  CHECK(b.depth == 50);
  CHECK(b.blocks == std::vector<int>{3, 4, 3, 3});
  CHECK_FALSE(b.stride_on_3x3);
  CHECK(b.conv_bias);
  CHECK(b.norm == NormKind::frozen_batch_norm);
  CHECK(b.norm_eps == 1e-3);
  CHECK(b.freeze_at == 2);
  CHECK(preset.student_backbone.imagenet);
  CHECK(preset.student.fpn_channels == preset.teacher.fpn_channels);
  CHECK(student_backbone_label(preset) == "R50-3433");
  CHECK(student_folder_tag(preset) == "-r50-3433");
  // The run's request holds the model config: the two backbones are different requests.
  CHECK(to_json(preset.student) != r18_json);
  CHECK(retinanet_config_from_json(to_json(preset.student)).backbone.blocks == std::vector<int>{3, 4, 3, 3});
  CHECK(retinanet_config_from_json(r18_json).backbone.blocks.empty());
  set_student(preset, "resnet50-cut", {1, 2, 6, 1});
  CHECK(preset.student.backbone.blocks == std::vector<int>{1, 2, 6, 1});

  CHECK_THROWS_WITH_AS(set_student(preset, "resnet34"),
                       doctest::Contains("unknown student \"resnet34\" (resnet18, resnet50-cut)"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(set_student(preset, "resnet50-cut", {3, 4, 7, 3}),
                       doctest::Contains("got {3, 4, 7, 3}"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(set_student(preset, "resnet50-cut", {3, 4, 3}), doctest::Contains("4 counts"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(set_student(preset, "resnet50-cut", {0, 4, 3, 3}), doctest::Contains("from 1 to"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(set_student(preset, "resnet18", {2, 2, 2, 2}), doctest::Contains("no block counts"),
                       std::invalid_argument);
  // A refused choice leaves the preset as it was.
  CHECK(preset.student.backbone.blocks == std::vector<int>{1, 2, 6, 1});
}
