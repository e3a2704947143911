"""Writes tests/fixtures/resize.json: torch.nn.functional.interpolate (nearest, bilinear) in float64.

Each case holds x, the output y, a fixed upstream gradient grad_y and torch's grad_x of sum(y * grad_y).
params: mode ("nearest" or "bilinear"), and either size [out_h, out_w] or scale_factor, and for bilinear
align_corners. The sizes cover 2x (the FPN), shrinking, odd ratios, 26 -> 22 (where torch's f32 ratio
picks a different pixel than exact arithmetic), size 1 and unchanged sizes.
Run with Debian's torch: /usr/bin/python3 tools/make_resize_fixtures.py
"""
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch
import torch.nn.functional as F

from fixture_io import write_fixture

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.normpath(os.path.join(HERE, "..", "tests", "fixtures", "resize.json"))

# name: (x shape, mode, size or None, scale_factor or None, align_corners or None)
CONFIGS = {
    "nearest_size_2x": ((1, 2, 3, 4), "nearest", (6, 8), None, None),
    "nearest_size_shrink": ((2, 1, 5, 7), "nearest", (3, 4), None, None),
    "nearest_size_26_to_22": ((1, 1, 2, 26), "nearest", (3, 22), None, None),
    "nearest_size_odd_up": ((1, 2, 3, 3), "nearest", (7, 5), None, None),
    "nearest_scale_2": ((1, 2, 3, 4), "nearest", None, 2.0, None),
    "nearest_scale_1_5": ((1, 1, 4, 5), "nearest", None, 1.5, None),
    "nearest_scale_0_5": ((1, 1, 6, 5), "nearest", None, 0.5, None),
    "nearest_scale_2_05": ((1, 1, 10, 9), "nearest", None, 2.05, None),
    "nearest_scale_1_1_same_size": ((1, 1, 4, 6), "nearest", None, 1.1, None),
    "bilinear_up": ((1, 2, 3, 4), "bilinear", (5, 7), None, False),
    "bilinear_up_align_corners": ((1, 2, 3, 4), "bilinear", (5, 7), None, True),
    "bilinear_down": ((1, 2, 6, 7), "bilinear", (4, 3), None, False),
    "bilinear_down_align_corners": ((1, 2, 6, 7), "bilinear", (4, 3), None, True),
    "bilinear_2x": ((2, 1, 3, 3), "bilinear", (6, 6), None, False),
    "bilinear_to_1x1": ((1, 1, 3, 4), "bilinear", (1, 1), None, False),
    "bilinear_to_1x1_align_corners": ((1, 1, 3, 4), "bilinear", (1, 1), None, True),
    "bilinear_same_size": ((1, 1, 3, 3), "bilinear", (3, 3), None, False),
    "bilinear_from_1_row": ((1, 1, 1, 4), "bilinear", (3, 6), None, False),
}


def make_case(gen, shape, mode, size, scale_factor, align_corners):
    x = torch.randn(shape, generator=gen, dtype=torch.float64).float().double().requires_grad_()
    if mode == "nearest":
        y = F.interpolate(x, size=size, scale_factor=scale_factor, mode="nearest")
    else:
        y = F.interpolate(x, size=size, mode="bilinear", align_corners=align_corners)
    grad_y = torch.randn(y.shape, generator=gen, dtype=torch.float64).float().double()
    y.backward(grad_y)
    params = {"mode": mode}
    if size is not None:
        params["size"] = list(size)
    if scale_factor is not None:
        params["scale_factor"] = scale_factor
    if align_corners is not None:
        params["align_corners"] = align_corners
    return {"params": params, "tensors": {"x": x, "y": y, "grad_y": grad_y, "grad_x": x.grad}}


def main():
    gen = torch.Generator().manual_seed(7)
    cases = {name: make_case(gen, *config) for name, config in CONFIGS.items()}
    write_fixture(OUT, "tools/make_resize_fixtures.py", cases)


if __name__ == "__main__":
    main()
