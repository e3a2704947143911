#!/usr/bin/python3
"""Parity fixtures for distill/ (the ICD method), computed by tools/icd_reference.py in float64.

Writes tests/fixtures/icd.json with three cases:
  descriptors  explicit queries of two images (real and fake boxes, labels, jitter) -> descriptors, padding
               and real masks, localisation targets; plus the scale bins of a list of sizes.
  pipeline     three images (2, 0 and 1 real boxes) with given fake boxes and jitter, teacher and student
               FPN levels p3..p7 of a 32x48 padded batch, every weight of the distiller: the query masks and
               targets, the key padding mask, position embedding, encoder output q0, decoder outputs (g,
               logits, value), the predictions, the three losses, and the gradients of
               aux_conf + aux_reg + distill w.r.t. q0, every weight (but the first encoder layer's) and the
               student features.
  fitnet       two levels, a 1x1 adapter per level: the loss and its gradients.
Inputs that the C++ side reads back are rounded to multiples of 2^-12 so they are exact in both languages
and short in JSON. -inf logits are stored as 0 with the padding mask beside them (JSON has no infinity).
  /usr/bin/python3 tools/make_icd_fixtures.py
"""
import os

import torch

import icd_reference as ref
from fixture_io import write_fixture

DT = torch.float64


def exact(t):
    """Rounds to a multiple of 2^-12: representable exactly and printed short."""
    return torch.round(t * 4096.0) / 4096.0


def rand(*shape, scale=1.0):
    return exact((torch.rand(*shape, dtype=DT) * 2 - 1) * scale)


def image_inputs(prefix, im):
    return {prefix + "boxes": im["boxes"], prefix + "labels": im["labels"].double(), prefix + "jitter": im["jitter"]}


def descriptors_case():
    torch.manual_seed(0)
    num_classes = 3
    images = [
        {"height": 600, "width": 800, "num_real": 1,
         # real: 700 x 100 px (bins 4 and 1); fake: 30 x 200 px (bins 0 and 2)
         "boxes": torch.tensor([[40.0, 300.0, 740.0, 400.0], [500.0, 100.0, 530.0, 300.0]], dtype=DT),
         "labels": torch.tensor([2, 1]),
         "jitter": torch.tensor([[0.25, -0.125], [-0.3, 0.0625]], dtype=DT)},
        {"height": 480, "width": 640, "num_real": 0,
         # fake: 150 x 400 px (bins 2 and 3)
         "boxes": torch.tensor([[10.0, 40.0, 160.0, 440.0]], dtype=DT),
         "labels": torch.tensor([0]),
         "jitter": torch.tensor([[0.1875, 0.2890625]], dtype=DT)},
    ]
    desc, padding, real, targets = ref.batch_queries(images, num_classes)
    sizes = torch.tensor([0.0, 0.5, 1.0, 32.0, 64.0, 64.6, 128.0, 130.0, 258.0, 260.0, 517.0, 520.0, 5000.0],
                         dtype=DT)
    tensors = {"descriptors": desc, "padding_mask": padding, "real_mask": real, "targets": targets,
               "scale_sizes": sizes, "scale_bins": ref.scale_bin(sizes).double()}
    for i, im in enumerate(images):
        tensors.update(image_inputs(f"image{i}_", im))
    params = {"num_classes": num_classes, "heights": [im["height"] for im in images],
              "widths": [im["width"] for im in images], "num_real": [im["num_real"] for im in images]}
    return {"params": params, "tensors": tensors}


