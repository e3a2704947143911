"""Parity fixtures for engine/optim/: torch.optim.SGD and AdamW steps, detectron2's learning-rate
schedules, and torch.nn.utils gradient clipping, all in float64.

Run with Debian's torch: /usr/bin/python3 tools/make_optim_fixtures.py  (writes tests/fixtures/optim.json)

Optimizer cases hold the initial parameters p{i}, the gradient of each step g{step}_{i} (absent: the
parameter has no gradient in that step), the learning rate of each step (`lrs`) and the parameters after
each step, after{step}_{i}.

detectron2 and fvcore are not installed here, so the schedule reference is their code transcribed below
(fvcore/common/param_scheduler.py and detectron2/solver/{build,lr_scheduler}.py): WarmupParamScheduler
over MultiStepParamScheduler or CosineParamScheduler, evaluated by LRMultiplier at iter / max_iter.
"""
import bisect
import math
import os

import torch

from fixture_io import write_fixture

torch.manual_seed(0)
SHAPES = [(3, 4), (5,), (2, 1, 3)]
STEPS = 4


def optimizer_case(make_optimizer, params_desc, lrs, skip):
    """Runs len(lrs) steps; skip is a set of (step, param) pairs whose gradient is None."""
    params = [torch.randn(s, dtype=torch.float64, requires_grad=True) for s in SHAPES]
    tensors = {f"p{i}": p.detach().clone() for i, p in enumerate(params)}
    opt = make_optimizer(params)
    for step, lr in enumerate(lrs):
        for group in opt.param_groups:
            group["lr"] = lr
        for i, p in enumerate(params):
            if (step, i) in skip:
                p.grad = None
            else:
                g = torch.randn(p.shape, dtype=torch.float64)
                p.grad = g.clone()
                tensors[f"g{step}_{i}"] = g
        opt.step()
        for i, p in enumerate(params):
            tensors[f"after{step}_{i}"] = p.detach().clone()
    tensors["lrs"] = torch.tensor(lrs, dtype=torch.float64)
    return {"params": {**params_desc, "steps": len(lrs), "num_params": len(SHAPES)}, "tensors": tensors}


# ---- fvcore / detectron2 schedules, transcribed
WHERE_EPSILON = 1e-6


class MultiStep:
    def __init__(self, values, num_updates, milestones):
        self.values, self.num_updates, self.milestones = values, num_updates, milestones

    def __call__(self, where):
        epoch_num = int((where + WHERE_EPSILON) * self.num_updates)
        return self.values[bisect.bisect_right(self.milestones, epoch_num)]


class Cosine:
    def __init__(self, start, end):
        self.start, self.end = start, end

    def __call__(self, where):
        return self.end + 0.5 * (self.start - self.end) * (1 + math.cos(math.pi * where))


class Linear:
    def __init__(self, start, end):
        self.start, self.end = start, end

    def __call__(self, where):
        return self.end * where + self.start * (1 - where)


class Warmup:  # CompositeParamScheduler([Linear, scheduler], ["rescaled", "fixed"], [length, 1 - length])
    def __init__(self, scheduler, factor, length):
        self.scheduler, self.length = scheduler, length
        self.warmup = Linear(factor * scheduler(0.0), scheduler(length))

    def __call__(self, where):
        if where + WHERE_EPSILON <= self.length:
            return self.warmup(where / self.length)
        return self.scheduler(where)


def multistep_lrs(base_lr, max_iter, milestones, gamma, warmup_factor, warmup_iters, iters):
    steps = [x for x in milestones if x <= max_iter]
    sched = MultiStep([gamma ** k for k in range(len(steps) + 1)], max_iter, steps)
    sched = Warmup(sched, warmup_factor, min(warmup_iters / max_iter, 1.0))
    return [base_lr * sched(i / max_iter) for i in iters]


def cosine_lrs(base_lr, max_iter, final_lr, warmup_factor, warmup_iters, iters):
    sched = Warmup(Cosine(1, final_lr / base_lr), warmup_factor, min(warmup_iters / max_iter, 1.0))
    return [base_lr * sched(i / max_iter) for i in iters]


def schedule_case(kind, lrs_fn, iters, **params):
    lrs = lrs_fn(iters=iters, **params)
    return {"params": {"kind": kind, **params},
            "tensors": {"iters": torch.tensor(iters, dtype=torch.float64), "lr": torch.tensor(lrs, dtype=torch.float64)}}


