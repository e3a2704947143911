#!/usr/bin/python3
"""Parity fixtures for models/resnet: torchvision ResNet-18 and ResNet-50 against ours.

The weights are not stored (ResNet-50 has 25M of them): every parameter and buffer is filled from a
closed formula of its name and element index, which tests/test_resnet.cpp evaluates the same way:

  u_i = 2 * (splitmix64((fnv1a32(name) << 32) + i) >> 11) * 2^-53 - 1     (uniform in [-1, 1), exact
                                                                          integer arithmetic in both languages)
  conv / fc weight: u_i * sqrt(6 / fan_in)           (variance 2 / fan_in, like kaiming)
  norm weight: 1 + 0.2 u_i     norm bias, fc bias: 0.05 u_i
  running_mean: 0.1 u_i        running_var: 0.75 + 0.25 u_i

The input is u_i for the name "input". The network runs in eval mode; the loss is sum(logits * p) with p
the formula for "projection". The fixture keeps the logits whole and, for the input gradient, C3..C5 and
every parameter gradient, a summary: sum, sum of |x|, and 64 values at evenly spaced flat indices.
  /usr/bin/python3 tools/make_resnet_fixtures.py
"""
import math
import os

import numpy as np
import torch
import torchvision

from fixture_io import write_fixture


def fnv1a32(text):
    h = 0x811C9DC5
    for b in text.encode():
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


def splitmix64(x):
    with np.errstate(over="ignore"):
        z = x + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def formula(name, shape, dtype=torch.float64):
    n = math.prod(shape)
    x = np.uint64(fnv1a32(name) << 32) + np.arange(n, dtype=np.uint64)
    u = (splitmix64(x) >> np.uint64(11)).astype(np.float64) * 2.0 ** -53 * 2.0 - 1.0
    u = torch.from_numpy(u).reshape(shape)
    if name == "input" or name == "projection":
        return u.to(dtype)
    leaf = name.split(".")[-1]
    if leaf == "weight" and len(shape) >= 2:
        fan_in = math.prod(shape[1:])
        return (u * math.sqrt(6.0 / fan_in)).to(dtype)
    if leaf == "weight":
        return (1 + 0.2 * u).to(dtype)
    if leaf == "bias":
        return (0.05 * u).to(dtype)
    if leaf == "running_mean":
        return (0.1 * u).to(dtype)
    if leaf == "running_var":
        return (0.75 + 0.25 * u).to(dtype)
    raise ValueError(name)


def summary(t):
    flat = t.detach().to(torch.float64).flatten()
    idx = torch.linspace(0, flat.numel() - 1, 64, dtype=torch.float64).round().long() if flat.numel() >= 64 else torch.arange(flat.numel())
    return torch.cat([flat.sum().reshape(1), flat.abs().sum().reshape(1), flat[idx]])


def case(depth, size):
    model = getattr(torchvision.models, f"resnet{depth}")().double().eval()
    with torch.no_grad():
        for name, t in list(model.named_parameters()) + list(model.named_buffers()):
            if name.endswith("num_batches_tracked"):
                continue
            t.copy_(formula(name, tuple(t.shape)))
    x = formula("input", (1, 3, size, size)).requires_grad_(True)
    feats = {}
    hooks = [getattr(model, f"layer{i}").register_forward_hook(lambda m, i, o, k=f"c{i + 1}": feats.__setitem__(k, o))
             for i in range(2, 5)]
    logits = model(x)
    for h in hooks:
        h.remove()
    (logits * formula("projection", tuple(logits.shape))).sum().backward()
    tensors = {"logits": logits, "grad_input": summary(x.grad)}
    for k in ("c3", "c4", "c5"):
        tensors[k] = summary(feats[k])
    for name, p in model.named_parameters():
        tensors["grad." + name] = summary(p.grad)
    return {"params": {"depth": depth, "size": size}, "tensors": tensors}


def main():
    out = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "resnet.json")
    write_fixture(out, "tools/make_resnet_fixtures.py", {"resnet18": case(18, 64), "resnet50": case(50, 64)})


if __name__ == "__main__":
    main()