def random_box(height, width):
    w = float(torch.randint(4, width // 2, ()))
    h = float(torch.randint(4, height // 2, ()))
    x1 = float(torch.randint(0, width - int(w), ()))
    y1 = float(torch.randint(0, height - int(h), ()))
    return [x1, y1, x1 + w, y1 + h]


def linear_params(p, name, out_features, in_features, scale):
    p[name + ".weight"] = rand(out_features, in_features, scale=scale)
    p[name + ".bias"] = rand(out_features, scale=0.1)


def pipeline_case():
    torch.manual_seed(1)
    K, C, heads, ffn, lam, neg_pos_ratio = 3, 8, 2, 16, 8.0, 1
    D = K + 2 * ref.POINT_FEATURES + 2 * ref.SCALE_BINS
    padded = (32, 48)
    level_sizes = [(4, 6), (2, 3), (1, 2), (1, 1), (1, 1)]
    image_hws = [(32, 30), (16, 48), (24, 44)]
    num_real = [2, 0, 1]
    images = []
    for (h, w), n in zip(image_hws, num_real):
        k = ref.query_count(n, neg_pos_ratio=neg_pos_ratio)
        boxes = torch.tensor([random_box(h, w) for _ in range(k)], dtype=DT)
        labels = torch.randint(0, K, (k,))
        jitter = exact(torch.rand(k, 2, dtype=DT) * 0.6 - 0.3)
        images.append({"height": h, "width": w, "num_real": n, "boxes": boxes, "labels": labels, "jitter": jitter})

    p = {}
    linear_params(p, "encoder.layers.0", C, D, 0.2)
    linear_params(p, "encoder.layers.1", C, C, 0.5)
    linear_params(p, "encoder.layers.2", C, C, 0.5)
    linear_params(p, "decoder.pos_proj", C, C, 0.5)
    p["decoder.multihead_attn.in_proj_weight"] = rand(3 * C, C, scale=0.6)
    p["decoder.multihead_attn.in_proj_bias"] = rand(3 * C, scale=0.1)
    linear_params(p, "decoder.multihead_attn.out_proj", C, C, 0.5)
    p["decoder.norm1.weight"] = exact(1 + rand(C, scale=0.2))
    p["decoder.norm1.bias"] = rand(C, scale=0.1)
    linear_params(p, "decoder.linear1", ffn, C, 0.5)
    linear_params(p, "decoder.linear2", C, ffn, 0.4)
    p["decoder.norm2.weight"] = exact(1 + rand(C, scale=0.2))
    p["decoder.norm2.bias"] = rand(C, scale=0.1)
    linear_params(p, "predictor.layers.0", C, C, 0.5)
    linear_params(p, "predictor.layers.1", C, C, 0.5)
    linear_params(p, "predictor.layers.2", 5, C, 0.5)
    linear_params(p, "student_adapter", C, C, 0.5)
    for t in p.values():
        t.requires_grad_(True)

    B = len(images)
    teacher = [rand(B, C, h, w) for (h, w) in level_sizes]
    student = [rand(B, C, h, w).requires_grad_(True) for (h, w) in level_sizes]

    desc, padding, real, targets = ref.batch_queries(images, K)
    q0 = ref.mlp(desc, [(p[f"encoder.layers.{i}.weight"], p[f"encoder.layers.{i}.bias"]) for i in range(3)])
    q0.retain_grad()
    masks = ref.level_padding_masks(level_sizes, padded, image_hws)
    features = ref.flatten_levels(teacher)
    position = ref.flatten_levels([ref.sine_position_embedding(m, C) for m in masks])
    key_padding = torch.cat([m.flatten(1) for m in masks], dim=1)
    dec = {k[len("decoder."):]: v for k, v in p.items() if k.startswith("decoder.")}
    g, logits, value = ref.decoder(q0.permute(1, 0, 2), features, key_padding, position, dec, heads)
    predictions = ref.mlp(g, [(p[f"predictor.layers.{i}.weight"], p[f"predictor.layers.{i}.bias"])
                              for i in range(3)]).permute(1, 0, 2)
    aux_conf, aux_reg = ref.auxiliary_losses(predictions, padding, real, targets)
    S = features.shape[0]
    student_value = torch.nn.functional.linear(ref.flatten_levels(student), p["student_adapter.weight"],
                                               p["student_adapter.bias"]).reshape(S, B, heads, C // heads)
    distill = ref.distill_loss(student_value, value, logits, real, lam)
    (aux_conf + aux_reg + distill).backward()

    finite_logits = logits.detach().masked_fill(torch.isinf(logits), 0.0)
    # The descriptors themselves are compared in the "descriptors" case; here q0 = MLP(descriptors) checks them.
    tensors = {"padding_mask": padding, "real_mask": real, "targets": targets,
               "key_padding_mask": key_padding.double(), "position": position, "q0": q0, "g": g,
               "logits": finite_logits, "value": value, "predictions": predictions,
               "aux_conf": aux_conf, "aux_reg": aux_reg, "distill": distill, "grad_q0": q0.grad}
    for i, im in enumerate(images):
        tensors.update(image_inputs(f"image{i}_", im))
    for i, (t, s) in enumerate(zip(teacher, student)):
        tensors[f"teacher_p{i + 3}"] = t
        tensors[f"student_p{i + 3}"] = s
        tensors[f"grad_student_p{i + 3}"] = s.grad
    for name, t in p.items():
        tensors[name] = t
        # The first encoder weight is K + 266 wide; its gradient follows from grad_q0 by the chain rule
        # (the MLP itself is gradient-checked), so it is left out to keep the file small.
        if name != "encoder.layers.0.weight":
            tensors["grad_" + name] = t.grad
    params = {"num_classes": K, "hidden_dim": C, "num_heads": heads, "ffn_dim": ffn, "distill_weight": lam,
              "neg_pos_ratio": neg_pos_ratio, "padded_height": padded[0], "padded_width": padded[1],
              "heights": [h for h, _ in image_hws], "widths": [w for _, w in image_hws], "num_real": num_real}
    return {"params": params, "tensors": tensors}


def fitnet_case():
    torch.manual_seed(2)
    B, Cs, Ct = 2, 3, 4
    level_sizes = [(2, 3), (1, 2)]
    student = [rand(B, Cs, h, w).requires_grad_(True) for (h, w) in level_sizes]
    teacher = [rand(B, Ct, h, w) for (h, w) in level_sizes]
    adapters = [(rand(Ct, Cs, 1, 1, scale=0.5).requires_grad_(True), rand(Ct, scale=0.1).requires_grad_(True))
                for _ in level_sizes]
    loss = ref.fitnet_loss(student, teacher, adapters)
    loss.backward()
    tensors = {"loss": loss}
    for i, (s, t, (w, b)) in enumerate(zip(student, teacher, adapters)):
        tensors.update({f"student{i}": s, f"teacher{i}": t, f"adapters.{i}.weight": w, f"adapters.{i}.bias": b,
                        f"grad_student{i}": s.grad, f"grad_adapters.{i}.weight": w.grad,
                        f"grad_adapters.{i}.bias": b.grad})
    return {"params": {"student_channels": Cs, "teacher_channels": Ct, "num_levels": len(level_sizes)},
            "tensors": tensors}


def main():
    out = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "icd.json")
    write_fixture(out, "tools/make_icd_fixtures.py", {
        "descriptors": descriptors_case(),
        "pipeline": pipeline_case(),
        "fitnet": fitnet_case(),
    })


if __name__ == "__main__":
    main()
