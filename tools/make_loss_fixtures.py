"""Parity fixtures for engine/ops/loss.cpp: forward values and gradients from torch / torchvision in float64.

Run with Debian's torch: /usr/bin/python3 tools/make_loss_fixtures.py  (writes tests/fixtures/loss.json)

Every case holds the inputs, `grad_output` (the upstream gradient: a tensor for reduction "none", a 0-d
scalar otherwise), the expected `output`, and `grad_<input>` for each input that takes a gradient.
"""
import os

import torch
import torch.nn.functional as F
from torchvision.ops import sigmoid_focal_loss

from fixture_io import write_fixture

torch.manual_seed(0)
REDUCTIONS = ["none", "mean", "sum"]


def leaf(t):
    return t.detach().clone().to(torch.float64).requires_grad_(True)


def run(fn, inputs, reduction, grad_names):
    """Evaluates fn(*inputs), back-propagates a fixed upstream gradient, returns the tensors of a case."""
    out = fn(*inputs)
    grad_output = torch.randn(out.shape, dtype=torch.float64) if reduction == "none" else torch.tensor(1.3, dtype=torch.float64)
    out.backward(grad_output)
    tensors = {"output": out, "grad_output": grad_output}
    for name, t in zip(grad_names, inputs):
        if name is not None:
            tensors[name] = t
            if t.requires_grad:
                tensors["grad_" + name] = t.grad
    return tensors


def focal_inputs():
    logits = torch.randn(4, 6, dtype=torch.float64) * 3
    logits[0, :] = torch.tensor([30.0, -30.0, 30.0, -30.0, 50.0, -50.0])  # saturated sigmoid both ways
    targets = (torch.rand(4, 6) < 0.4).to(torch.float64)
    targets[0, :] = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.0, 1.0])
    targets[3, :] = torch.rand(6, dtype=torch.float64)  # soft targets
    return logits, targets


def main():
    cases = {}
    logits, targets = focal_inputs()
    for reduction in REDUCTIONS:
        for alpha, gamma in [(0.25, 2.0), (-1.0, 1.5), (0.5, 0.0)]:
            x = leaf(logits)
            tensors = run(lambda a, b: sigmoid_focal_loss(a, b, alpha=alpha, gamma=gamma, reduction=reduction),
                          [x, targets.clone()], reduction, ["logits", "targets"])
            name = f"focal_{reduction}_a{alpha}_g{gamma}"
            cases[name] = {"params": {"reduction": reduction, "alpha": alpha, "gamma": gamma}, "tensors": tensors}

    bce_logits = torch.randn(3, 5, dtype=torch.float64) * 2
    # Saturated logits. Not +-30 with a matching label: there torch's gradient sigmoid(x) - t keeps only
    # one rounding of 1 (1e-16 absolute) of the true -9.4e-14, where ours, p(1 - t) - q t, is exact; the
    # gradient checks and tests/test_loss.cpp cover that point instead.
    bce_logits[0, :] = torch.tensor([40.0, -40.0, 50.0, -50.0, 0.5])
    bce_targets = torch.rand(3, 5, dtype=torch.float64)
    bce_targets[0, :] = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0])
    weight = torch.rand(5, dtype=torch.float64) + 0.5
    for reduction in REDUCTIONS:
        x, t = leaf(bce_logits), leaf(bce_targets)
        cases[f"bce_{reduction}"] = {
            "params": {"reduction": reduction},
            "tensors": run(lambda a, b: F.binary_cross_entropy_with_logits(a, b, reduction=reduction), [x, t],
                           reduction, ["logits", "targets"])}
        x, t, w = leaf(bce_logits), leaf(bce_targets), weight.clone()  # torch gives weight no gradient
        cases[f"bce_weight_{reduction}"] = {
            "params": {"reduction": reduction},
            "tensors": run(lambda a, b, c: F.binary_cross_entropy_with_logits(a, b, weight=c, reduction=reduction),
                           [x, t, w], reduction, ["logits", "targets", "weight"])}

    # Regression losses: differences kept away from 0 and from +-beta (the kinks).
    base = torch.randn(4, 5, dtype=torch.float64)
    magnitude = torch.rand(4, 5, dtype=torch.float64) * 1.5 + 0.05
    magnitude[magnitude.sub(0.5).abs() < 0.05] += 0.1
    sign = torch.where(torch.rand(4, 5) < 0.5, -1.0, 1.0).to(torch.float64)
    other = base + sign * magnitude
    regression = {
        "l1": (lambda r: (lambda a, b: F.l1_loss(a, b, reduction=r)), {}),
        "smooth_l1_beta0.5": (lambda r: (lambda a, b: F.smooth_l1_loss(a, b, beta=0.5, reduction=r)), {"beta": 0.5}),
        "smooth_l1_beta0": (lambda r: (lambda a, b: F.smooth_l1_loss(a, b, beta=0.0, reduction=r)), {"beta": 0.0}),
        "mse": (lambda r: (lambda a, b: F.mse_loss(a, b, reduction=r)), {}),
    }
    for loss_name, (make, extra) in regression.items():
        for reduction in REDUCTIONS:
            x, y = leaf(base), leaf(other)
            cases[f"{loss_name}_{reduction}"] = {
                "params": {"reduction": reduction, **extra},
                "tensors": run(make(reduction), [x, y], reduction, ["input", "target"])}

    ce_logits = torch.randn(6, 4, dtype=torch.float64) * 2
    ce_logits[0, :] = torch.tensor([60.0, -60.0, 10.0, 0.0])
    labels = torch.tensor([1, 3, 0, 2, 1, 3])
    for reduction in REDUCTIONS:
        for ignore in [None, 3]:
            x = leaf(ce_logits)
            kwargs = {} if ignore is None else {"ignore_index": ignore}
            tensors = run(lambda a: F.cross_entropy(a, labels, reduction=reduction, **kwargs), [x], reduction,
                          ["logits"])
            tensors["target"] = labels
            name = f"ce_{reduction}" + ("" if ignore is None else f"_ignore{ignore}")
            cases[name] = {"params": {"reduction": reduction, "ignore_index": ignore}, "tensors": tensors}

    here = os.path.dirname(os.path.abspath(__file__))
    write_fixture(os.path.normpath(os.path.join(here, "..", "tests", "fixtures", "loss.json")),
                  "tools/make_loss_fixtures.py", cases)


if __name__ == "__main__":
    main()
