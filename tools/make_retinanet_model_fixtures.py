#!/usr/bin/python3
"""Parity fixture for the whole RetinaNet (models/retinanet) against torchvision 0.14, in float64.

The model is torchvision's retinanet_resnet50_fpn as it is built for training from pretrained weights
(FrozenBatchNorm2d everywhere, trainable_backbone_layers=3, returned_layers=[2, 3, 4], LastLevelP6P7 with
P6 from P5, the default anchors, matcher, box coder, losses and postprocessing), made small: a ResNet-18
body, FPN_CHANNELS wide pyramid and head, NUM_CLASSES classes. tests/test_retinanet_model.cpp builds the
same model from torchvision_retinanet_config(18, NUM_CLASSES) with fpn_channels = FPN_CHANNELS.

Weights and input come from the closed formula of tools/make_resnet_fixtures.py (a hash of the name and
element index), so none are stored. The head's two output convolutions are the exception: cls_logits.weight
and bbox_reg.weight are the formula times CLS_LOGITS_WEIGHT_SCALE and BBOX_REG_WEIGHT_SCALE, and
cls_logits.bias is the formula plus CLS_LOGITS_BIAS_SHIFT, so the scores spread out and a few dozen
detections come out; and a few BN / conv biases get small per-channel nudges (stored in the fixture) so that
no ReLU input sits at its kink, where f32 rounding could flip the mask (nudge_kinks).

GeneralizedRCNNTransform is bypassed: the input is already normalised and padded to 128 x 256 (two images),
and the pieces are called one by one (backbone, head, anchor_generator, compute_loss, postprocess_detections,
resize_boxes), as RetinaNet.forward does. The padded size is a multiple of 128 on purpose: torchvision
derives each level's anchor stride as image_size // feature_size, which is not the level's true stride
when the P6/P7 maps round up (e.g. 160 // 3 = 53 instead of 64); our anchors always use the true strides.

The fixture holds, for the f64 run: the loss values, number of foreground anchors, summaries (sum, sum of
|x|, 64 evenly spaced values, as tools/make_resnet_fixtures.py) of the flattened head outputs and of each
level's part, the gradient summary of every trainable parameter for classification + bbox_regression, the
state-dict names and shapes, which parameters are trainable, the kink nudges, and the detections whole. The generator
checks that the detections cannot be changed by f32 rounding: torch's own f32 run gives the same ones, and
so does postprocessing the f64 head outputs with noise of 1e-4 added (ten times the f32 error of the
logits), so no score threshold, score order or NMS decision sits on a knife edge in this case.
  /usr/bin/python3 tools/make_retinanet_model_fixtures.py
"""
import os

import torch
from torchvision.models import resnet18
from torchvision.models.detection.backbone_utils import BackboneWithFPN, _resnet_fpn_extractor
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.retinanet import RetinaNet
from torchvision.models.detection.transform import resize_boxes
from torchvision.ops import box_iou
from torchvision.ops import misc as misc_nn_ops
from torchvision.ops.feature_pyramid_network import LastLevelP6P7

from fixture_io import write_fixture
from make_resnet_fixtures import formula, summary

NUM_CLASSES = 5
FPN_CHANNELS = 64
# The pyramid features of these closed-form weights are large (std ~400: nothing normalises them), so the
# two output convolutions are scaled down to give logits of std ~2.5 and box deltas of std ~0.4; the logits'
# bias is moved to -11 so that a few dozen detections per image pass the 0.05 score threshold, not
# thousands, and no two of them have nearly equal scores.
CLS_LOGITS_WEIGHT_SCALE = 0.006
BBOX_REG_WEIGHT_SCALE = 0.001
CLS_LOGITS_BIAS_SHIFT = -11.0
KINK_MARGIN = 1e-4  # see nudge_kinks
BATCH, HEIGHT, WIDTH = 2, 128, 256
# (input height, width): the image inside the padded batch; (original height, width): its size before
# resizing, the frame detections are reported in. Ratios exact in f32 (torchvision computes them in f32).
SIZES = [((120, 248), (60, 124)), ((128, 256), (192, 384))]
TARGETS = [  # boxes (x1, y1, x2, y2) in input pixels, labels
    ([[40.0, 30.0, 74.0, 70.0], [120.0, 20.0, 220.0, 70.0], [10.0, 64.0, 58.0, 112.0], [150.0, 80.0, 166.0, 95.0]],
     [0, 3, 1, 4]),
    ([[60.0, 10.0, 190.0, 118.0]], [2]),
]


