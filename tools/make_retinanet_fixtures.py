"""Parity fixtures for RetinaNet's detection pieces (models/anchor_generator, box_coder, matcher, nms,
retinanet_loss, retinanet_postprocess), from torchvision 0.14 in float64.

Run with Debian's torch: /usr/bin/python3 tools/make_retinanet_fixtures.py
(writes tests/fixtures/retinanet_parts.json)

torchvision supplies the reference wherever it implements the piece (AnchorGenerator, BoxCoder, box_iou,
Matcher, RetinaNet.compute_loss, RetinaNet.postprocess_detections + resize_boxes, batched_nms). The
detectron2 variants (anchors from the spec's formulas, the EMA-normalised loss, clipping after rescaling)
are computed here from the formulas in spec/retinanet.md, with torchvision's ops where they agree.

Ties: torch's topk and its non-stable sort order tied scores arbitrarily, so the postprocess cases use
continuous random logits (no ties). NMS ties are checked against batched_nms's coordinate-offset path
(the one torchvision takes on the CPU up to 1000 boxes), whose order is score-descending with tied
scores in index order; the per-class path must keep the same set.
"""
import math
import os
import types

import torch
from torchvision.models.detection import _utils as det_utils
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.retinanet import RetinaNet, RetinaNetHead
from torchvision.models.detection.transform import resize_boxes
from torchvision.ops import boxes as box_ops
from torchvision.ops import sigmoid_focal_loss

from fixture_io import write_fixture

torch.manual_seed(0)
torch.set_default_dtype(torch.float64)
F64 = torch.float64

TV_SIZES = tuple((x, int(x * 2 ** (1.0 / 3)), int(x * 2 ** (2.0 / 3))) for x in [32, 64, 128, 256, 512])
RATIOS = (0.5, 1.0, 2.0)
STRIDES = [8, 16, 32, 64, 128]


def short(t, decimals=6):
    """Rounds random inputs to a few decimals: a smaller fixture, and the same doubles on both sides."""
    return torch.round(t * 10**decimals) / 10**decimals


def i64(values):
    return torch.tensor(values, dtype=torch.int64)


def random_boxes(n, low=0.0, high=100.0, min_size=4.0, max_size=60.0):
    xy = short(torch.rand(n, 2) * (high - low) + low)
    wh = short(torch.rand(n, 2) * (max_size - min_size) + min_size)
    return torch.cat([xy, xy + wh], dim=1)


