#!/usr/bin/python3
"""Parity fixtures for layers/: torch.nn.MultiheadAttention with a key padding mask.

Writes tests/fixtures/layers.json: the weights (torch names), inputs, the output, the head-averaged
attention weights torch returns, and the gradients of sum(output * projection) w.r.t. every input and weight.
  /usr/bin/python3 tools/make_layer_fixtures.py
"""
import os

import torch

from fixture_io import write_fixture


def mha_case(seed, L, S, B, E, H, masked):
    torch.manual_seed(seed)
    mha = torch.nn.MultiheadAttention(E, H).double()
    with torch.no_grad():  # non-zero biases so every term is exercised
        mha.in_proj_bias.normal_(0, 0.1)
        mha.out_proj.bias.normal_(0, 0.1)
    q = torch.randn(L, B, E, dtype=torch.float64, requires_grad=True)
    k = torch.randn(S, B, E, dtype=torch.float64, requires_grad=True)
    v = torch.randn(S, B, E, dtype=torch.float64, requires_grad=True)
    mask = torch.zeros(B, S, dtype=torch.bool)
    if masked:
        mask[0, -2:] = True
        mask[-1, :1] = True
    out, weights = mha(q, k, v, key_padding_mask=mask if masked else None, need_weights=True)
    projection = torch.randn_like(out)
    (out * projection).sum().backward()
    tensors = {"query": q, "key": k, "value": v, "mask": mask.double(), "output": out, "weights": weights,
               "projection": projection, "grad_query": q.grad, "grad_key": k.grad, "grad_value": v.grad}
    for name, p in mha.named_parameters():
        tensors[name] = p
        tensors["grad_" + name] = p.grad
    return {"params": {"embed_dim": E, "num_heads": H, "masked": masked}, "tensors": tensors}


def main():
    out = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "layers.json")
    write_fixture(out, "tools/make_layer_fixtures.py", {
        "mha_masked": mha_case(0, L=3, S=5, B=2, E=8, H=2, masked=True),
        "mha_plain": mha_case(1, L=4, S=3, B=1, E=6, H=3, masked=False),
    })


if __name__ == "__main__":
    main()