def build_model():
    """retinanet_resnet50_fpn's construction with weights (FrozenBN, 3 trainable layers), ResNet-18, small."""
    body = resnet18(norm_layer=misc_nn_ops.FrozenBatchNorm2d)
    if FPN_CHANNELS == 256:
        backbone = _resnet_fpn_extractor(body, 3, returned_layers=[2, 3, 4],
                                         extra_blocks=LastLevelP6P7(256, 256))
    else:  # _resnet_fpn_extractor with its out_channels = 256 replaced
        for name, parameter in body.named_parameters():
            if not name.startswith(("layer4", "layer3", "layer2")):
                parameter.requires_grad_(False)
        backbone = BackboneWithFPN(body, {"layer2": "0", "layer3": "1", "layer4": "2"}, [128, 256, 512],
                                   FPN_CHANNELS, extra_blocks=LastLevelP6P7(FPN_CHANNELS, FPN_CHANNELS))
    return RetinaNet(backbone, NUM_CLASSES)


def model_weight(name, shape, nudges):
    """The closed form, the head's output convolutions rescaled, and the kink nudges added."""
    value = formula(name, shape)
    if name.endswith("cls_logits.weight"):
        value = value * CLS_LOGITS_WEIGHT_SCALE
    elif name.endswith("bbox_reg.weight"):
        value = value * BBOX_REG_WEIGHT_SCALE
    elif name.endswith("cls_logits.bias"):
        value = value + CLS_LOGITS_BIAS_SHIFT
    for channel, delta in nudges.get(name, {}).items():
        value[channel] = value[channel] + delta
    return value


def build_weighted_model(dtype, nudges):
    torch.manual_seed(0)
    model = build_model().to(dtype)
    with torch.no_grad():
        for name, t in list(model.named_parameters()) + list(model.named_buffers()):
            t.copy_(model_weight(name, tuple(t.shape), nudges))
    return model


def images_of(dtype):
    return formula("input", (BATCH, 3, HEIGHT, WIDTH)).to(dtype)


# ------------------------------------------------------------------------------------------ ReLU kinks
def relu_inputs(nudges):
    """The input of every ReLU whose mask the trainable parameters' gradients depend on (layer2 onwards,
    P6 -> P7, the head towers), as {bias that shifts it: [C, elements]}, in forward order."""
    model = build_weighted_model(torch.float64, nudges)
    calls = {}

    def keep(key):
        return lambda module, inputs: calls.setdefault(key, []).append(inputs[0].detach().clone())

    hooks = []
    for name, module in model.backbone.body.named_children():
        if name in ("layer2", "layer3", "layer4"):
            for index, block in module.named_children():
                hooks.append(block.relu.register_forward_pre_hook(keep(f"backbone.body.{name}.{index}")))
    hooks.append(model.backbone.fpn.extra_blocks.p6.register_forward_hook(
        lambda module, inputs, output: calls.setdefault("p6", []).append(output.detach().clone())))
    for tower in ("classification_head", "regression_head"):
        for index, layer in enumerate(getattr(model.head, tower).conv):
            hooks.append(layer[1].register_forward_pre_hook(keep(f"head.{tower}.conv.{index}")))
    with torch.no_grad():
        model.head(list(model.backbone(images_of(torch.float64)).values()))
    for h in hooks:
        h.remove()

    def per_channel(tensors):
        return torch.cat([t.transpose(0, 1).reshape(t.shape[1], -1) for t in tensors], dim=1)

    sites = {}
    for key, tensors in calls.items():
        if key.startswith("backbone.body"):  # a BasicBlock's ReLU runs twice: after bn1, after the sum
            sites[key + ".bn1.bias"] = per_channel(tensors[:1])
            sites[key + ".bn2.bias"] = per_channel(tensors[1:])
        elif key == "p6":
            sites["backbone.fpn.extra_blocks.p6.bias"] = per_channel(tensors)
        else:  # one call per pyramid level
            sites[key + ".0.bias"] = per_channel(tensors)
    return sites


