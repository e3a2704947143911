#!/usr/bin/env bash
# README command (1): set up a fresh machine, build, and run the main job.
# Until the distillation app lands, the main job is the engine benchmark (apps/bench).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
"${BUILD_DIR:-build}"/apps/bench "$@"
