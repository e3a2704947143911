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
  are torchvision's random initialisation. Their FLOPs are not counted here (gflops is null in JSON);
- the ICD distillation step ("icd-r18<-r50 train b1 S"): the R50-FPN RetinaNet above as a frozen teacher
  (backbone + FPN under no_grad), the R18-FPN one as the student in training mode, and a compact PyTorch
  ICD module doing the same work as icd's distill/ (see icd_workloads).

--precision bf16|f16 runs each workload under torch.autocast (no loss scaling), as apps/bench --precision runs
it under icd's AutocastGuard; the CPU's autocast takes bfloat16 only.

--device picks where every workload runs: auto (the default) is the GPU when this torch sees one
(torch.cuda.is_available()) and the CPU otherwise; cpu, cuda or cuda:N name one. Every tensor, model, image
and target is made on (or moved to) that device, and on a GPU each timed run ends with torch.cuda.synchronize,
so that it times the kernels and not only their launch. Debian's torch is a CPU build: there auto is the CPU
and cuda is an error. --threads still sets the CPU threads; on a GPU, % peak is printed only with
--peak-gflops (the GPU's total GFLOP/s).

Each workload is built only when it passes the --only filter, so one workload in its own process (as
scripts/bench_compare.sh --steps runs them) reports its own peak resident memory (peak_rss_mb).

  /usr/bin/python3 tools/bench_torch.py --threads 2 [--json] [--only conv]
  /usr/bin/python3 tools/bench_torch.py --threads 2 --json --only "resnet18 train b2 224" --exact
  python3 tools/bench_torch.py --device cuda --only train   (with a CUDA build of torch)
"""
import argparse
import json
import math
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


def kernel_workloads(torch, F, device):
    """(name, flops per run, factory returning the run function) for the sgemm and conv3x3 kernels."""
    workloads = []
    for n in (256, 512, 1024, 2048):
        def make_sgemm(n=n):
            a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
            c = torch.empty(n, n, device=device)
            return lambda: torch.mm(a, b, out=c)

        workloads.append((f"sgemm {n}", 2.0 * n ** 3, make_sgemm))
    # Two kernel-sized cases, then the 3x3 stride-1 convolutions of each ResNet-18 stage at batch 2.
    for (n, ch, h, w, out) in ((1, 64, 56, 56, 64), (1, 256, 14, 14, 256), (2, 64, 56, 56, 64),
                               (2, 128, 28, 28, 128), (2, 256, 14, 14, 256), (2, 512, 7, 7, 512)):
        shape = f"{n}x{ch}x{h}x{w} {ch}->{out}"
        flops = 2.0 * n * out * h * w * ch * 9

        def make_conv_inputs(n=n, ch=ch, h=h, w=w, out=out):
            return (torch.randn(n, ch, h, w, device=device), torch.randn(out, ch, 3, 3, device=device) * 0.05,
                    torch.zeros(out, device=device))

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


def step_workloads(torch, F, torchvision, device):
    """(name, None, factory returning the run function) for the whole training and inference steps."""
    workloads = []
    for depth in (18, 50):
        def make_classifier_train(depth=depth):
            model = build_classifier(torchvision, depth).to(device).train()
            optimizer = sgd_for(torch, model)  # after the move: the optimizer holds the device's parameters
            images = torch.randn(2, 3, 224, 224, device=device)
            labels = torch.tensor(CLASSIFIER_LABELS, device=device)

            def train_step():
                optimizer.zero_grad(set_to_none=True)
                loss = F.cross_entropy(model(images), labels)
                loss.backward()
                optimizer.step()

            return train_step

        def make_classifier_infer(depth=depth):
            model = build_classifier(torchvision, depth).to(device).eval()
            images = torch.randn(2, 3, 224, 224, device=device)

            def infer():
                with torch.no_grad():
                    model(images)

            return infer

        workloads.append((f"resnet{depth} train b2 224", None, make_classifier_train))
        workloads.append((f"resnet{depth} infer b2 224", None, make_classifier_infer))
    for depth in (18, 50):
        for size in (320, 512):
            def make_retinanet_inputs(size=size):
                image = torch.rand(3, size, size, device=device)
                scale = size / RETINANET_TARGET_BOXES_SIZE
                target = {"boxes": torch.tensor(RETINANET_TARGET_BOXES, device=device) * scale,
                          "labels": torch.tensor(RETINANET_TARGET_LABELS, device=device)}
                return image, target

            def make_retinanet_train(depth=depth, size=size, make_inputs=make_retinanet_inputs):
                model = build_retinanet(torchvision, depth, size).to(device).train()
                optimizer = sgd_for(torch, model)
                image, target = make_inputs()

                def train_step():
                    optimizer.zero_grad(set_to_none=True)
                    losses = model([image], [target])
                    sum(losses.values()).backward()
                    optimizer.step()

                return train_step

            def make_retinanet_infer(depth=depth, size=size, make_inputs=make_retinanet_inputs):
                model = build_retinanet(torchvision, depth, size).to(device).eval()
                image, _ = make_inputs()

                def infer():
                    with torch.no_grad():
                        model([image])

                return infer

            workloads.append((f"retinanet-r{depth} train b1 {size}", None, make_retinanet_train))
            workloads.append((f"retinanet-r{depth} infer b1 {size}", None, make_retinanet_infer))
    return workloads


# The ICD distillation step (spec/icd.md; icd's distill/icd_module.h, distill/objectives.h). This module does
# the same work as icd's InstanceConditionalDistiller with the same shapes, layers and operations (one
# decoder layer, 8 heads of 32, FFN 1024, 256-wide encoder and predictor MLPs, 3 real + 15 fake queries,
# the auxiliary identification and localisation losses, the value distillation over p3..p7, both
# optimizers as icd's trainer steps them), but it is not numerically identical to it: different random
# weights, fake instances and jitter.
ICD_CLASSES = 91  # the detectors' label space
ICD_HIDDEN, ICD_HEADS, ICD_FFN = 256, 8, 1024
ICD_FAKES_PER_REAL, ICD_JITTER, ICD_DISTILL_WEIGHT = 5, 0.3, 8.0
ICD_ITERATION, ICD_ITERATIONS = 1000, 90000  # past the warm-up; the cosine schedule's length


def build_icd_module(torch):
    """The four trainable parts: instance encoder, teacher decoder, auxiliary predictor, student adapter."""
    nn = torch.nn

    def mlp(inputs, outputs):
        return nn.Sequential(nn.Linear(inputs, ICD_HIDDEN), nn.ReLU(), nn.Linear(ICD_HIDDEN, ICD_HIDDEN), nn.ReLU(),
                             nn.Linear(ICD_HIDDEN, outputs))

    c = ICD_HIDDEN
    # icd packs q, k and v into one in_proj (as nn.MultiheadAttention): the same three products.
    decoder = nn.ModuleDict({"pos_proj": nn.Linear(c, c), "q_proj": nn.Linear(c, c), "k_proj": nn.Linear(c, c),
                             "v_proj": nn.Linear(c, c), "out_proj": nn.Linear(c, c), "norm1": nn.LayerNorm(c),
                             "linear1": nn.Linear(c, ICD_FFN), "linear2": nn.Linear(ICD_FFN, c),
                             "norm2": nn.LayerNorm(c)})
    return nn.ModuleDict({"encoder": mlp(ICD_CLASSES + 2 * 128 + 10, c), "decoder": decoder,
                          "predictor": mlp(c, 5), "student_adapter": nn.Linear(c, c)})


def icd_queries(torch, boxes, labels, size):
    """One image's queries: the real boxes, 5 fakes per real box from the prior of the ground truth (per class:
    mean and std of the normalised box size, frequency), a jittered reference point for each. Returns the
    descriptors [1, K, classes + 266] and the targets [1, K, 4], real mask [1, K] (no padding: one image).
    Every tensor is made on the device of boxes and labels."""
    device = boxes.device
    n = len(labels)
    k = min(max(1, n * (ICD_FAKES_PER_REAL + 1)), max(300, n))
    sizes = (boxes[:, 2:] - boxes[:, :2]) / size  # the prior: one box per class, std 0
    pick = torch.multinomial(torch.ones(n, device=device), k - n, replacement=True)
    fake_wh = sizes[pick].clamp(0.002, 0.7)
    fake_centre = torch.rand(k - n, 2, device=device).clamp(0.03, 0.97)
    fake = (torch.cat([fake_centre - fake_wh / 2, fake_centre + fake_wh / 2], 1).clamp(0, 1)) * size
    boxes = torch.cat([boxes, fake]) / size
    labels = torch.cat([labels, labels[pick]])
    wh = boxes[:, 2:] - boxes[:, :2]
    point = (boxes[:, :2] + boxes[:, 2:]) / 2 + (torch.rand(k, 2, device=device) * 2 - 1) * ICD_JITTER * wh
    frequencies = 10000 ** (2 * torch.arange(64, dtype=torch.float32, device=device) / 128)
    angles = 2 * torch.pi * point[:, :, None] / frequencies  # [K, 2, 64]
    position = torch.cat([angles.sin(), angles.cos()], 2).flatten(1)  # [PE(cx') | PE(cy')], sines then cosines
    bins = (1.44 * torch.log(wh * size) - 5).trunc().clamp(0, 4).long()
    scale = torch.nn.functional.one_hot(bins, 5).flatten(1).float()  # [w bins | h bins]
    onehot = torch.nn.functional.one_hot(labels, ICD_CLASSES).float()
    descriptors = torch.cat([onehot, position, scale], 1)
    targets = torch.cat([point - boxes[:, :2], boxes[:, 2:] - point], 1)
    real = (torch.arange(k, device=device) < n).float()
    return descriptors[None], targets[None], real[None]


def sine_position(torch, levels, batch, device):
    """DETR's normalised sine embedding [S, B, 256] of every level (no padding: the images fill the batch)."""
    frequencies = 10000 ** (2 * (torch.arange(128, device=device) // 2) / 128)
    embeddings = []
    for (h, w) in levels:
        not_mask = torch.ones(batch, h, w, device=device)
        y = not_mask.cumsum(1)
        x = not_mask.cumsum(2)
        y = y / (y[:, -1:, :] + 1e-6) * 2 * torch.pi
        x = x / (x[:, :, -1:] + 1e-6) * 2 * torch.pi
        pos_x, pos_y = x[..., None] / frequencies, y[..., None] / frequencies
        pos_x = torch.stack([pos_x[..., 0::2].sin(), pos_x[..., 1::2].cos()], 4).flatten(3)
        pos_y = torch.stack([pos_y[..., 0::2].sin(), pos_y[..., 1::2].cos()], 4).flatten(3)
        embeddings.append(torch.cat([pos_y, pos_x], 3).flatten(1, 2).permute(1, 0, 2))
    return torch.cat(embeddings)


def icd_losses(torch, F, icd, teacher_levels, student_levels, descriptors, targets, real):
    """aux_conf, aux_reg and lambda * distill for one batch (spec sections 1-4)."""
    def flatten(levels):  # [B, C, H, W] per level -> [S, B, C], levels in order
        return torch.cat([x.flatten(2).permute(2, 0, 1) for x in levels])

    dec = icd["decoder"]
    x_teacher = flatten(teacher_levels)
    s, b, c = x_teacher.shape
    heads, d = ICD_HEADS, c // ICD_HEADS
    with torch.no_grad():
        position = sine_position(torch, [t.shape[2:] for t in teacher_levels], b, x_teacher.device)
        padding = torch.zeros(b, s, dtype=torch.bool, device=x_teacher.device)
    q0 = icd["encoder"](descriptors).permute(1, 0, 2)  # [L, B, C]
    length = q0.shape[0]
    q = dec["q_proj"](q0).reshape(length, b, heads, d).permute(1, 2, 0, 3)
    k = dec["k_proj"](x_teacher + dec["pos_proj"](position)).reshape(s, b, heads, d).permute(1, 2, 0, 3)
    v_teacher = dec["v_proj"](x_teacher).reshape(s, b, heads, d)
    logits = (q @ k.transpose(2, 3) / d ** 0.5).masked_fill(padding[:, None, None, :], float("-inf"))
    mixed = logits.softmax(-1) @ v_teacher.permute(1, 2, 0, 3)  # [B, H, L, d]
    z = dec["norm1"](q0 + dec["out_proj"](mixed.permute(2, 0, 1, 3).reshape(length, b, c)))
    g = dec["norm2"](z + dec["linear2"](F.relu(dec["linear1"](z))))

    predictions = icd["predictor"](g).permute(1, 0, 2)  # [B, L, 5]
    valid = torch.ones_like(real)
    aux_conf = (F.binary_cross_entropy_with_logits(predictions[..., 0], real, reduction="none") * valid).sum() \
        / valid.sum().clamp(min=1e-6)
    scale = (targets + targets[..., [2, 3, 0, 1]]).clamp(min=1e-7)
    relative = (predictions[..., 1:].sigmoid() - targets).abs() / scale
    aux_reg = (relative.sum(2) * real).sum() / real.sum().clamp(min=1e-6)

    v_student = icd["student_adapter"](flatten(student_levels)).reshape(s, b, heads, d)
    with torch.no_grad():
        mask = (real[:, None, None, :] @ logits.softmax(-1)).squeeze(2)  # [B, H, S]: sum over real queries
        v_target = F.layer_norm(v_teacher, (d,))
        denominator = mask.sum(2).clamp(min=1e-6)
    squared = (F.layer_norm(v_student, (d,)) - v_target).pow(2).mean(3).permute(1, 2, 0)  # [B, H, S]
    distill = ICD_DISTILL_WEIGHT * ((squared * mask).sum(2) / denominator).mean()
    return aux_conf, aux_reg, distill


def icd_workloads(torch, F, torchvision, device):
    """One training iteration of icd's distill_retinanet with the ICD method, for S = 320 and 512."""
    workloads = []
    for size in (320, 512):
        def make_icd_train(size=size):
            teacher = build_retinanet(torchvision, 50, size).to(device).eval().requires_grad_(False)
            student = build_retinanet(torchvision, 18, size).to(device).train()
            captured = {}  # the student's p3..p7 with their graph, as the reference's forward hook keeps them
            student.backbone.register_forward_hook(
                lambda module, inputs, out: captured.update(levels=list(out.values())))
            icd = build_icd_module(torch).to(device)
            student_optimizer = sgd_for(torch, student)
            icd_optimizer = torch.optim.AdamW(icd.parameters(), lr=1e-4, weight_decay=1e-4)
            icd_lr = 0.5 * 1e-4 * (1 + math.cos(math.pi * ICD_ITERATION / ICD_ITERATIONS))  # cosine to 0
            image = torch.rand(3, size, size, device=device)
            boxes = torch.tensor(RETINANET_TARGET_BOXES, device=device) * (size / RETINANET_TARGET_BOXES_SIZE)
            labels = torch.tensor(RETINANET_TARGET_LABELS, device=device)
            target = {"boxes": boxes, "labels": labels}

            def train_step():
                student_optimizer.zero_grad(set_to_none=True)
                losses = student([image], [target])
                with torch.no_grad():  # the teacher runs on the same normalised, padded batch
                    teacher_levels = list(teacher.backbone(teacher.transform([image])[0].tensors).values())
                descriptors, targets, real = icd_queries(torch, boxes, labels, size)
                aux_conf, aux_reg, distill = icd_losses(torch, F, icd, teacher_levels, captured["levels"],
                                                        descriptors, targets, real)
                (sum(losses.values()) + aux_conf + aux_reg + distill).backward()
                torch.nn.utils.clip_grad_norm_(icd.parameters(), 0.01)
                for group in icd_optimizer.param_groups:
                    group["lr"] = icd_lr
                icd_optimizer.step()
                icd_optimizer.zero_grad(set_to_none=True)
                torch.nn.utils.clip_grad_value_([p for p in student.parameters() if p.requires_grad], 1.0)
                student_optimizer.step()

            return train_step

        workloads.append((f"icd-r18<-r50 train b1 {size}", None, make_icd_train))
    return workloads


def median_ms(run, warmup, reps, sync=None):
    """Median wall time of reps runs after warmup ones. sync (torch.cuda.synchronize on a GPU) waits for the
    queued kernels: after the warm-up, and after each timed run before the clock is read."""
    for _ in range(warmup):
        run()
    if sync is not None:
        sync()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        run()
        if sync is not None:
            sync()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def resolve_device(torch, name):
    """The torch.device for --device (auto: cuda when torch sees a GPU, else cpu); exits on one it cannot use."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError as error:
        print(f"bench_torch: device {name}: {error}", file=sys.stderr)
        sys.exit(2)
    if device.type not in ("cpu", "cuda"):
        print(f"bench_torch: device {name}: only cpu, cuda and cuda:N are supported", file=sys.stderr)
        sys.exit(2)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            print(f"bench_torch: device {name}: CUDA is not available to this torch", file=sys.stderr)
            sys.exit(1)
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            print(f"bench_torch: device {name}: this machine has {count} CUDA device(s)", file=sys.stderr)
            sys.exit(1)
        if device.index is None:  # name the GPU that "cuda" means
            device = torch.device("cuda", torch.cuda.current_device())
    return device


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--only", default="", help="run only workloads whose name contains this")
    parser.add_argument("--exact", action="store_true", help="run only the workload whose name equals --only")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--peak-gflops-per-core", type=float, default=115.2)
    parser.add_argument("--peak-gflops", type=float, default=0,
                        help="total peak GFLOP/s for %% peak (0: peak-gflops-per-core x threads on the CPU, "
                             "no %% peak on a GPU)")
    parser.add_argument("--device", default="auto",
                        help="auto (cuda when torch sees a GPU, else cpu), cpu, cuda or cuda:N")
    parser.add_argument("--precision", default="f32", choices=("f32", "bf16", "f16"),
                        help="f32, or each run under torch.autocast with bfloat16 or float16 (no loss scaling)")
    args = parser.parse_args()
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    import torch
    import torch.nn.functional as F
    import torchvision

    torch.set_num_threads(args.threads)
    device = resolve_device(torch, args.device)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else None
    autocast_dtype = {"f32": None, "bf16": torch.bfloat16, "f16": torch.float16}[args.precision]
    if autocast_dtype is torch.float16 and device.type == "cpu":
        print("bench_torch: --precision f16: torch's CPU autocast takes bfloat16 only", file=sys.stderr)
        sys.exit(1)

    def with_precision(run):
        """run under torch.autocast when --precision asks for it (as apps/bench runs under AutocastGuard)."""
        if autocast_dtype is None:
            return run

        def autocast_run():
            with torch.autocast(device_type=device.type, dtype=autocast_dtype):
                run()

        return autocast_run

    def selected(name):
        if args.exact:
            return name == args.only
        return not args.only or args.only in name

    workloads = (kernel_workloads(torch, F, device) + step_workloads(torch, F, torchvision, device)
                 + icd_workloads(torch, F, torchvision, device))
    if args.peak_gflops > 0:
        peak = args.peak_gflops
    else:
        peak = args.peak_gflops_per_core * args.threads if device.type == "cpu" else None  # None: no % peak
    names = [name for name, _, _ in workloads if selected(name)]
    if not names:
        print(f"bench_torch: no workload matches \"{args.only}\"; the names are:", file=sys.stderr)
        for name, _, _ in workloads:
            print(f"  {name}", file=sys.stderr)
        sys.exit(2)
    if not args.json:
        print(f"{'workload':34s} {'ms':>10s} {'GFLOP/s':>10s} {'% peak':>8s} {'RSS MB':>8s}"
              f"   ({args.threads} threads, device {device}, torch {torch.__version__})")
    for name, flops, make_run in workloads:
        if name not in names:
            continue
        torch.manual_seed(0)  # each workload draws the same numbers whichever others run before it
        run = with_precision(make_run())
        ms = median_ms(run, 2, args.reps, sync)
        del run
        gflops = None if flops is None else flops / (ms * 1e6)
        rss = peak_rss_mb()
        if args.json:
            record = {"impl": "torch", "device": str(device), "precision": args.precision, "workload": name,
                      "threads": args.threads, "ms": round(ms, 4),
                      "gflops": None if gflops is None else round(gflops, 2), "peak_rss_mb": round(rss, 1)}
            if device.type == "cuda":  # the caching allocator's peak, as apps/bench reports its own
                record["gpu_peak_mb"] = round(torch.cuda.max_memory_allocated(device) / 2 ** 20, 1)
            print(json.dumps(record))
        elif gflops is None:
            print(f"{name:34s} {ms:10.3f} {'-':>10s} {'-':>8s} {rss:8.0f}")
        elif peak is None:
            print(f"{name:34s} {ms:10.3f} {gflops:10.1f} {'-':>8s} {rss:8.0f}")
        else:
            print(f"{name:34s} {ms:10.3f} {gflops:10.1f} {100 * gflops / peak:7.1f}% {rss:8.0f}")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
