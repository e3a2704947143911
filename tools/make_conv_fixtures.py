"""Writes tests/fixtures/conv.json: torch.nn.functional.conv2d outputs and gradients, in float64.

Each case holds x, weight, (bias), the output y, a fixed upstream gradient grad_y and torch's gradients
grad_x, grad_weight, (grad_bias) of sum(y * grad_y). params: stride, padding, dilation ([h, w]), groups.
Run with Debian's torch: /usr/bin/python3 tools/make_conv_fixtures.py
"""
import os

import torch
import torch.nn.functional as F

from fixture_io import write_fixture

# name: (x shape, weight shape, has bias, stride, padding, dilation, groups)
CONFIGS = {
    "basic_3x3_pad1": ((2, 3, 6, 5), (4, 3, 3, 3), True, (1, 1), (1, 1), (1, 1), 1),
    "stride_padding_dilation_rectangular": ((1, 3, 9, 11), (4, 3, 3, 2), True, (2, 3), (1, 2), (2, 1), 1),
    "groups_dilated": ((1, 6, 7, 7), (4, 3, 3, 3), True, (1, 1), (2, 2), (2, 2), 2),
    "depthwise_stride2": ((2, 4, 8, 7), (4, 1, 3, 3), True, (2, 2), (1, 1), (1, 1), 4),
    "depthwise_multiplier_no_bias": ((1, 3, 6, 6), (6, 1, 3, 3), False, (1, 1), (1, 1), (1, 1), 3),
    "pointwise_no_bias": ((2, 6, 5, 4), (3, 6, 1, 1), False, (1, 1), (0, 0), (1, 1), 1),
    "pointwise_stride2": ((1, 4, 7, 6), (5, 4, 1, 1), True, (2, 2), (0, 0), (1, 1), 1),
    "stem_7x7_stride2_pad3": ((1, 3, 12, 11), (2, 3, 7, 7), True, (2, 2), (3, 3), (1, 1), 1),
    "padding_wider_than_kernel": ((1, 2, 4, 5), (3, 2, 2, 2), True, (2, 2), (3, 2), (1, 1), 1),
}


def make_case(gen, x_shape, w_shape, has_bias, stride, padding, dilation, groups):
    def leaf(shape):
        return torch.randn(shape, generator=gen, dtype=torch.float64, requires_grad=True)

    x = leaf(x_shape)
    weight = leaf(w_shape)
    bias = leaf(w_shape[0]) if has_bias else None
    y = F.conv2d(x, weight, bias, stride=stride, padding=padding, dilation=dilation, groups=groups)
    grad_y = torch.randn(y.shape, generator=gen, dtype=torch.float64)
    y.backward(grad_y)
    tensors = {"x": x, "weight": weight, "y": y, "grad_y": grad_y}
    tensors.update({"grad_x": x.grad, "grad_weight": weight.grad})
    if has_bias:
        tensors["bias"] = bias
        tensors["grad_bias"] = bias.grad
    params = {"stride": list(stride), "padding": list(padding), "dilation": list(dilation), "groups": groups}
    return {"params": params, "tensors": tensors}


def main():
    gen = torch.Generator().manual_seed(2021)
    cases = {name: make_case(gen, *config) for name, config in CONFIGS.items()}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    write_fixture(os.path.join(root, "tests", "fixtures", "conv.json"), "tools/make_conv_fixtures.py", cases)


if __name__ == "__main__":
    main()
