#!/usr/bin/env bash
# The whole experiment on the tiny preset, through the apps as a user runs them: builds the tiny built-in
# dataset if needed, trains the teacher, pretrains ICD's decoder, trains every arm's student, evaluates them
# and prints the table; then resumes finished work (it must redo nothing), makes one arm fail (the others
# must still run), refuses an unfinished teacher without --resume, evaluates a checkpoint
# with apps/evaluate's JSON output and runs apps/detect on validation images and on a corrupt one.
#   tests/end_to_end.sh BUILD_APPS_DIR
set -euo pipefail
apps=$1
work=$(mktemp -d "${TMPDIR:-/tmp}/icd_end_to_end.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"

arms=(none inherit icd icd-no-inherit fitnet fgfi)
"$apps/distill_retinanet" --preset tiny --runs runs --methods "$(IFS=,; echo "${arms[*]}")" --seeds 1 --threads 2 |
  tee out.txt
for name in teacher-tiny $(printf 'student-%s-tiny-s1 ' "${arms[@]}"); do
  for file in config.json metrics.jsonl checkpoint.safetensors eval.json detections.json losses.png ap.png; do
    [[ -s runs/$name/$file ]] || { echo "missing runs/$name/$file"; exit 1; }
  done
done
# Every arm clips the student's gradients alike; only inherit and icd start from the teacher's FPN and head.
for arm in "${arms[@]}"; do
  config=runs/student-$arm-tiny-s1/config.json
  grep -q '"clip_value": 1.0' "$config" || { echo "$arm does not clip like the others"; exit 1; }
  expected=false; [[ $arm == inherit || $arm == icd ]] && expected=true
  grep -q "\"inherit\": $expected" "$config" || { echo "$arm: inherit should be $expected"; exit 1; }
done
grep -q '"warmup_iterations"' runs/student-icd-tiny-s1/config.json || { echo "the ICD config lacks its warm-up"; exit 1; }
for arm in icd icd-no-inherit; do
  for file in attention.png attention.json fake_instance_prior.json; do
    [[ -s runs/student-$arm-tiny-s1/$file ]] || { echo "missing runs/student-$arm-tiny-s1/$file"; exit 1; }
  done
  grep -q '"spec"' runs/student-$arm-tiny-s1/metrics.jsonl || { echo "$arm logged no attention specificity"; exit 1; }
done
# The decoder was pretrained once, beside the teacher, before the students.
pretraining=runs/teacher-tiny/decoder-pretraining
for file in config.json metrics.jsonl decoder.safetensors specificity.json losses.png attention-before.png \
            attention-after.png; do
  [[ -s $pretraining/$file ]] || { echo "missing $pretraining/$file"; exit 1; }
done
grep -q '"aux_conf_constant"' $pretraining/metrics.jsonl || { echo "pretraining logged no constant guess"; exit 1; }
grep -q '"decoder_pretraining": {' runs/student-icd-tiny-s1/config.json || { echo "icd did not record its decoder"; exit 1; }
for row in "student (R18) none" "student (R18) fgfi" "icd over none" "icd over inherit" "after pretraining" \
           "after student-icd-no-inherit-tiny-s1"; do
  grep -q "$row" out.txt || { echo "no '$row' in the table"; exit 1; }
done
grep -q "icd over inherit" runs/results-tiny.txt || { echo "the table was not written to runs/results-tiny.txt"; exit 1; }
[[ -s runs/ap-tiny.png ]] || { echo "no AP-over-time picture of the arms"; exit 1; }
# 6 training steps and 2 evaluations (AP over time at steps 3 and 6)
[[ $(wc -l < runs/student-icd-tiny-s1/metrics.jsonl) -eq 8 ]] || { echo "expected 8 metric records"; exit 1; }
[[ $(grep -c '"val_AP"' runs/student-icd-tiny-s1/metrics.jsonl) -eq 2 ]] || { echo "expected 2 AP records"; exit 1; }

# Resuming finished work redoes nothing: not the teacher (not even with more iterations asked for), not the
# decoder pretraining, not a finished student (not even its evaluation).
teacher_lines=$(wc -l < runs/teacher-tiny/metrics.jsonl)
"$apps/distill_retinanet" --preset tiny --runs runs --methods icd --resume --threads 2 | tee resumed.txt
grep -q "teacher runs/teacher-tiny/checkpoint.safetensors is finished" resumed.txt || { echo "the teacher was not kept"; exit 1; }
[[ $(wc -l < runs/teacher-tiny/metrics.jsonl) -eq $teacher_lines ]] || { echo "resume changed the teacher"; exit 1; }
grep -q "reusing $pretraining/decoder.safetensors" resumed.txt || { echo "the pretrained decoder was not reused"; exit 1; }
grep -q "student-icd-tiny-s1 is finished" resumed.txt || { echo "the finished ICD run was not read back"; exit 1; }
if grep -q "evaluate " resumed.txt; then echo "resume evaluated again"; exit 1; fi
[[ $(wc -l < runs/student-icd-tiny-s1/metrics.jsonl) -eq 8 ]] || { echo "resume changed the metrics"; exit 1; }

# Resuming with other settings is refused (the student), or changes nothing (the finished teacher).
if "$apps/distill_retinanet" --preset tiny --runs runs --methods none --resume --iterations 8 --threads 2 \
    > changed.txt 2> changed_err.txt; then
  echo "a finished run was resumed with other settings"; exit 1
fi
grep -q 'student-none-tiny-s1 was run with another "' changed_err.txt ||
  { echo "the changed setting was not named"; cat changed_err.txt; exit 1; }
grep -q "teacher runs/teacher-tiny/checkpoint.safetensors is finished" changed.txt || { echo "teacher not kept"; exit 1; }
[[ $(wc -l < runs/teacher-tiny/metrics.jsonl) -eq $teacher_lines ]] || { echo "--iterations extended the teacher"; exit 1; }

# A run that fails is reported in the table, and the other arms still run; the exit status says so.
rm -rf runs/student-fitnet-tiny-s1 && touch runs/student-fitnet-tiny-s1  # a file where its folder goes
if "$apps/distill_retinanet" --preset tiny --runs runs --methods fitnet,none --resume --threads 2 > failed.txt 2> failed_err.txt; then
  echo "a failed arm should fail the exit status"; exit 1
fi
grep -q "fitnet seed 1 failed" failed_err.txt || { echo "the failure was not named"; cat failed_err.txt; exit 1; }
grep -q "student (R18) fitnet  *failed" failed.txt || { echo "no failed row in the table"; exit 1; }
grep -q "student (R18) none " failed.txt || { echo "the arm after the failure did not run"; exit 1; }
# An unfinished teacher is continued only when asked.
mkdir -p unfinished && cp -r runs/teacher-tiny unfinished/ && rm unfinished/teacher-tiny/eval.json
if "$apps/distill_retinanet" --preset tiny --runs unfinished --methods none --threads 2 2> unfinished_err.txt; then
  echo "an unfinished teacher was used without --resume"; exit 1
fi
grep -q "unfinished teacher" unfinished_err.txt || { echo "the unfinished teacher was not named"; exit 1; }

"$apps/evaluate" --gt "${ICD_CACHE:-$HOME/.cache/icd}/datasets/builtin-tiny/val.json" \
  --dt runs/student-icd-tiny-s1/detections.json --json eval_again.json
grep -q '"stats"' eval_again.json

# detect: pictures and JSON for readable images; a corrupt one is named, skipped, and fails the exit status
# without losing the others' output.
val_images="${ICD_CACHE:-$HOME/.cache/icd}/datasets/builtin-tiny/val"
first=$(ls "$val_images" | head -1)
head -c 100 "$val_images/$first" > broken.png
if "$apps/detect" --checkpoint runs/student-icd-tiny-s1/checkpoint.safetensors "$val_images/$first" broken.png \
    --out detect 2> detect_errors.txt; then
  echo "detect should fail on broken.png"; exit 1
fi
grep -q "broken.png" detect_errors.txt || { echo "detect did not name the corrupt image"; exit 1; }
[[ -s detect/${first%.*}.png ]] || { echo "detect wrote no picture"; exit 1; }
grep -q '"detections"' detect/detections.json || { echo "detect wrote no detections JSON"; exit 1; }
grep -q "$first" detect/detections.json || { echo "detections.json does not name the image"; exit 1; }
# --device: the default (auto) says which device it chose; a named GPU either runs or, where there is none,
# is refused with the reason.
grep -q "^device: " out.txt || { echo "distill_retinanet did not say which device it uses"; exit 1; }
checkpoint=runs/student-icd-tiny-s1/checkpoint.safetensors
gt="${ICD_CACHE:-$HOME/.cache/icd}/datasets/builtin-tiny/val.json"
if "$apps/evaluate" --gt "$gt" --images "$val_images" --checkpoint "$checkpoint" --device cuda > cuda_out.txt 2> cuda_err.txt; then
  grep -q "^device: cuda:0" cuda_out.txt || { echo "evaluate --device cuda ran without saying so"; exit 1; }
else
  grep -Eq "CUDA is not available|built without CUDA" cuda_err.txt ||
    { echo "evaluate --device cuda failed without the reason:"; cat cuda_err.txt; exit 1; }
fi
"$apps/evaluate" --gt "$gt" --images "$val_images" --checkpoint "$checkpoint" --device cpu > cpu_out.txt
grep -q "^device: cpu$" cpu_out.txt || { echo "evaluate --device cpu did not run on the CPU"; exit 1; }

# Mixed precision: a short f16 teacher run trains with loss scaling and records it.
"$apps/train_teacher" --preset tiny --run runs/teacher-f16 --iterations 2 --precision f16 --threads 2 > f16.txt
grep -q '"precision": "f16"' runs/teacher-f16/config.json || { echo "the f16 run's config lacks its precision"; exit 1; }
grep -q '"loss_scale"' runs/teacher-f16/metrics.jsonl || { echo "the f16 run logged no loss scale"; exit 1; }
echo "end to end: OK"
