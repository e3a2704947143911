"""Writes parity fixtures in the JSON layout that tests/fixture.h reads.

A fixture file is {"generator": str, "torch_version": str, "cases": {case_name: case}} where a case is
{"params": {...}, "tensors": {name: {"shape": [...], "data": [flat row-major values]}}}.
Values are written with Python's repr, so float64 round-trips exactly.
"""
import json
import os

import torch


def tensor_entry(t):
    t = t.detach().to(torch.float64).contiguous()
    return {"shape": list(t.shape), "data": t.flatten().tolist()}


def write_fixture(path, generator, cases):
    """cases: {name: {"params": dict, "tensors": {name: torch.Tensor}}}"""
    out = {"generator": generator, "torch_version": torch.__version__, "cases": {}}
    for name, case in cases.items():
        out["cases"][name] = {
            "params": case.get("params", {}),
            "tensors": {k: tensor_entry(v) for k, v in case["tensors"].items()},
        }
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(out, f, separators=(",", ":"))
    os.replace(tmp, path)
    print(f"wrote {path} ({os.path.getsize(path)} bytes, {len(cases)} cases)")
