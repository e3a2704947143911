"""Writes tests/fixtures/norm.json: torch's batch_norm, group_norm and layer_norm in float64.

Each case holds the inputs x, (weight, bias), the output y, a fixed upstream gradient grad_y and torch's
gradients grad_x, (grad_weight, grad_bias) of sum(y * grad_y). Batch-norm cases also hold the running
statistics before (running_mean, running_var) and after (running_mean_out, running_var_out) the call.
params: op, eps, and per op training/momentum, num_groups or normalized_shape. Inputs are rounded to
float32 first, so the f32 test starts from exactly the values torch saw.
Run with Debian's torch: /usr/bin/python3 tools/make_norm_fixtures.py
"""
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch
import torch.nn.functional as F

from fixture_io import write_fixture

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.normpath(os.path.join(HERE, "..", "tests", "fixtures", "norm.json"))


def f32_exact(t):
    return t.float().double()


def leaf(gen, shape, scale=1.0, shift=0.0):
    return f32_exact(torch.randn(shape, generator=gen, dtype=torch.float64) * scale + shift).requires_grad_()


def positive(gen, shape, low, high):
    return f32_exact(torch.rand(shape, generator=gen, dtype=torch.float64) * (high - low) + low)


def finish(gen, y, tensors, leaves, params):
    grad_y = f32_exact(torch.randn(y.shape, generator=gen, dtype=torch.float64))
    y.backward(grad_y)
    tensors.update({"y": y, "grad_y": grad_y})
    for name, t in leaves.items():
        tensors[name] = t
        tensors["grad_" + name] = t.grad
    return {"params": params, "tensors": tensors}


def batch_norm_case(gen, shape, affine, running, training, momentum, eps):
    c = shape[1]
    # A mean far from zero and a spread far from one, per channel, so normalising does real work.
    x = leaf(gen, shape, scale=2.5, shift=1.5)
    leaves = {"x": x}
    weight = bias = None
    if affine:
        weight = leaf(gen, (c,), scale=0.5, shift=1.0)
        bias = leaf(gen, (c,), scale=0.5)
        leaves.update({"weight": weight, "bias": bias})
    tensors = {}
    rm = rv = None
    if running:
        rm = f32_exact(torch.randn(c, generator=gen, dtype=torch.float64) * 0.5)
        rv = positive(gen, (c,), 0.5, 2.0)
        tensors.update({"running_mean": rm.clone(), "running_var": rv.clone()})
    y = F.batch_norm(x, rm, rv, weight, bias, training=training, momentum=momentum, eps=eps)
    if running:
        tensors.update({"running_mean_out": rm.clone(), "running_var_out": rv.clone()})
    params = {"op": "batch_norm", "training": training, "momentum": momentum, "eps": eps}
    return finish(gen, y, tensors, leaves, params)


def group_norm_case(gen, shape, groups, affine, eps):
    c = shape[1]
    x = leaf(gen, shape, scale=2.0, shift=-0.7)
    leaves = {"x": x}
    weight = bias = None
    if affine:
        weight = leaf(gen, (c,), scale=0.5, shift=1.0)
        bias = leaf(gen, (c,), scale=0.5)
        leaves.update({"weight": weight, "bias": bias})
    y = F.group_norm(x, groups, weight, bias, eps=eps)
    return finish(gen, y, {}, leaves, {"op": "group_norm", "num_groups": groups, "eps": eps})


def layer_norm_case(gen, shape, normalized_shape, affine, eps):
    x = leaf(gen, shape, scale=1.5, shift=0.8)
    leaves = {"x": x}
    weight = bias = None
    if affine:
        weight = leaf(gen, normalized_shape, scale=0.5, shift=1.0)
        bias = leaf(gen, normalized_shape, scale=0.5)
        leaves.update({"weight": weight, "bias": bias})
    y = F.layer_norm(x, normalized_shape, weight, bias, eps=eps)
    params = {"op": "layer_norm", "normalized_shape": list(normalized_shape), "eps": eps}
    return finish(gen, y, {}, leaves, params)


def main():
    gen = torch.Generator().manual_seed(2024)
    cases = {
        "batch_norm_train_4d": batch_norm_case(gen, (3, 4, 2, 3), True, True, True, 0.1, 1e-5),
        "batch_norm_train_2d_no_affine": batch_norm_case(gen, (6, 3), False, True, True, 0.3, 1e-3),
        "batch_norm_train_no_running_stats": batch_norm_case(gen, (2, 3, 5), True, False, True, 0.1, 1e-5),
        "batch_norm_eval_4d": batch_norm_case(gen, (2, 3, 2, 2), True, True, False, 0.1, 1e-5),
        "batch_norm_eval_no_affine": batch_norm_case(gen, (2, 3, 4), False, True, False, 0.1, 1e-4),
        "group_norm_3_groups": group_norm_case(gen, (2, 6, 2, 3), 3, True, 1e-5),
        "group_norm_1_group_no_affine": group_norm_case(gen, (2, 4, 5), 1, False, 1e-5),
        "group_norm_groups_eq_channels": group_norm_case(gen, (3, 4, 2, 2), 4, True, 1e-3),
        "layer_norm_last_two_dims": layer_norm_case(gen, (2, 3, 4, 5), (4, 5), True, 1e-5),
        "layer_norm_no_affine": layer_norm_case(gen, (3, 2, 6), (6,), False, 1e-5),
        "layer_norm_rows": layer_norm_case(gen, (5, 8), (8,), True, 1e-6),
    }
    write_fixture(OUT, "tools/make_norm_fixtures.py", cases)


if __name__ == "__main__":
    main()
