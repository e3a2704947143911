// The arms of the distillation experiment (apps/distill_retinanet): how each student is trained.
//
// Every arm of a run starts from the same initial weights (drawn from the seed; a resnet50-cut student's
// backbone from the ImageNet ResNet-50 instead, ExperimentPreset::student_backbone), sees the same data in
// the same order with the same schedule, and clips the student's gradients the same way
// (DistillationRecipe::student_clip_value). The arms differ only in two things:
//   inherit     the student's FPN and head start as copies of the teacher's (the inheriting strategy of
//               spec/icd.md section 5), where shapes allow
//   distiller   what is added to the detection loss: nothing, ICD, FitNet imitation or FGFI imitation
//
//   none            baseline                       inherit         baseline that inherits
//   icd             the paper's method (inherits)  icd-no-inherit  ICD alone
//   fitnet          FitNet imitation               fgfi            FGFI imitation (Wang et al. 2019)
// so `inherit` against `none` measures inheriting, `icd` against `inherit` the instance-conditional loss
// on top of it, and `icd-no-inherit`, `fitnet`, `fgfi` against `none` the distillers alone.
#pragma once
#include <array>
#include <optional>
#include <string>
#include <vector>

#include "apps/common/experiment.h"

namespace icd::app {

enum class DistillerKind { none, icd, fitnet, fgfi };

struct StudentArm {
  std::string name;
  DistillerKind distiller = DistillerKind::none;
  bool inherit = false;
  std::string description;
};

const std::vector<StudentArm>& student_arms();
std::string student_arm_names();  // "none, inherit, ...", for messages
// The arm called `name`; throws std::invalid_argument listing the names otherwise.
const StudentArm& find_student_arm(const std::string& name);
// "none,icd" -> the arms, in order, each once; throws naming an unknown or repeated one.
std::vector<StudentArm> parse_student_arms(const std::string& comma_separated);

// What every arm of an experiment shares.
struct StudentRunContext {
  const ExperimentPreset* preset = nullptr;
  const DatasetSplits* data = nullptr;
  RetinaNet* teacher = nullptr;
  std::string teacher_path;
  const FakeInstancePrior* prior = nullptr;
  const PretrainedDecoder* pretrained_decoder = nullptr;  // null: ICD's decoder starts untrained
  TrainOptions training;                                  // the preset's, with device, precision, resume
  std::string runs_dir;
};

struct ArmOutcome {
  std::string run_dir;
  uint64_t seed = 0;
  std::array<double, 6> row{};                      // AP, AP50, AP75, APs, APm, APl (percent)
  std::optional<AttentionSpecificity> specificity;  // ICD arms: on the validation images, after training
  bool reused = false;  // a finished run read back (with --resume), not trained again
};

// runs/student-<arm>-<preset>-s<seed>, with student_folder_tag before the seed for a student other than
// the presets' resnet18 (runs/student-icd-default-r50-3433-s1). With context.training.resume, a finished run
// (eval.json present) is read back and nothing is trained or evaluated again; an unfinished one continues
// from its checkpoint; either only when its config.json asked the same (preset, arm, seed, teacher,
// student model and backbone, training and distillation settings, precision), otherwise it throws saying
// which differs. Without resume, the folder
// is emptied first, so nothing of an earlier run (a checkpoint, a result) outlives a failure of this one.
std::string student_run_dir(const StudentRunContext& context, const StudentArm& arm, uint64_t seed);
ArmOutcome run_student_arm(const StudentArm& arm, uint64_t seed, const StudentRunContext& context);

}  // namespace icd::app
