#!/usr/bin/python3
"""Parity fixtures for engine/ops/reduce.cpp: max/min with indices, amax/amin, logsumexp, softmax and
log_softmax, forward and gradients for a fixed upstream gradient, computed in float64 by torch.

  /usr/bin/python3 tools/make_reduce_fixtures.py   ->  tests/fixtures/reduce.json
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_io import write_fixture  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.normpath(os.path.join(HERE, "..", "tests", "fixtures", "reduce.json"))


def case(fn, x, params):
    """Runs fn on a leaf copy of x, back-propagates a fixed random gradient, returns the case."""
    # Inputs and the upstream gradient are rounded to f32 values (stored as f64), so the f32 run of the
    # test sees exactly the same numbers and only its arithmetic, not its inputs, differs from torch's f64.
    x = x.float().double().requires_grad_(True)
    out = fn(x)
    values = out[0] if isinstance(out, tuple) else out
    g = torch.randn(values.shape, dtype=torch.float64).float().double()
    values.backward(g)
    tensors = {"x": x, "y": values, "g": g, "dx": x.grad}
    if isinstance(out, tuple):
        tensors["indices"] = out[1]
    return {"params": params, "tensors": tensors}


def main():
    torch.manual_seed(0)
    d = torch.float64
    cases = {}
    x = torch.randn(3, 5, 4, dtype=d)
    cases["max_dim1"] = case(lambda t: torch.max(t, 1), x, {"op": "max", "dim": 1, "keepdim": False})
    cases["min_last_keepdim"] = case(lambda t: torch.min(t, -1, keepdim=True), x,
                                     {"op": "min", "dim": -1, "keepdim": True})
    cases["amax_0_2"] = case(lambda t: torch.amax(t, (0, 2)), x,
                             {"op": "amax", "dims": [0, 2], "keepdim": False})
    cases["amin_1_keepdim"] = case(lambda t: torch.amin(t, 1, keepdim=True), x,
                                   {"op": "amin", "dims": [1], "keepdim": True})
    # Large offsets: a naive exp would overflow. At |x| ~ 800 f32 itself resolves only 6e-5 (its spacing
    # there), so these cases check f64 only ("f32": False); the f32 path is checked on unit-scale inputs.
    big = torch.randn(4, 6, 3, dtype=d) * 30 + 800
    cases["logsumexp_dim1"] = case(lambda t: torch.logsumexp(t, 1), big,
                                   {"op": "logsumexp", "dim": 1, "keepdim": False, "f32": False})
    cases["logsumexp_last_keepdim"] = case(lambda t: torch.logsumexp(t, -1, keepdim=True), x,
                                           {"op": "logsumexp", "dim": -1, "keepdim": True})
    wide = torch.randn(2, 3, 70, dtype=d) * 4  # inner 70: more than one lane tile
    cases["softmax_dim1_wide"] = case(lambda t: torch.softmax(t, 1), wide, {"op": "softmax", "dim": 1})
    cases["softmax_last"] = case(lambda t: torch.softmax(t, -1), big,
                                 {"op": "softmax", "dim": -1, "f32": False})
    cases["log_softmax_dim0"] = case(lambda t: torch.log_softmax(t, 0), wide, {"op": "log_softmax", "dim": 0})
    cases["log_softmax_last"] = case(lambda t: torch.log_softmax(t, -1), big,
                                     {"op": "log_softmax", "dim": -1, "f32": False})
    cases["softmax_last_unit"] = case(lambda t: torch.softmax(t, -1), x, {"op": "softmax", "dim": -1})
    write_fixture(OUT, "tools/make_reduce_fixtures.py", cases)


if __name__ == "__main__":
    main()
