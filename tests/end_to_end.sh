#!/usr/bin/env bash
# The whole experiment on the tiny preset, through the apps as a user runs them: builds the tiny built-in
# dataset if needed, trains the teacher and the baseline, ICD and FitNet students, evaluates them and
# prints the table; then resumes a finished run (it must do no more training) and evaluates a checkpoint
# with apps/evaluate's JSON output.
#   tests/end_to_end.sh BUILD_APPS_DIR
set -euo pipefail
apps=$1
work=$(mktemp -d "${TMPDIR:-/tmp}/icd_end_to_end.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"

"$apps/distill_retinanet" --preset tiny --runs runs --methods none,icd,fitnet --threads 2 | tee out.txt
for name in teacher-tiny student-none-tiny-s1 student-icd-tiny-s1 student-fitnet-tiny-s1; do
  for file in config.json metrics.jsonl checkpoint.safetensors eval.json detections.json; do
    [[ -s runs/$name/$file ]] || { echo "missing runs/$name/$file"; exit 1; }
  done
done
grep -q "student (R18) icd" out.txt || { echo "no ICD row in the table"; exit 1; }
grep -q "icd gain" out.txt || { echo "no gain row in the table"; exit 1; }
[[ $(wc -l < runs/student-icd-tiny-s1/metrics.jsonl) -eq 6 ]] || { echo "expected 6 metric records"; exit 1; }

# Resuming a finished run trains nothing more and keeps the metrics.
"$apps/distill_retinanet" --preset tiny --runs runs --methods icd --resume --threads 2 | tee resumed.txt
grep -q "resuming runs/student-icd-tiny-s1 from iteration 6" resumed.txt || { echo "resume did not pick up"; exit 1; }
[[ $(wc -l < runs/student-icd-tiny-s1/metrics.jsonl) -eq 6 ]] || { echo "resume changed the metrics"; exit 1; }

"$apps/evaluate" --gt "${ICD_CACHE:-$HOME/.cache/icd}/datasets/builtin-tiny/val.json" \
  --dt runs/student-icd-tiny-s1/detections.json --json eval_again.json
grep -q '"stats"' eval_again.json
echo "end to end: OK"
