#!/usr/bin/python3
"""The workloads of apps/bench in PyTorch, same shapes and thread count, same output format.

Run with Debian's torch (it installs for /usr/bin/python3). The thread count must be fixed before torch is
imported (torch.set_num_threads does not bound every kernel), so this script sets OMP_NUM_THREADS and
MKL/OPENBLAS equivalents itself from --threads, then imports torch.

  /usr/bin/python3 tools/bench_torch.py --threads 2 [--json] [--only conv]
"""
import argparse
import json
import os
import statistics
import sys
import time


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--only", default="")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--peak-gflops-per-core", type=float, default=115.2)
    args = parser.parse_args()
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    workloads = []
    for n in (256, 512, 1024, 2048):
        a, b = torch.randn(n, n), torch.randn(n, n)
        c = torch.empty(n, n)
        workloads.append((f"sgemm {n}", 2.0 * n ** 3, lambda a=a, b=b, c=c: torch.mm(a, b, out=c)))
    for (n, ch, h, w, out) in ((1, 64, 56, 56, 64), (1, 256, 14, 14, 256)):
        shape = f"{n}x{ch}x{h}x{w} {ch}->{out}"
        flops = 2.0 * n * out * h * w * ch * 9
        x = torch.randn(n, ch, h, w)
        wt = torch.randn(out, ch, 3, 3) * 0.05
        bias = torch.zeros(out)

        def fwd(x=x, wt=wt, bias=bias):
            with torch.no_grad():
                F.conv2d(x, wt, bias, padding=1)

        xg, wg, bg = (t.clone().requires_grad_(True) for t in (x, wt, bias))

        def fwd_bwd(x=xg, wt=wg, bias=bg):
            y = F.conv2d(x, wt, bias, padding=1)
            y.backward(torch.ones_like(y))
            x.grad = wt.grad = bias.grad = None

        workloads.append((f"conv3x3 fwd {shape}", flops, fwd))
        workloads.append((f"conv3x3 fwd+bwd {shape}", 3 * flops, fwd_bwd))

    peak = args.peak_gflops_per_core * args.threads
    if not args.json:
        print(f"{'workload':34s} {'ms':>10s} {'GFLOP/s':>10s} {'% peak':>8s}   ({args.threads} threads, torch {torch.__version__})")
    for name, flops, run in workloads:
        if args.only and args.only not in name:
            continue
        for _ in range(2):
            run()
        times = []
        for _ in range(args.reps):
            t0 = time.perf_counter()
            run()
            times.append((time.perf_counter() - t0) * 1e3)
        ms = statistics.median(times)
        gflops = flops / (ms * 1e6)
        if args.json:
            print(json.dumps({"impl": "torch", "workload": name, "threads": args.threads, "ms": round(ms, 4),
                              "gflops": round(gflops, 2)}))
        else:
            print(f"{name:34s} {ms:10.3f} {gflops:10.1f} {100 * gflops / peak:7.1f}%")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