def nudge_kinks():
    """Per-channel bias nudges so that no ReLU input lies within KINK_MARGIN standard deviations of 0.
    Rounding moves a ReLU input by up to ~6e-6 of its standard deviation in f32; one input that changes
    sign flips a mask and moves the gradient of every earlier layer by ~1e-3, so the f32 comparison
    would measure that flip, not the arithmetic. The sites are fixed in forward order, so a nudge never
    disturbs a site already fixed, and each nudge is the smallest multiple of the margin that clears
    its channel."""
    nudges = {}
    order = list(relu_inputs(nudges).keys())
    for site in order:
        x = relu_inputs(nudges)[site]
        margin = KINK_MARGIN * float(x.std())
        for channel in range(x.shape[0]):
            values = x[channel]
            if float(values.abs().min()) >= margin:
                continue
            nearest = float(values[values.abs().argmin()])
            direction = 1.0 if nearest >= 0 else -1.0
            for k in (2, 3, 4, 6, 8, 12, 16, 24, 32):
                delta = next((d for d in (direction * k * margin, -direction * k * margin)
                              if float((values + d).abs().min()) >= margin), None)
                if delta is not None:
                    break
            assert delta is not None, (site, channel)
            nudges.setdefault(site, {})[channel] = delta
    final = relu_inputs(nudges)
    for site, x in final.items():
        assert float(x.abs().min()) >= KINK_MARGIN * float(x.std()), site
    return nudges


def run(dtype, nudges):
    model = build_weighted_model(dtype, nudges)
    images = images_of(dtype)
    targets = [{"boxes": torch.tensor(b, dtype=dtype), "labels": torch.tensor(l, dtype=torch.int64)}
               for b, l in TARGETS]

    features = list(model.backbone(images).values())
    head_outputs = model.head(features)
    image_list = ImageList(images, [s[0] for s in SIZES])
    anchors = model.anchor_generator(image_list, features)
    losses = model.compute_loss(targets, head_outputs, anchors)
    (losses["classification"] + losses["bbox_regression"]).backward()

    num_foreground = 0
    with torch.no_grad():  # the L1 box loss has a kink where a delta equals its target: keep away from it
        for i, (t, a) in enumerate(zip(targets, anchors)):
            matched = model.proposal_matcher(box_iou(t["boxes"], a))
            foreground = matched >= 0
            num_foreground += int(foreground.sum())
            box_targets = model.box_coder.encode_single(t["boxes"][matched[foreground]], a[foreground])
            gap = (head_outputs["bbox_regression"][i][foreground] - box_targets).abs().min()
            assert float(gap) > 1e-4, gap

    per_level = [x.size(2) * x.size(3) * model.anchor_generator.num_anchors_per_location()[0] for x in features]
    with torch.no_grad():
        split_outputs = {k: list(v.split(per_level, dim=1)) for k, v in head_outputs.items()}
        split_anchors = [list(a.split(per_level)) for a in anchors]
        detections = model.postprocess_detections(split_outputs, split_anchors, image_list.image_sizes)
        for d, (input_size, original_size) in zip(detections, SIZES):
            d["boxes"] = resize_boxes(d["boxes"], input_size, original_size)
    return model, features, head_outputs, anchors, losses, num_foreground, per_level, detections


def same_detections(a, b):
    """The same detections in the same order: equal labels, boxes and scores close (a different
    candidate would differ by far more)."""
    return all(torch.equal(x["labels"], y["labels"]) and
               torch.allclose(x["boxes"].double(), y["boxes"].double(), rtol=1e-3, atol=0.05) and
               torch.allclose(x["scores"].double(), y["scores"].double(), rtol=1e-3)
               for x, y in zip(a, b))


def robust_to_noise(model, head_outputs, anchors, per_level, detections, noise=1e-4, trials=8):
    generator = torch.Generator().manual_seed(1)
    split_anchors = [list(a.split(per_level)) for a in anchors]
    with torch.no_grad():
        for _ in range(trials):
            noisy = {k: v + noise * (2 * torch.rand(v.shape, generator=generator, dtype=v.dtype) - 1)
                     for k, v in head_outputs.items()}
            split = {k: list(v.split(per_level, dim=1)) for k, v in noisy.items()}
            again = model.postprocess_detections(split, split_anchors, [s[0] for s in SIZES])
            for d, (input_size, original_size) in zip(again, SIZES):
                d["boxes"] = resize_boxes(d["boxes"], input_size, original_size)
            if not same_detections(detections, again):
                return False
    return True


