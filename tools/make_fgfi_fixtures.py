#!/usr/bin/python3
"""Parity fixture for distill/fgfi.h (the FGFI baseline), written from the paper's definition in float64.

Writes tests/fixtures/fgfi.json with one case, "fgfi": a 32 x 48 padded batch of three images (two boxes,
one box, none), two levels (strides 8 and 16, grids 4 x 6 and 2 x 3) with A = 6 anchors per cell in
detectron2's convention (w = sqrt(size^2 / r), h = r w, centred on the cell's top-left corner, order
(y, x, size, ratio)), 3 student and 4 teacher channels, one 3 x 3 adapter (with bias) per level, weight 0.01.
Inputs: the anchors of each level, the boxes, the student and teacher maps, the adapter weights. For
psi = 0.5 and psi = 0.3, whose masks differ, under the prefixes "psi0.5." and "psi0.3.": the mask
[B, cells of level 0, then level 1], N_p, the loss, and its gradients w.r.t. the student maps and every
adapter parameter. The mask follows the authors' loop: per box, the IoU map over all anchors, its maximum
M, the cells where any anchor has IoU > psi M, OR-ed over the boxes.
Inputs are rounded to multiples of 2^-12 (boxes to 2^-3) so they are exact in both languages and short.
  /usr/bin/python3 tools/make_fgfi_fixtures.py
"""
import math
import os

import torch
import torch.nn.functional as F

from fixture_io import write_fixture

DT = torch.float64
HEIGHT, WIDTH = 32, 48
STRIDES = [8, 16]
SIZES = [[12.0, 20.0], [28.0, 40.0]]
RATIOS = [0.5, 1.0, 2.0]
A = len(SIZES[0]) * len(RATIOS)
STUDENT_CHANNELS, TEACHER_CHANNELS = 3, 4
WEIGHT = 0.01
PSIS = [0.5, 0.3]
BOXES = [
    [[3.25, 5.5, 17.75, 19.125], [20.5, 2.75, 46.0, 30.5]],
    [[30.125, 14.875, 38.5, 26.25]],
    [],
]


def exact(t):
    """Rounds to a multiple of 2^-12: representable exactly and printed short."""
    return torch.round(t * 4096.0) / 4096.0


def rand(*shape, scale=1.0):
    return exact((torch.rand(*shape, dtype=DT) * 2 - 1) * scale)


