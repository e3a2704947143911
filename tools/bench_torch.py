#!/usr/bin/python3
"""The workloads of apps/bench in PyTorch, same shapes and thread count, same output format.

Run with Debian's torch (it installs for /usr/bin/python3). The thread count must be fixed before torch is
imported (torch.set_num_threads does not bound every kernel), so this script sets OMP_NUM_THREADS and
MKL/OPENBLAS equivalents itself from --threads, then imports torch.

Two kinds of workload:
- kernels: sgemm and 3x3 convolutions, with their FLOP count (GFLOP/s and % of peak are printed);
- whole steps: a training step (forward, loss, backward, SGD with momentum and weight decay) or an
  inference forward of torchvision's ResNet-18/50 classifiers (batch 2, 224 x 224) and of RetinaNet with a
  ResNet-18/50 FPN backbone (batch 1, S x S), built as retinanet_resnet50_fpn builds it for training from
  pretrained weights: FrozenBatchNorm2d, 3 trainable backbone layers, C3-C5, P6 from P5 (LastLevelP6P7(256,
  256)), 91 classes, min_size = max_size = S so that the internal transform keeps the S x S size. Weights
  are torchvision's random initialisation. Their FLOPs are not counted here (gflops is null in JSON).

Each workload is built only when it passes the --only filter, so one workload in its own process (as
scripts/bench_compare.sh --steps runs them) reports its own peak resident memory (peak_rss_mb).

  /usr/bin/python3 tools/bench_torch.py --threads 2 [--json] [--only conv]
  /usr/bin/python3 tools/bench_torch.py --threads 2 --json --only "resnet18 train b2 224" --exact
"""
import argparse
import json
import os
import resource
import statistics
import sys
import time

RETINANET_TARGET_BOXES = [[10.0, 20.0, 110.0, 140.0], [150.0, 60.0, 300.0, 200.0], [40.0, 200.0, 90.0, 290.0]]
RETINANET_TARGET_BOXES_SIZE = 320  # the boxes above are for a 320 x 320 image; scaled to S / 320
RETINANET_TARGET_LABELS = [1, 5, 7]
CLASSIFIER_LABELS = [1, 7]


