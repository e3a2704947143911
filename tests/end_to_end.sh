#!/usr/bin/env bash
# The whole experiment on the tiny preset, through the apps as a user runs them: builds the tiny built-in
# dataset if needed, trains the teacher and the baseline, ICD and FitNet students, evaluates them and
# prints the table; then resumes a finished run (it must do no more training), evaluates a checkpoint
# with apps/evaluate's JSON output and runs apps/detect on validation images and on a corrupt one.
#   tests/end_to_end.sh BUILD_APPS_DIR
set -euo pipefail
apps=$1
work=$(mktemp -d "${TMPDIR:-/tmp}/icd_end_to_end.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"

"$apps/distill_retinanet" --preset tiny --runs runs --methods none,icd,fitnet --seeds 1 --threads 2 | tee out.txt
for name in teacher-tiny student-none-tiny-s1 student-icd-tiny-s1 student-fitnet-tiny-s1; do
  for file in config.json metrics.jsonl checkpoint.safetensors eval.json detections.json losses.png ap.png; do
    [[ -s runs/$name/$file ]] || { echo "missing runs/$name/$file"; exit 1; }
  done
done
[[ -s runs/student-icd-tiny-s1/attention.png ]] || { echo "missing the ICD attention pictures"; exit 1; }
grep -q "student (R18) icd" out.txt || { echo "no ICD row in the table"; exit 1; }
grep -q "icd gain" out.txt || { echo "no gain row in the table"; exit 1; }
grep -q "icd gain" runs/results-tiny.txt || { echo "the table was not written to runs/results-tiny.txt"; exit 1; }
# 6 training steps and 2 evaluations (AP over time at steps 3 and 6)
[[ $(wc -l < runs/student-icd-tiny-s1/metrics.jsonl) -eq 8 ]] || { echo "expected 8 metric records"; exit 1; }
[[ $(grep -c '"val_AP"' runs/student-icd-tiny-s1/metrics.jsonl) -eq 2 ]] || { echo "expected 2 AP records"; exit 1; }

# Resuming a finished run trains nothing more and keeps the metrics.
"$apps/distill_retinanet" --preset tiny --runs runs --methods icd --resume --threads 2 | tee resumed.txt
grep -q "resuming runs/student-icd-tiny-s1 from iteration 6" resumed.txt || { echo "resume did not pick up"; exit 1; }
[[ $(wc -l < runs/student-icd-tiny-s1/metrics.jsonl) -eq 8 ]] || { echo "resume changed the metrics"; exit 1; }

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