def grids():
    return [(HEIGHT // s, WIDTH // s) for s in STRIDES]


def level_anchors():
    """One [H W A, 4] tensor per level, rows in (y, x, a) order."""
    out = []
    for stride, sizes, (h, w) in zip(STRIDES, SIZES, grids()):
        cell = []
        for size in sizes:
            for r in RATIOS:
                aw = math.sqrt(size * size / r)
                ah = r * aw
                cell.append([-aw / 2, -ah / 2, aw / 2, ah / 2])
        cell = torch.tensor(cell, dtype=DT)
        ys, xs = torch.meshgrid(torch.arange(h, dtype=DT) * stride, torch.arange(w, dtype=DT) * stride,
                                indexing="ij")
        shifts = torch.stack([xs, ys, xs, ys], dim=-1).reshape(h, w, 1, 4)
        out.append((shifts + cell.reshape(1, 1, A, 4)).reshape(-1, 4))
    return out


def box_iou(boxes, anchors):
    """[G, 4] x [R, 4] -> [G, R]."""
    area_b = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    area_a = (anchors[:, 2] - anchors[:, 0]) * (anchors[:, 3] - anchors[:, 1])
    top_left = torch.max(boxes[:, None, :2], anchors[None, :, :2])
    bottom_right = torch.min(boxes[:, None, 2:], anchors[None, :, 2:])
    wh = (bottom_right - top_left).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    return inter / (area_b[:, None] + area_a[None, :] - inter)


def imitation_masks(anchors, boxes, psi):
    """Per level a bool [B, H, W]; also the smallest |IoU - psi M| met, to keep the fixture off ties."""
    masks = [torch.zeros(len(boxes), h, w, dtype=torch.bool) for h, w in grids()]
    margin = math.inf
    for b, image_boxes in enumerate(boxes):
        for box in image_boxes:
            box = torch.tensor([box], dtype=DT)
            ious = [box_iou(box, a)[0].reshape(h, w, A) for a, (h, w) in zip(anchors, grids())]
            best = max(float(i.max()) for i in ious)
            for level, iou in enumerate(ious):
                masks[level][b] |= (iou > psi * best).any(dim=-1)
                margin = min(margin, float((iou - psi * best).abs().min()))
    return masks, margin


def fgfi_loss(student, teacher, adapters, masks):
    n_p = sum(int(m.sum()) for m in masks)
    total = torch.zeros((), dtype=DT)
    for s, t, (w, b), m in zip(student, teacher, adapters, masks):
        adapted = F.conv2d(s, w, b, padding=w.shape[-1] // 2)
        total = total + (((adapted - t) ** 2) * m[:, None].to(DT)).sum()
    return WEIGHT * total / (2 * max(n_p, 1)), n_p


def fgfi_case():
    torch.manual_seed(0)
    batch = len(BOXES)
    student = [rand(batch, STUDENT_CHANNELS, h, w) for h, w in grids()]
    teacher = [rand(batch, TEACHER_CHANNELS, h, w) for h, w in grids()]
    adapters = [(rand(TEACHER_CHANNELS, STUDENT_CHANNELS, 3, 3, scale=0.5), rand(TEACHER_CHANNELS, scale=0.1))
                for _ in STRIDES]
    anchors = level_anchors()

    tensors = {}
    for level, (a, s, t, (w, b)) in enumerate(zip(anchors, student, teacher, adapters)):
        tensors[f"anchors{level}"] = a
        tensors[f"student{level}"] = s
        tensors[f"teacher{level}"] = t
        tensors[f"adapters.{level}.weight"] = w
        tensors[f"adapters.{level}.bias"] = b
    for i, image_boxes in enumerate(BOXES):
        tensors[f"boxes{i}"] = torch.tensor(image_boxes, dtype=DT).reshape(-1, 4)

    flat_masks = []
    for psi in PSIS:
        masks, margin = imitation_masks(anchors, BOXES, psi)
        assert margin > 1e-6, f"psi {psi}: an IoU lies within {margin} of its threshold"
        leaves = [s.clone().requires_grad_(True) for s in student]
        params = [(w.clone().requires_grad_(True), b.clone().requires_grad_(True)) for w, b in adapters]
        loss, n_p = fgfi_loss(leaves, teacher, params, masks)
        assert n_p > 0
        loss.backward()
        prefix = f"psi{psi}."
        flat = torch.cat([m.reshape(batch, -1) for m in masks], dim=1).to(DT)
        flat_masks.append(flat)
        tensors[prefix + "mask"] = flat
        tensors[prefix + "n_p"] = torch.tensor(float(n_p), dtype=DT)
        tensors[prefix + "loss"] = loss
        for level, (s, (w, b)) in enumerate(zip(leaves, params)):
            tensors[prefix + f"grad_student{level}"] = s.grad
            tensors[prefix + f"grad_adapters.{level}.weight"] = w.grad
            tensors[prefix + f"grad_adapters.{level}.bias"] = b.grad
    assert not torch.equal(flat_masks[0], flat_masks[1]), "the psi values should give different masks"
    assert flat_masks[0][2].sum() == 0 and flat_masks[1][2].sum() == 0, "the image without boxes imitates"

    params = {"height": HEIGHT, "width": WIDTH, "strides": STRIDES, "sizes": SIZES, "aspect_ratios": RATIOS,
              "anchors_per_cell": A, "student_channels": STUDENT_CHANNELS,
              "teacher_channels": TEACHER_CHANNELS, "adapter_kernel": 3, "weight": WEIGHT, "psi": PSIS,
              "num_images": len(BOXES)}
    return {"params": params, "tensors": tensors}


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    path = os.path.join(here, "..", "tests", "fixtures", "fgfi.json")
    write_fixture(os.path.normpath(path), "tools/make_fgfi_fixtures.py", {"fgfi": fgfi_case()})


if __name__ == "__main__":
    main()