# ---------------------------------------------------------------------------------------------- anchors
def torchvision_anchors(grids):
    gen = AnchorGenerator(TV_SIZES, (RATIOS,) * len(TV_SIZES))
    gen.set_cell_anchors(F64, torch.device("cpu"))
    strides = [[torch.tensor(s), torch.tensor(s)] for s in STRIDES]
    anchors = torch.cat(gen.grid_anchors(grids, strides))
    # The same through forward(): an image of 128 x 128 gives exactly strides 8 ... 128.
    image_list = types.SimpleNamespace(tensors=torch.zeros(1, 3, 128, 128), image_sizes=[(128, 128)])
    feats = [torch.zeros(1, 1, 128 // s, 128 // s) for s in STRIDES]
    full = gen(image_list, feats)[0]
    direct = torch.cat(gen.grid_anchors([[128 // s, 128 // s] for s in STRIDES], strides))
    assert torch.equal(full, direct)
    return anchors, torch.cat(gen.cell_anchors)


def detectron2_anchors(grids, offset):
    """DefaultAnchorGenerator from the spec: sizes x 2^(k/3), w = sqrt(s^2 / r), h = r w, centre offset."""
    out = []
    for (h, w), stride, x in zip(grids, STRIDES, [32, 64, 128, 256, 512]):
        cells = []
        for size in (x, x * 2 ** (1.0 / 3), x * 2 ** (2.0 / 3)):
            for r in RATIOS:
                bw = math.sqrt(size * size / r)
                bh = r * bw
                cells.append([-bw / 2.0, -bh / 2.0, bw / 2.0, bh / 2.0])
        cells = torch.tensor(cells, dtype=F64)
        sx = (torch.arange(w, dtype=F64) + offset) * stride
        sy = (torch.arange(h, dtype=F64) + offset) * stride
        yy, xx = torch.meshgrid(sy, sx, indexing="ij")
        shifts = torch.stack([xx.reshape(-1), yy.reshape(-1), xx.reshape(-1), yy.reshape(-1)], dim=1)
        out.append((shifts[:, None, :] + cells[None, :, :]).reshape(-1, 4))
    return torch.cat(out)


def anchor_cases(cases):
    grids = [[3, 5], [2, 3], [1, 2], [1, 1], [1, 1]]
    anchors, cells = torchvision_anchors(grids)
    cases["anchors_torchvision"] = {"params": {"grids": grids},
                                    "tensors": {"anchors": anchors, "cell_anchors": cells}}
    for name, offset in [("anchors_detectron2", 0.0), ("anchors_detectron2_offset", 0.5)]:
        cases[name] = {"params": {"grids": grids, "offset": offset},
                       "tensors": {"anchors": detectron2_anchors(grids, offset)}}


# -------------------------------------------------------------------------------------- box coder, IoU
def box_coder_cases(cases):
    anchors = random_boxes(12)
    boxes = random_boxes(12)
    deltas = short(torch.randn(12, 4) * 0.5)
    deltas[0, 2], deltas[1, 3], deltas[2, 2:] = 6.0, 10.0, torch.tensor([40.0, -3.0])  # past the clamp
    for name, weights in [("box_coder", (1.0, 1.0, 1.0, 1.0)),
                          ("box_coder_weighted", (10.0, 10.0, 5.0, 5.0))]:
        coder = det_utils.BoxCoder(weights)
        cases[name] = {
            "params": {"weights": list(weights)},
            "tensors": {"anchors": anchors, "boxes": boxes, "deltas": deltas,
                        "encoded": coder.encode_single(boxes, anchors),
                        "decoded": coder.decode_single(deltas, anchors)},
        }

    a = random_boxes(6, high=40.0, max_size=30.0)
    b = random_boxes(9, high=40.0, max_size=30.0)
    b[0] = a[0]                                          # identical: IoU 1
    b[1] = torch.tensor([a[1, 0] + 1, a[1, 1] + 1, a[1, 2] - 1, a[1, 3] - 1])  # contained
    b[2] = torch.tensor([200.0, 200.0, 210.0, 220.0])    # disjoint from all: IoU 0
    b[3] = torch.tensor([a[2, 2], a[2, 1], a[2, 2] + 5, a[2, 3]])  # touching edge: IoU 0
    cases["pairwise_iou"] = {"tensors": {"a": a, "b": b, "iou": box_ops.box_iou(a, b)}}


# ---------------------------------------------------------------------------------------------- matcher
def matcher_case(iou, allow_low_quality=True):
    matcher = det_utils.Matcher(0.5, 0.4, allow_low_quality_matches=allow_low_quality)
    return {"params": {"allow_low_quality_matches": allow_low_quality},
            "tensors": {"iou": iou, "matches": matcher(iou.clone())}}


def matcher_cases(cases):
    gt = random_boxes(4, high=60.0, min_size=10.0, max_size=40.0)
    gt[3] = torch.tensor([30.0, 30.0, 34.0, 37.0])  # small: below 0.4 with every anchor -> low-quality match
    anchors = torch.cat([random_boxes(50, high=60.0, min_size=8.0, max_size=40.0),
                         gt[:2] + torch.tensor([1.0, -1.0, 2.0, 1.0])])  # near copies: clear foreground
    iou = box_ops.box_iou(gt, anchors)
    case = matcher_case(iou)
    case["tensors"].update({"gt_boxes": gt, "anchors": anchors})
    labels = case["tensors"]["matches"]
    assert (labels == -1).any() and (labels == -2).any() and (labels >= 0).any()
    cases["matcher_random"] = case

    # Hand-made IoU matrix [4 boxes, 10 anchors]:
    #   box 0's best (0.30) is tied at anchors 0 and 1: both forced foreground; anchor 1 overlaps box 1 more
    #   (0.35) and keeps box 1; box 1's best (0.35) is tied at anchors 1 and 5; anchor 2's best is exactly
    #   0.4 (ignored), anchor 3's exactly 0.5 (foreground); anchor 4 is tied at 0.45 between boxes 2 and 3
    #   (the first wins, ignored); anchor 9 is tied at 0.1 between boxes 0 and 1 (background).
    iou = torch.tensor([
        [0.30, 0.30, 0.00, 0.10, 0.00, 0.20, 0.00, 0.00, 0.05, 0.10],
        [0.10, 0.35, 0.00, 0.00, 0.20, 0.35, 0.00, 0.00, 0.00, 0.10],
        [0.00, 0.00, 0.40, 0.50, 0.45, 0.00, 0.60, 0.41, 0.00, 0.00],
        [0.00, 0.00, 0.10, 0.20, 0.45, 0.00, 0.00, 0.00, 0.70, 0.00],
    ])
    cases["matcher_ties"] = matcher_case(iou)
    cases["matcher_ties_no_low_quality"] = matcher_case(iou, allow_low_quality=False)
    # A box that overlaps no anchor: its best IoU is 0, so every anchor at IoU 0 with it turns foreground.
    quirk = iou.clone()
    quirk[3] = 0.0
    cases["matcher_zero_row"] = matcher_case(quirk)


# ------------------------------------------------------------------------------------------------ loss
def loss_inputs():
    gen = AnchorGenerator(((16,), (32,)), (RATIOS, RATIOS))
    gen.set_cell_anchors(F64, torch.device("cpu"))
    anchors = torch.cat(gen.grid_anchors([[4, 4], [2, 2]], [[torch.tensor(8)] * 2, [torch.tensor(16)] * 2]))
    targets = [
        {"boxes": torch.tensor([[2.0, 3.0, 18.0, 15.0], [10.0, 10.0, 30.0, 30.0], [20.0, 2.0, 27.0, 9.0]]),
         "labels": i64([0, 2, 1])},
        {"boxes": torch.tensor([[5.0, 5.0, 25.0, 20.0]]), "labels": i64([1])},
        {"boxes": torch.zeros(0, 4), "labels": i64([])},
    ]
    n, r, k = len(targets), anchors.shape[0], 3
    cls = short(torch.randn(n, r, k)).requires_grad_(True)
    deltas = short(torch.randn(n, r, 4) * 0.3).requires_grad_(True)
    return anchors, targets, cls, deltas


def torchvision_loss(anchors, targets, cls, deltas):
    fake = types.SimpleNamespace(proposal_matcher=det_utils.Matcher(0.5, 0.4, allow_low_quality_matches=True),
                                 head=RetinaNetHead(8, 3, cls.shape[2]))
    head_outputs = {"cls_logits": cls, "bbox_regression": deltas}
    losses = RetinaNet.compute_loss(fake, targets, head_outputs, [anchors] * len(targets))
    matched = []
    for t in targets:
        if t["boxes"].numel() == 0:
            matched.append(torch.full((anchors.shape[0],), -1, dtype=torch.int64))
        else:
            matched.append(fake.proposal_matcher(box_ops.box_iou(t["boxes"], anchors)))
    return losses["classification"], losses["bbox_regression"], torch.stack(matched)


def detectron2_loss(anchors, targets, matched, cls, deltas, normalizer=100.0, momentum=0.9):
    """RetinaNet.losses (detectron2 v0.5): batch sums divided by the EMA of max(#foreground, 1)."""
    coder = det_utils.BoxCoder((1.0, 1.0, 1.0, 1.0))
    k = cls.shape[2]
    logits, class_targets, pred, box_targets = [], [], [], []
    for i, t in enumerate(targets):
        m = matched[i]
        valid = m != -2
        fg = m >= 0
        target = torch.zeros(int(valid.sum()), k)
        fg_rows = fg[valid]
        target[fg_rows, t["labels"][m[valid][fg_rows]]] = 1.0
        logits.append(cls[i][valid])
        class_targets.append(target)
        pred.append(deltas[i][fg])
        box_targets.append(coder.encode_single(t["boxes"][m[fg]], anchors[fg]))
    num_fg = int(sum(int((m >= 0).sum()) for m in matched))
    normalizer = momentum * normalizer + (1 - momentum) * max(num_fg, 1)
    loss_cls = sigmoid_focal_loss(torch.cat(logits), torch.cat(class_targets), alpha=0.25, gamma=2.0,
                                  reduction="sum") / normalizer
    loss_box = torch.nn.functional.l1_loss(torch.cat(pred), torch.cat(box_targets), reduction="sum")
    loss_box = loss_box / normalizer
    return loss_cls, loss_box, num_fg, normalizer


def loss_cases(cases):
    anchors, targets, cls, deltas = loss_inputs()
    cls_weight, box_weight = 1.0, 0.7
    inputs = {"anchors": anchors, "cls_logits": cls, "bbox_deltas": deltas}
    for i, t in enumerate(targets):
        inputs[f"boxes_{i}"] = t["boxes"]
        inputs[f"labels_{i}"] = t["labels"]
    cases["loss_inputs"] = {"params": {"num_images": len(targets)}, "tensors": inputs}

    loss_cls, loss_box, matched = torchvision_loss(anchors, targets, cls, deltas)
    assert (matched == -2).any() and (matched >= 0).sum() >= 5
    (cls_weight * loss_cls + box_weight * loss_box).backward()
    cases["loss_torchvision"] = {
        "params": {"num_images": len(targets), "cls_weight": cls_weight, "box_weight": box_weight},
        "tensors": dict(matches=matched, classification=loss_cls, box_regression=loss_box,
                        grad_cls_logits=cls.grad.clone(), grad_bbox_deltas=deltas.grad.clone()),
    }
    cls.grad, deltas.grad = None, None

    loss_cls, loss_box, num_fg, normalizer = detectron2_loss(anchors, targets, matched, cls, deltas)
    (cls_weight * loss_cls + box_weight * loss_box).backward()
    cases["loss_detectron2"] = {
        "params": {"num_images": len(targets), "cls_weight": cls_weight, "box_weight": box_weight,
                   "num_foreground": num_fg, "normalizer": normalizer},
        "tensors": dict(classification=loss_cls, box_regression=loss_box,
                        grad_cls_logits=cls.grad.clone(), grad_bbox_deltas=deltas.grad.clone()),
    }


# ----------------------------------------------------------------------------------------- postprocess
def postprocess_inputs():
    gen = AnchorGenerator(((16,), (32,)), (RATIOS, RATIOS))
    gen.set_cell_anchors(F64, torch.device("cpu"))
    per_level = gen.grid_anchors([[6, 6], [3, 3]], [[torch.tensor(8)] * 2, [torch.tensor(16)] * 2])
    anchors = torch.cat(per_level)
    n, k, r = 2, 3, anchors.shape[0]
    cls = short(torch.randn(n, r, k) * 2.0 - 2.0)
    deltas = short(torch.randn(n, r, 4) * 0.4)
    # A few confident anchors pushed far right / down: outside the image once decoded.
    for i, a in [(0, 40), (0, 100), (1, 7), (1, 120)]:
        cls[i, a, 1] = 4.0 + 0.1 * a / r
        deltas[i, a, 0] = 7.0
        deltas[i, a, 1] = 5.0
    sizes = [  # (input h, w), (original h, w): ratios exact in f32, as torchvision computes them in f32
        ((48, 40), (36, 50)),
        ((44, 48), (88, 24)),
    ]
    return anchors, [p.shape[0] for p in per_level], cls, deltas, sizes


def torchvision_postprocess(anchors, num_per_level, cls, deltas, sizes, config):
    fake = types.SimpleNamespace(score_thresh=config["score_threshold"], topk_candidates=config["topk"],
                                 nms_thresh=config["nms_threshold"],
                                 detections_per_img=config["max_detections"],
                                 box_coder=det_utils.BoxCoder((1.0, 1.0, 1.0, 1.0)))
    head_outputs = {"cls_logits": list(cls.split(num_per_level, dim=1)),
                    "bbox_regression": list(deltas.split(num_per_level, dim=1))}
    anchors_per_image = [list(anchors.split(num_per_level))] * cls.shape[0]
    dets = RetinaNet.postprocess_detections(fake, head_outputs, anchors_per_image, [s[0] for s in sizes])
    for d, (input_size, original_size) in zip(dets, sizes):
        d["boxes"] = resize_boxes(d["boxes"], input_size, original_size)
    return dets


def detectron2_postprocess(anchors, num_per_level, cls, deltas, sizes, config):
    """RetinaNet.inference_single_image + detector_postprocess (detectron2 v0.5)."""
    coder = det_utils.BoxCoder((1.0, 1.0, 1.0, 1.0))
    k = cls.shape[2]
    dets = []
    for i, ((in_h, in_w), (orig_h, orig_w)) in enumerate(sizes):
        boxes_all, scores_all, classes_all = [], [], []
        for logits, d, a in zip(cls[i].split(num_per_level), deltas[i].split(num_per_level),
                                anchors.split(num_per_level)):
            prob = logits.flatten().sigmoid()
            keep = prob > config["score_threshold"]
            prob, idxs = prob[keep], torch.nonzero(keep)[:, 0]
            prob, order = prob.sort(descending=True)
            num = min(config["topk"], idxs.numel())
            prob, idxs = prob[:num], idxs[order[:num]]
            anchor_idxs, classes = idxs // k, idxs % k
            boxes_all.append(coder.decode_single(d[anchor_idxs], a[anchor_idxs]))
            scores_all.append(prob)
            classes_all.append(classes)
        boxes, scores, classes = torch.cat(boxes_all), torch.cat(scores_all), torch.cat(classes_all)
        keep = box_ops.batched_nms(boxes, scores, classes, config["nms_threshold"])
        keep = keep[: config["max_detections"]]
        boxes, scores, classes = boxes[keep], scores[keep], classes[keep]
        boxes[:, 0::2] *= orig_w / in_w
        boxes[:, 1::2] *= orig_h / in_h
        boxes = box_ops.clip_boxes_to_image(boxes, (orig_h, orig_w))
        nonempty = (boxes[:, 2] - boxes[:, 0] > 0) & (boxes[:, 3] - boxes[:, 1] > 0)
        dets.append({"boxes": boxes[nonempty], "scores": scores[nonempty], "labels": classes[nonempty],
                     "dropped": int((~nonempty).sum())})
    return dets


def postprocess_cases(cases):
    anchors, num_per_level, cls, deltas, sizes = postprocess_inputs()
    probs = cls.sigmoid().flatten().sort().values
    assert (probs[1:] > probs[:-1]).all(), "tied scores would make the expected order arbitrary"
    config = {"score_threshold": 0.05, "topk": 40, "nms_threshold": 0.5, "max_detections": 15}
    params = dict(config, num_per_level=num_per_level, sizes=[list(s[0]) + list(s[1]) for s in sizes])
    cases["postprocess_inputs"] = {"params": params,
                                   "tensors": {"anchors": anchors, "cls_logits": cls, "bbox_deltas": deltas}}
    for name, fn in [("postprocess_torchvision", torchvision_postprocess),
                     ("postprocess_detectron2", detectron2_postprocess)]:
        dets = fn(anchors, num_per_level, cls, deltas, sizes, config)
        tensors = {}
        for i, d in enumerate(dets):
            tensors.update({f"boxes_{i}": d["boxes"], f"scores_{i}": d["scores"], f"labels_{i}": d["labels"]})
        cases[name] = {"tensors": tensors}
        if fn is detectron2_postprocess:
            assert sum(d["dropped"] for d in dets) > 0, "the case should exercise dropping empty boxes"


# ------------------------------------------------------------------------------------------------- NMS
def nms_case(boxes, scores, classes, threshold):
    expected = box_ops._batched_nms_coordinate_trick(boxes, scores, classes, threshold)
    vanilla = box_ops._batched_nms_vanilla(boxes, scores, classes, threshold)
    assert set(expected.tolist()) == set(vanilla.tolist())
    assert torch.equal(expected, box_ops.batched_nms(boxes, scores, classes, threshold))
    return {"params": {"iou_threshold": threshold},
            "tensors": {"boxes": boxes, "scores": scores, "classes": classes, "keep": expected,
                        "keep_single_class": box_ops.nms(boxes, scores, threshold)}}


def nms_cases(cases):
    boxes = torch.tensor([
        [0.0, 0.0, 10.0, 10.0],   # 0
        [0.0, 0.0, 10.0, 5.0],    # 1: IoU exactly 0.5 with 0: kept (suppression needs > 0.5)
        [0.0, 0.0, 10.0, 6.0],    # 2: IoU 0.6 with 0: suppressed
        [0.0, 0.0, 10.0, 10.0],   # 3: copy of 0, same score: 0 wins (lower index)
        [0.0, 0.0, 10.0, 10.0],   # 4: copy of 0, other class: kept
        [20.0, 20.0, 30.0, 30.0],  # 5
        [21.0, 20.0, 31.0, 30.0],  # 6: IoU 9/11 with 5, higher score: suppresses 5
        [50.0, 50.0, 50.0, 60.0],  # 7: empty box
        [50.0, 50.0, 50.0, 60.0],  # 8: empty copy: IoU 0/0, nothing suppressed
        [2.0, 2.0, 8.0, 8.0],     # 9: inside 0 (IoU 0.36): kept
    ])
    scores = torch.tensor([0.9, 0.8, 0.8, 0.9, 0.9, 0.5, 0.7, 0.3, 0.3, 0.9])
    classes = i64([0, 0, 0, 0, 1, 2, 2, 0, 0, 0])
    cases["nms_ties"] = nms_case(boxes, scores, classes, 0.5)

    n = 300
    xy = torch.randint(0, 80, (n, 2)).to(F64)
    wh = torch.randint(4, 40, (n, 2)).to(F64)
    boxes = torch.cat([xy, xy + wh], dim=1)
    scores = torch.randint(0, 8, (n,)).to(F64) / 8.0  # eight values: many ties
    classes = torch.randint(0, 4, (n,))
    cases["nms_random"] = nms_case(boxes, scores, classes, 0.5)
    cases["nms_random_0.3"] = nms_case(boxes, scores, classes, 0.3)


def main():
    cases = {}
    anchor_cases(cases)
    box_coder_cases(cases)
    matcher_cases(cases)
    loss_cases(cases)
    postprocess_cases(cases)
    nms_cases(cases)
    here = os.path.dirname(os.path.abspath(__file__))
    write_fixture(os.path.join(here, "..", "tests", "fixtures", "retinanet_parts.json"),
                  "tools/make_retinanet_fixtures.py", cases)


if __name__ == "__main__":
    main()