def peak_rss_mb():
    """Peak resident memory of this process so far (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def kernel_workloads(torch, F):
    """(name, flops per run, factory returning the run function) for the sgemm and conv3x3 kernels."""
    workloads = []
    for n in (256, 512, 1024, 2048):
        def make_sgemm(n=n):
            a, b = torch.randn(n, n), torch.randn(n, n)
            c = torch.empty(n, n)
            return lambda: torch.mm(a, b, out=c)

        workloads.append((f"sgemm {n}", 2.0 * n ** 3, make_sgemm))
    for (n, ch, h, w, out) in ((1, 64, 56, 56, 64), (1, 256, 14, 14, 256)):
        shape = f"{n}x{ch}x{h}x{w} {ch}->{out}"
        flops = 2.0 * n * out * h * w * ch * 9

        def make_conv_inputs(n=n, ch=ch, h=h, w=w, out=out):
            return torch.randn(n, ch, h, w), torch.randn(out, ch, 3, 3) * 0.05, torch.zeros(out)

        def make_fwd(make_inputs=make_conv_inputs):
            x, wt, bias = make_inputs()

            def fwd():
                with torch.no_grad():
                    F.conv2d(x, wt, bias, padding=1)

            return fwd

        def make_fwd_bwd(make_inputs=make_conv_inputs):
            x, wt, bias = (t.requires_grad_(True) for t in make_inputs())

            def fwd_bwd():
                y = F.conv2d(x, wt, bias, padding=1)
                y.backward(torch.ones_like(y))
                x.grad = wt.grad = bias.grad = None

            return fwd_bwd

        workloads.append((f"conv3x3 fwd {shape}", flops, make_fwd))
        workloads.append((f"conv3x3 fwd+bwd {shape}", 3 * flops, make_fwd_bwd))
    return workloads


def build_classifier(torchvision, depth):
    return {18: torchvision.models.resnet18, 50: torchvision.models.resnet50}[depth](num_classes=1000)


def build_retinanet(torchvision, depth, size):
    """retinanet_resnet50_fpn's construction with pretrained weights (FrozenBN, 3 trainable layers, P6 from
    P5), with the given ResNet depth, random weights, and a transform that keeps a size x size image."""
    from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
    from torchvision.models.detection.retinanet import RetinaNet
    from torchvision.ops.feature_pyramid_network import LastLevelP6P7
    from torchvision.ops.misc import FrozenBatchNorm2d

    resnet = {18: torchvision.models.resnet18, 50: torchvision.models.resnet50}[depth]
    body = resnet(norm_layer=FrozenBatchNorm2d)
    # The FPN is 256 wide for both depths (C3-C5 are 128/256/512 for ResNet-18, 512/1024/2048 for ResNet-50);
    # in_channels == out_channels == 256 makes LastLevelP6P7 take P5, not C5.
    backbone = _resnet_fpn_extractor(body, 3, returned_layers=[2, 3, 4], extra_blocks=LastLevelP6P7(256, 256))
    return RetinaNet(backbone, num_classes=91, min_size=size, max_size=size)


def sgd_for(torch, model):
    trainable = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.SGD(trainable, lr=0.01, momentum=0.9, weight_decay=1e-4)


def step_workloads(torch, F, torchvision):
    """(name, None, factory returning the run function) for the whole training and inference steps."""
    workloads = []
    for depth in (18, 50):
        def make_classifier_train(depth=depth):
            model = build_classifier(torchvision, depth).train()
            optimizer = sgd_for(torch, model)
            images = torch.randn(2, 3, 224, 224)
            labels = torch.tensor(CLASSIFIER_LABELS)

            def train_step():
                optimizer.zero_grad(set_to_none=True)
                loss = F.cross_entropy(model(images), labels)
                loss.backward()
                optimizer.step()

            return train_step

        def make_classifier_infer(depth=depth):
            model = build_classifier(torchvision, depth).eval()
            images = torch.randn(2, 3, 224, 224)

            def infer():
                with torch.no_grad():
                    model(images)

            return infer

        workloads.append((f"resnet{depth} train b2 224", None, make_classifier_train))
        workloads.append((f"resnet{depth} infer b2 224", None, make_classifier_infer))
    for depth in (18, 50):
        for size in (320, 512):
            def make_retinanet_inputs(size=size):
                image = torch.rand(3, size, size)
                scale = size / RETINANET_TARGET_BOXES_SIZE
                target = {"boxes": torch.tensor(RETINANET_TARGET_BOXES) * scale,
                          "labels": torch.tensor(RETINANET_TARGET_LABELS)}
                return image, target

            def make_retinanet_train(depth=depth, size=size, make_inputs=make_retinanet_inputs):
                model = build_retinanet(torchvision, depth, size).train()
                optimizer = sgd_for(torch, model)
                image, target = make_inputs()

                def train_step():
                    optimizer.zero_grad(set_to_none=True)
                    losses = model([image], [target])
                    sum(losses.values()).backward()
                    optimizer.step()

                return train_step

            def make_retinanet_infer(depth=depth, size=size, make_inputs=make_retinanet_inputs):
                model = build_retinanet(torchvision, depth, size).eval()
                image, _ = make_inputs()

                def infer():
                    with torch.no_grad():
                        model([image])

                return infer

            workloads.append((f"retinanet-r{depth} train b1 {size}", None, make_retinanet_train))
            workloads.append((f"retinanet-r{depth} infer b1 {size}", None, make_retinanet_infer))
    return workloads


def median_ms(run, warmup, reps):
    for _ in range(warmup):
        run()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        run()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--only", default="", help="run only workloads whose name contains this")
    parser.add_argument("--exact", action="store_true", help="run only the workload whose name equals --only")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--peak-gflops-per-core", type=float, default=115.2)
    args = parser.parse_args()
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    import torch
    import torch.nn.functional as F
    import torchvision

    torch.set_num_threads(args.threads)

    def selected(name):
        if args.exact:
            return name == args.only
        return not args.only or args.only in name

    workloads = kernel_workloads(torch, F) + step_workloads(torch, F, torchvision)
    peak = args.peak_gflops_per_core * args.threads
    names = [name for name, _, _ in workloads if selected(name)]
    if not names:
        print(f"bench_torch: no workload matches \"{args.only}\"; the names are:", file=sys.stderr)
        for name, _, _ in workloads:
            print(f"  {name}", file=sys.stderr)
        sys.exit(2)
    if not args.json:
        print(f"{'workload':34s} {'ms':>10s} {'GFLOP/s':>10s} {'% peak':>8s} {'RSS MB':>8s}"
              f"   ({args.threads} threads, torch {torch.__version__})")
    for name, flops, make_run in workloads:
        if name not in names:
            continue
        torch.manual_seed(0)  # each workload draws the same numbers whichever others run before it
        run = make_run()
        ms = median_ms(run, 2, args.reps)
        del run
        gflops = None if flops is None else flops / (ms * 1e6)
        rss = peak_rss_mb()
        if args.json:
            print(json.dumps({"impl": "torch", "workload": name, "threads": args.threads, "ms": round(ms, 4),
                              "gflops": None if gflops is None else round(gflops, 2),
                              "peak_rss_mb": round(rss, 1)}))
        elif gflops is None:
            print(f"{name:34s} {ms:10.3f} {'-':>10s} {'-':>8s} {rss:8.0f}")
        else:
            print(f"{name:34s} {ms:10.3f} {gflops:10.1f} {100 * gflops / peak:7.1f}% {rss:8.0f}")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
