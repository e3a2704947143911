#!/usr/bin/python3
"""Parity fixtures for engine/ops/matmul.cpp: matmul (1-D, 2-D, batched with broadcasting), bmm and linear,
outputs and input gradients for a fixed upstream gradient, computed in float64 by torch.

  /usr/bin/python3 tools/make_matmul_fixtures.py   ->  tests/fixtures/matmul.json
"""
import os
import sys

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from fixture_io import write_fixture  # noqa: E402

OUT = os.path.normpath(os.path.join(HERE, "..", "tests", "fixtures", "matmul.json"))


def case(op, fn, inputs):
    """Runs fn on leaf copies of inputs (name -> tensor), back-propagates a fixed random gradient."""
    # Inputs and the upstream gradient are rounded to f32 values (stored as f64), so the f32 run of the
    # test sees exactly the same numbers and only its arithmetic, not its inputs, differs from torch's f64.
    leaves = {k: v.float().double().requires_grad_(True) for k, v in inputs.items()}
    y = fn(**leaves)
    g = torch.randn(y.shape, dtype=torch.float64).float().double()
    y.backward(g)
    tensors = dict(leaves)
    tensors.update({"y": y, "g": g})
    tensors.update({"d" + k: v.grad for k, v in leaves.items()})
    return {"params": {"op": op, "inputs": list(inputs)}, "tensors": tensors}


def main():
    torch.manual_seed(0)
    r = lambda *shape: torch.randn(*shape, dtype=torch.float64)  # noqa: E731
    mm = lambda a, b: torch.matmul(a, b)  # noqa: E731
    lin = lambda x, weight, bias=None: F.linear(x, weight, bias)  # noqa: E731
    cases = {
        "dot": case("matmul", mm, {"a": r(7), "b": r(7)}),
        "mv": case("matmul", mm, {"a": r(5, 7), "b": r(7)}),
        "vm": case("matmul", mm, {"a": r(7), "b": r(7, 4)}),
        "mm": case("matmul", mm, {"a": r(6, 9), "b": r(9, 5)}),
        "batched_times_matrix": case("matmul", mm, {"a": r(2, 3, 4, 5), "b": r(5, 6)}),
        "matrix_times_batched": case("matmul", mm, {"a": r(4, 5), "b": r(3, 5, 2)}),
        "broadcast_batches": case("matmul", mm, {"a": r(2, 1, 3, 4), "b": r(3, 4, 5)}),
        "vector_times_batched": case("matmul", mm, {"a": r(4), "b": r(2, 4, 3)}),
        "batched_times_vector": case("matmul", mm, {"a": r(2, 3, 4), "b": r(4)}),
        "bmm": case("bmm", lambda a, b: torch.bmm(a, b), {"a": r(3, 4, 6), "b": r(3, 6, 2)}),
        "linear_bias": case("linear", lin, {"x": r(2, 3, 8), "weight": r(5, 8), "bias": r(5)}),
        "linear_no_bias": case("linear", lin, {"x": r(4, 8), "weight": r(3, 8)}),
        "linear_vector": case("linear", lin, {"x": r(8), "weight": r(3, 8), "bias": r(3)}),
    }
    write_fixture(OUT, "tools/make_matmul_fixtures.py", cases)


if __name__ == "__main__":
    main()
