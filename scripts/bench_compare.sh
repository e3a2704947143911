#!/usr/bin/env bash
# Runs apps/bench and tools/bench_torch.py on the same workloads, alternating them ROUNDS times per
# thread count, and prints the median time of each and the ratio torch_ms / icd_ms (> 1: icd is faster).
#   scripts/bench_compare.sh [ROUNDS] [--only conv]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
shift || true
bench=${BUILD_DIR:-build}/apps/bench
results=$(mktemp)
trap 'rm -f "$results"' EXIT
for threads in 1 2; do
  for ((r = 0; r < rounds; ++r)); do
    "$bench" --threads "$threads" --json "$@" >>"$results"
    /usr/bin/python3 tools/bench_torch.py --threads "$threads" --json "$@" >>"$results"
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
