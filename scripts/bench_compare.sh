#!/usr/bin/env bash
# Runs apps/bench and tools/bench_torch.py on the same workloads, alternating them ROUNDS times, and prints
# the median time of each and the ratio torch_ms / icd_ms (> 1: icd is faster).
#   scripts/bench_compare.sh [ROUNDS] [--only conv]
#     the kernels (sgemm, conv3x3; with --only, whatever it selects) at 1 and 2 threads.
#   scripts/bench_compare.sh ROUNDS --steps [--only FILTER] [--reps 3]
#     the whole training / inference steps (ResNet-18/50, RetinaNet-R18/R50, the ICD distillation step of
#     an R18 student from an R50 teacher) at 2 threads, each workload in its own process so that its peak
#     resident memory (peak_rss_mb) is its own; also prints icd's GFLOP/s and both peak RSS (the largest
#     over the rounds). --only keeps the steps whose name contains FILTER.
# --device cuda compares on the GPU (both programs get the same --device; cpu unless given).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
shift || true
bench=${BUILD_DIR:-build}/apps/bench
results=$(mktemp)
trap 'rm -f "$results"' EXIT
# Like for like: apps/bench defaults to the GPU when there is one, so without a --device both get --device cpu.
device_given=0
other_args=0 # arguments other than --device X / --device=X
skip=0
for arg in "$@"; do
  if ((skip)); then
    skip=0
    continue
  fi
  case $arg in
    --device) device_given=1 skip=1 ;;
    --device=*) device_given=1 ;;
    *) other_args=1 ;;
  esac
done

if [[ ${1:-} == --steps ]]; then
  shift
  threads=2
  steps=()
  for model in resnet18 resnet50; do
    steps+=("$model train b2 224" "$model infer b2 224")
  done
  for model in retinanet-r18 retinanet-r50; do
    for size in 320 512; do
      steps+=("$model train b1 $size" "$model infer b1 $size")
    done
  done
  steps+=("icd-r18<-r50 train b1 320" "icd-r18<-r50 train b1 512")
  if [[ ${1:-} == --only ]]; then
    filter=$2
    shift 2
    selected=()
    for name in "${steps[@]}"; do
      if [[ $name == *"$filter"* ]]; then selected+=("$name"); fi
    done
    if ((${#selected[@]} == 0)); then
      echo "bench_compare.sh: no step matches \"$filter\"; the steps are:" >&2
      printf '  %s\n' "${steps[@]}" >&2
      exit 2
    fi
    steps=("${selected[@]}")
  fi
  ((device_given)) || set -- "$@" --device cpu
  for ((r = 0; r < rounds; ++r)); do
    for name in "${steps[@]}"; do
      "$bench" --threads "$threads" --json --only "$name" --exact "$@" >>"$results"
      /usr/bin/python3 tools/bench_torch.py --threads "$threads" --json --only "$name" --exact "$@" >>"$results"
    done
  done
  /usr/bin/python3 - "$results" "${steps[@]}" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
print(f"{'workload':28s} {'icd ms':>10s} {'torch ms':>10s} {'ratio':>7s} {'icd GF/s':>9s} {'icd RSS MB':>11s} "
      f"{'torch RSS MB':>13s}   (2 threads; ratio = torch ms / icd ms, > 1: icd faster)")
for name in sys.argv[2:]:
    of = {impl: [r for r in rows if r["workload"] == name and r["impl"] == impl] for impl in ("icd", "torch")}
    if not of["icd"] or not of["torch"]:
        print(f"{name:28s} missing: {', '.join(impl for impl in of if not of[impl])}")
        continue
    ms = {impl: statistics.median(r["ms"] for r in of[impl]) for impl in of}
    rss = {impl: max(r["peak_rss_mb"] for r in of[impl]) for impl in of}
    gflops = [r["gflops"] for r in of["icd"] if r.get("gflops") is not None]
    gf = f"{statistics.median(gflops):9.1f}" if gflops else f"{'-':>9s}"
    print(f"{name:28s} {ms['icd']:10.3f} {ms['torch']:10.3f} {ms['torch'] / ms['icd']:6.2f}x {gf} "
          f"{rss['icd']:11.0f} {rss['torch']:13.0f}")
PY
  exit 0
fi

if ((!other_args)); then  # the kernels only: the whole steps have their own mode (--steps)
  kernel_filters=(sgemm conv3x3)
else
  kernel_filters=("")
fi
((device_given)) || set -- "$@" --device cpu
for threads in 1 2; do
  for ((r = 0; r < rounds; ++r)); do
    for filter in "${kernel_filters[@]}"; do
      "$bench" --threads "$threads" --json ${filter:+--only "$filter"} "$@" >>"$results"
      /usr/bin/python3 tools/bench_torch.py --threads "$threads" --json ${filter:+--only "$filter"} "$@" >>"$results"
    done
  done
done
/usr/bin/python3 - "$results" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
keys = sorted({(r["threads"], r["workload"]) for r in rows}, key=lambda k: (k[0], [r["workload"] for r in rows].index(k[1])))
print(f"{'threads':>7s}  {'workload':34s} {'icd ms':>10s} {'torch ms':>10s} {'icd GF/s':>9s} {'ratio':>7s}")
for threads, name in keys:
    ms = {impl: statistics.median(r["ms"] for r in rows if r["threads"] == threads and r["workload"] == name and r["impl"] == impl)
          for impl in ("icd", "torch")}
    gf = statistics.median(r["gflops"] for r in rows if r["threads"] == threads and r["workload"] == name and r["impl"] == "icd")
    print(f"{threads:7d}  {name:34s} {ms['icd']:10.3f} {ms['torch']:10.3f} {gf:9.1f} {ms['torch'] / ms['icd']:7.2f}x")
PY