def main():
    nudges = nudge_kinks()
    model, features, head_outputs, anchors, losses, num_fg, per_level, dets = run(torch.float64, nudges)
    model32, _, head32, _, losses32, _, _, dets32 = run(torch.float32, nudges)
    assert same_detections(dets, dets32), "f32 rounding changes the detections: choose other weights"
    # For information: torch's own f32 gradients against its f64 ones, in the test's f32 metric.
    worst = (0.0, "")
    grads32 = dict(model32.named_parameters())
    for name, p in model.named_parameters():
        if p.requires_grad:
            ours, ref = summary(grads32[name].grad), summary(p.grad)
            error = max(float(abs(ours[0] - ref[0]) / ref[1]), float(abs(ours[1] - ref[1]) / ref[1]),
                        float((ours[2:] - ref[2:]).norm() / ref[2:].norm()))
            worst = max(worst, (error, name))
    assert robust_to_noise(model, head_outputs, anchors, per_level, dets), "a decision sits on a knife edge"
    counts = [len(d["scores"]) for d in dets]
    assert all(5 <= c < 300 for c in counts), counts
    assert num_fg >= 20, num_fg
    for d in dets:  # no near-ties that could reorder
        s = d["scores"]
        assert s.numel() < 2 or float((s[:-1] - s[1:]).min()) > 1e-5

    tensors = {"classification": losses["classification"], "bbox_regression": losses["bbox_regression"],
               "cls_logits": summary(head_outputs["cls_logits"]),
               "bbox_deltas": summary(head_outputs["bbox_regression"]),
               "anchors": summary(anchors[0])}
    for level, (cls, box) in enumerate(zip(head_outputs["cls_logits"].split(per_level, dim=1),
                                           head_outputs["bbox_regression"].split(per_level, dim=1))):
        tensors[f"cls_logits.{level}"] = summary(cls)
        tensors[f"bbox_deltas.{level}"] = summary(box)
    trainable = []
    for name, p in model.named_parameters():
        if p.requires_grad:
            trainable.append(name)
            tensors["grad." + name] = summary(p.grad)
    for i, d in enumerate(dets):
        tensors[f"boxes_{i}"] = d["boxes"]
        tensors[f"scores_{i}"] = d["scores"]
        tensors[f"labels_{i}"] = d["labels"]
    for i, (boxes, labels) in enumerate(TARGETS):
        tensors[f"target_boxes_{i}"] = torch.tensor(boxes, dtype=torch.float64)
        tensors[f"target_labels_{i}"] = torch.tensor(labels, dtype=torch.int64)

    state = [[name, list(t.shape)] for name, t in model.state_dict().items()]
    params = {"num_classes": NUM_CLASSES, "fpn_channels": FPN_CHANNELS,
              "cls_logits_weight_scale": CLS_LOGITS_WEIGHT_SCALE, "bbox_reg_weight_scale": BBOX_REG_WEIGHT_SCALE,
              "cls_logits_bias_shift": CLS_LOGITS_BIAS_SHIFT,
              "batch": BATCH, "height": HEIGHT, "width": WIDTH,
              "sizes": [list(s[0]) + list(s[1]) for s in SIZES], "num_per_level": per_level,
              "num_foreground": num_fg, "trainable": trainable, "state_dict": state,
              "kink_nudges": [[name, channel, delta] for name, per_channel in nudges.items()
                              for channel, delta in per_channel.items()]}
    print("losses f64", float(losses["classification"]), float(losses["bbox_regression"]), "foreground", num_fg)
    print("losses f32 - f64", float(losses32["classification"]) - float(losses["classification"]),
          float(losses32["bbox_regression"]) - float(losses["bbox_regression"]))
    print("torch f32 gradients: worst summary error %.2e (%s)" % worst)
    print("kink nudges", len(params["kink_nudges"]), "in", len(nudges), "biases")
    print("detections per image", counts, "level sizes", per_level, "trainable", len(trainable))
    here = os.path.dirname(os.path.abspath(__file__))
    out = os.path.join(here, "..", "tests", "fixtures", "retinanet_model.json")
    write_fixture(out, "tools/make_retinanet_model_fixtures.py",
                  {"retinanet18": {"params": params, "tensors": tensors}})


if __name__ == "__main__":
    main()