def clip_case(kind, value):
    grads = [torch.randn(s, dtype=torch.float64) * 0.7 for s in SHAPES]
    params = [torch.zeros(s, dtype=torch.float64, requires_grad=True) for s in SHAPES]
    for p, g in zip(params[:2], grads[:2]):  # the last parameter has no gradient
        p.grad = g.clone()
    tensors = {f"g{i}": g for i, g in enumerate(grads[:2])}
    if kind == "value":
        torch.nn.utils.clip_grad_value_(params, value)
    else:
        tensors["total_norm"] = torch.nn.utils.clip_grad_norm_(params, value).reshape(1)
    for i, p in enumerate(params[:2]):
        tensors[f"clipped{i}"] = p.grad
    return {"params": {"kind": kind, "value": value}, "tensors": tensors}


def main():
    lrs = [0.1, 0.05, 0.05, 0.02]
    skip = {(1, 1), (0, 2)}  # parameter 2 first gets a gradient in step 1: its state starts late
    cases = {}
    sgd_configs = {
        "sgd_plain": dict(momentum=0.0, weight_decay=0.0, nesterov=False, dampening=0.0),
        "sgd_momentum_wd": dict(momentum=0.9, weight_decay=1e-4, nesterov=False, dampening=0.0),
        "sgd_nesterov_wd": dict(momentum=0.9, weight_decay=0.01, nesterov=True, dampening=0.0),
        "sgd_dampening": dict(momentum=0.5, weight_decay=0.0, nesterov=False, dampening=0.1),
    }
    for name, cfg in sgd_configs.items():
        cases[name] = optimizer_case(lambda ps: torch.optim.SGD(ps, lr=lrs[0], **cfg), {"optimizer": "sgd", **cfg},
                                     lrs, skip)
    adamw_configs = {
        "adamw_default": dict(betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2),
        "adamw_icd": dict(betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-4),
        "adamw_custom": dict(betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1),
    }
    adam_lrs = [1e-3, 1e-3, 5e-4, 1e-2]
    for name, cfg in adamw_configs.items():
        desc = {"optimizer": "adamw", "beta1": cfg["betas"][0], "beta2": cfg["betas"][1], "eps": cfg["eps"],
                "weight_decay": cfg["weight_decay"]}
        cases[name] = optimizer_case(lambda ps: torch.optim.AdamW(ps, lr=adam_lrs[0], **cfg), desc, adam_lrs, skip)

    paper_iters = [0, 1, 10, 500, 999, 1000, 1001, 30000, 59999, 60000, 60001, 79999, 80000, 89999, 90000]
    cases["multistep_paper"] = schedule_case("multistep", multistep_lrs, paper_iters, base_lr=0.01, max_iter=90000,
                                             milestones=[60000, 80000], gamma=0.1, warmup_factor=0.001,
                                             warmup_iters=1000)
    cases["multistep_milestone_in_warmup"] = schedule_case(
        "multistep", multistep_lrs, list(range(21)), base_lr=0.02, max_iter=20, milestones=[5, 12], gamma=0.5,
        warmup_factor=0.1, warmup_iters=8)
    cases["multistep_no_warmup"] = schedule_case("multistep", multistep_lrs, list(range(11)), base_lr=0.1,
                                                 max_iter=10, milestones=[3, 7], gamma=0.1, warmup_factor=0.001,
                                                 warmup_iters=0)
    cases["cosine_paper"] = schedule_case("cosine", cosine_lrs, [0, 1, 5, 9, 10, 11, 45000, 89999, 90000],
                                          base_lr=1e-4, max_iter=90000, final_lr=0.0, warmup_factor=1.0,
                                          warmup_iters=10)
    cases["cosine_final_value"] = schedule_case("cosine", cosine_lrs, list(range(31)), base_lr=0.1, max_iter=30,
                                                final_lr=0.001, warmup_factor=0.01, warmup_iters=6)
    cases["cosine_warmup_longer_than_run"] = schedule_case("cosine", cosine_lrs, list(range(11)), base_lr=0.1,
                                                           max_iter=10, final_lr=0.01, warmup_factor=0.01,
                                                           warmup_iters=20)

    cases["clip_value"] = clip_case("value", 0.5)
    cases["clip_norm_active"] = clip_case("norm", 1.0)
    cases["clip_norm_inactive"] = clip_case("norm", 100.0)

    here = os.path.dirname(os.path.abspath(__file__))
    write_fixture(os.path.normpath(os.path.join(here, "..", "tests", "fixtures", "optim.json")),
                  "tools/make_optim_fixtures.py", cases)


if __name__ == "__main__":
    main()
