#!/usr/bin/python3
"""Parity fixtures for engine/ops/pool.cpp: max_pool2d, avg_pool2d and adaptive_avg_pool2d with padding,
dilation, ceil_mode and count_include_pad, outputs and input gradients for a fixed upstream gradient,
computed in float64 by torch. Inputs hold distinct values, so max pooling has no ties.

  /usr/bin/python3 tools/make_pool_fixtures.py   ->  tests/fixtures/pool.json
"""
import os
import sys

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from fixture_io import write_fixture  # noqa: E402

OUT = os.path.normpath(os.path.join(HERE, "..", "tests", "fixtures", "pool.json"))


def distinct(*shape):
    """A tensor of the given shape whose values are all different (a shuffled grid in [-1, 1))."""
    n = 1
    for s in shape:
        n *= s
    grid = torch.randperm(n, dtype=torch.float64) / n * 2 - 1
    return (grid + torch.rand(n, dtype=torch.float64) / n).reshape(shape)


def case(params, fn, x):
    # Inputs and the upstream gradient are rounded to f32 values (stored as f64), so the f32 run of the
    # test sees exactly the same numbers and only its arithmetic, not its inputs, differs from torch's f64.
    x = x.float().double().requires_grad_(True)
    y = fn(x)
    g = torch.randn(y.shape, dtype=torch.float64).float().double()
    y.backward(g)
    return {"params": params, "tensors": {"x": x, "y": y, "g": g, "dx": x.grad}}


def max_case(shape, kernel, stride, padding=(0, 0), dilation=(1, 1), ceil_mode=False):
    params = {"op": "max", "kernel": kernel, "stride": stride, "padding": list(padding),
              "dilation": list(dilation), "ceil_mode": ceil_mode}
    return case(params, lambda x: F.max_pool2d(x, kernel, stride, padding, dilation, ceil_mode),
                distinct(*shape))


def avg_case(shape, kernel, stride, padding=(0, 0), ceil_mode=False, count_include_pad=True):
    params = {"op": "avg", "kernel": kernel, "stride": stride, "padding": list(padding),
              "ceil_mode": ceil_mode, "count_include_pad": count_include_pad}
    return case(params, lambda x: F.avg_pool2d(x, kernel, stride, padding, ceil_mode, count_include_pad),
                distinct(*shape))


def adaptive_case(shape, out_size):
    return case({"op": "adaptive", "out_size": out_size}, lambda x: F.adaptive_avg_pool2d(x, out_size),
                distinct(*shape))


def main():
    torch.manual_seed(0)
    cases = {
        "max_k3_s2_p1": max_case((2, 3, 9, 9), [3, 3], [2, 2], [1, 1]),
        "max_k2_s2_3d": max_case((3, 6, 6), [2, 2], [2, 2]),
        "max_ceil": max_case((1, 2, 8, 8), [3, 3], [2, 2], ceil_mode=True),
        "max_ceil_padded": max_case((1, 2, 7, 6), [3, 3], [2, 2], [1, 1], ceil_mode=True),
        "max_dilated": max_case((1, 2, 7, 8), [3, 2], [1, 2], [1, 1], [2, 3]),
        "max_rect": max_case((2, 2, 6, 9), [2, 4], [1, 3], [1, 2]),
        "avg_k3_s2_p1": avg_case((2, 2, 9, 9), [3, 3], [2, 2], [1, 1]),
        "avg_exclude_pad": avg_case((2, 2, 9, 9), [3, 3], [2, 2], [1, 1], count_include_pad=False),
        "avg_ceil_include_pad": avg_case((1, 2, 8, 7), [3, 3], [2, 2], [1, 1], ceil_mode=True),
        "avg_ceil_exclude_pad": avg_case((1, 2, 8, 7), [3, 3], [2, 2], [1, 1], ceil_mode=True,
                                         count_include_pad=False),
        "avg_rect_3d": avg_case((2, 5, 8), [2, 3], [1, 2], [1, 1]),
        "adaptive_3x5": adaptive_case((2, 2, 7, 9), [3, 5]),
        "adaptive_global": adaptive_case((2, 3, 5, 4), [1, 1]),
        "adaptive_upsample_3d": adaptive_case((2, 3, 4), [5, 3]),
    }
    write_fixture(OUT, "tools/make_pool_fixtures.py", cases)


if __name__ == "__main__":
    main()
