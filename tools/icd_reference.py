"""An independent PyTorch re-implementation of the ICD method, written from spec/icd.md alone.

It exists to check distill/ (the C++ implementation): tools/make_icd_fixtures.py runs it on fixed inputs and
writes the expected values and gradients to tests/fixtures/icd.json. Everything is float64, plain torch, and
deterministic: the random parts of the method (fake boxes, jitter of the reference point) are inputs here,
so the fixture compares the arithmetic, not the random streams.

Section numbers refer to spec/icd.md.
  Section 1: query_count, descriptors (one-hot | PE(cx') | PE(cy') | scale bins), batch padding, targets.
  Section 2: level_padding_masks, sine_position_embedding, flatten_levels, decoder (one cross-attention
             layer with a post-norm FFN) returning g, the pre-softmax logits and the value projection.
  Section 3: auxiliary_losses (identification BCE over real + fake, localisation L1 relative to box size).
  Section 4: distill_loss (LN-normalised per-head values, teacher attention summed over real queries,
             per-image normalisation, stop-gradients on the mask and the teacher values).
"""
import math

import torch
import torch.nn.functional as F

POINT_FEATURES = 128  # sine features per coordinate of the reference point (64 sin + 64 cos)
SCALE_BINS = 5        # per side (w, h)


# ---------------------------------------------------------------------------------------------- section 1
def query_count(num_real, neg_pos_ratio=5, max_labels=300):
    """K_b = min(max(1, int(6 n_b)), max(300, n_b)) with the paper's ratio 5 and cap 300."""
    return min(max(1, int(num_real * (neg_pos_ratio + 1))), max(max_labels, num_real))


def point_encoding(u):
    """[..] -> [.., 128]: [sin(2 pi u / f_k) for k < 64] then [cos(2 pi u / f_k) for k < 64],
    f_k = 10000^(2k / 128)."""
    k = torch.arange(POINT_FEATURES // 2, dtype=torch.float64)
    f = 10000.0 ** (2.0 * k / POINT_FEATURES)
    angle = 2.0 * math.pi * u.unsqueeze(-1) / f
    return torch.cat([angle.sin(), angle.cos()], dim=-1)


def scale_bin(size_px):
    """bin(s) = clamp(trunc(1.44 ln(s) - 5), 0, 4)."""
    return torch.clamp(torch.trunc(1.44 * torch.log(size_px) - 5.0), 0, SCALE_BINS - 1).long()


def image_descriptors(boxes_px, labels, jitter, height, width, num_classes):
    """One image's queries (real first, then fake). boxes_px [K, 4] x1 y1 x2 y2 in pixels of the unpadded
    image, labels [K], jitter [K, 2] (phi_x, phi_y). Returns descriptors [K, num_classes + 266] and the
    localisation targets [K, 4] = (cx' - x1, cy' - y1, x2 - cx', y2 - cy') in normalised units."""
    scale = torch.tensor([width, height, width, height], dtype=torch.float64)
    b = boxes_px / scale
    w = b[:, 2] - b[:, 0]
    h = b[:, 3] - b[:, 1]
    cx = (b[:, 0] + b[:, 2]) / 2
    cy = (b[:, 1] + b[:, 3]) / 2
    px = cx + jitter[:, 0] * w
    py = cy + jitter[:, 1] * h
    onehot = F.one_hot(labels, num_classes).double()
    scale_w = F.one_hot(scale_bin(w * width), SCALE_BINS).double()
    scale_h = F.one_hot(scale_bin(h * height), SCALE_BINS).double()
    desc = torch.cat([onehot, point_encoding(px), point_encoding(py), scale_w, scale_h], dim=1)
    targets = torch.stack([px - b[:, 0], py - b[:, 1], b[:, 2] - px, b[:, 3] - py], dim=1)
    return desc, targets


def padding_descriptor(num_classes):
    """A padding slot: class-0 one-hot, the point (0, 0), no scale bin set."""
    onehot = torch.zeros(num_classes, dtype=torch.float64)
    onehot[0] = 1.0
    zero = torch.zeros((), dtype=torch.float64)
    return torch.cat([onehot, point_encoding(zero), point_encoding(zero), torch.zeros(2 * SCALE_BINS,
                                                                                     dtype=torch.float64)])


def batch_queries(images, num_classes):
    """images: list of dicts with boxes [K_b, 4] px, labels [K_b], jitter [K_b, 2], num_real, height, width.
    Returns descriptors [B, L, D], padding_mask [B, L] (1 = padding), real_mask [B, L], targets [B, L, 4]."""
    B = len(images)
    L = max(im["boxes"].shape[0] for im in images)
    D = num_classes + 2 * POINT_FEATURES + 2 * SCALE_BINS
    desc = padding_descriptor(num_classes).repeat(B, L, 1)
    padding = torch.ones(B, L, dtype=torch.float64)
    real = torch.zeros(B, L, dtype=torch.float64)
    targets = torch.zeros(B, L, 4, dtype=torch.float64)
    for i, im in enumerate(images):
        k = im["boxes"].shape[0]
        d, t = image_descriptors(im["boxes"], im["labels"], im["jitter"], im["height"], im["width"], num_classes)
        desc[i, :k] = d
        targets[i, :k] = t
        padding[i, :k] = 0.0
        real[i, :im["num_real"]] = 1.0
    assert desc.shape[-1] == D
    return desc, padding, real, targets


def mlp(x, layers):
    """Linear, ReLU, Linear, ReLU, ..., Linear. layers: list of (weight, bias)."""
    for i, (w, b) in enumerate(layers):
        x = F.linear(x, w, b)
        if i + 1 < len(layers):
            x = torch.relu(x)
    return x


# ---------------------------------------------------------------------------------------------- section 2
def level_padding_masks(level_sizes, padded_hw, image_hws):
    """Per level a bool mask [B, H_l, W_l], True = padding. stride_est = (H_pad / H_l + W_pad / W_l) / 2; the
    valid region is rows < ceil(h_img / stride_est) and cols < ceil(w_img / stride_est)."""
    Hp, Wp = padded_hw
    masks = []
    for (Hl, Wl) in level_sizes:
        stride = (Hp / Hl + Wp / Wl) / 2.0
        m = torch.ones(len(image_hws), Hl, Wl, dtype=torch.bool)
        for b, (h, w) in enumerate(image_hws):
            m[b, :math.ceil(h / stride), :math.ceil(w / stride)] = False
        masks.append(m)
    return masks


def sine_position_embedding(mask, channels):
    """DETR's sine embedding of one level: mask [B, H, W] (True = padding) -> [B, channels, H, W].
    num_pos_feats = channels / 2 per axis; y_e, x_e = cumulative sums of the not-padding mask down the rows
    and along the columns, divided by their last value (+ 1e-6) and multiplied by 2 pi. Channel 2k is
    sin(e / f_k) and 2k + 1 is cos(e / f_k), f_k = 10000^(2k / num_pos_feats). P = [PE_y | PE_x]."""
    npf = channels // 2
    valid = (~mask).double()
    y = valid.cumsum(1)
    x = valid.cumsum(2)
    y = y / (y[:, -1:, :] + 1e-6) * 2 * math.pi
    x = x / (x[:, :, -1:] + 1e-6) * 2 * math.pi
    pe = []
    for e in (y, x):
        out = torch.zeros(*e.shape, npf, dtype=torch.float64)
        for k in range(npf // 2):
            f = 10000.0 ** (2.0 * k / npf)
            out[..., 2 * k] = torch.sin(e / f)
            out[..., 2 * k + 1] = torch.cos(e / f)
        pe.append(out)
    return torch.cat(pe, dim=-1).permute(0, 3, 1, 2)


def flatten_levels(levels):
    """[B, C, H_l, W_l] per level -> [S, B, C], each level row-major, levels concatenated in order."""
    return torch.cat([t.flatten(2).permute(2, 0, 1) for t in levels], dim=0)


def decoder(q0, features, padding_mask, position, p, heads):
    """q0 [L, B, C] queries; features X [S, B, C]; padding_mask [B, S] bool; position P [S, B, C].
    p: parameters by name. Returns g [L, B, C], logits [B, H, L, S] (-inf at padding), value [S, B, H, d]."""
    L, B, C = q0.shape
    S = features.shape[0]
    d = C // heads
    k_in = features + F.linear(position, p["pos_proj.weight"], p["pos_proj.bias"])
    v_in = features
    Wq, Wk, Wv = p["multihead_attn.in_proj_weight"].split(C, dim=0)
    bq, bk, bv = p["multihead_attn.in_proj_bias"].split(C, dim=0)
    q = F.linear(q0, Wq, bq).reshape(L, B, heads, d).permute(1, 2, 0, 3)   # B H L d
    k = F.linear(k_in, Wk, bk).reshape(S, B, heads, d).permute(1, 2, 0, 3)  # B H S d
    v_seq = F.linear(v_in, Wv, bv).reshape(S, B, heads, d)
    v = v_seq.permute(1, 2, 0, 3)
    logits = q @ k.transpose(-1, -2) / math.sqrt(d)
    logits = logits.masked_fill(padding_mask[:, None, None, :], float("-inf"))
    attention = torch.softmax(logits, dim=-1)
    o = (attention @ v).permute(2, 0, 1, 3).reshape(L, B, C)
    o = F.linear(o, p["multihead_attn.out_proj.weight"], p["multihead_attn.out_proj.bias"])
    z = F.layer_norm(q0 + o, (C,), p["norm1.weight"], p["norm1.bias"], eps=1e-5)
    ffn = F.linear(torch.relu(F.linear(z, p["linear1.weight"], p["linear1.bias"])), p["linear2.weight"],
                   p["linear2.bias"])
    g = F.layer_norm(z + ffn, (C,), p["norm2.weight"], p["norm2.bias"], eps=1e-5)
    return g, logits, v_seq


# ---------------------------------------------------------------------------------------------- section 3
def auxiliary_losses(predictions, padding_mask, real_mask, targets):
    """predictions [B, L, 5] (identification logit, then l t r b logits). Returns (L_conf, L_reg)."""
    valid = 1.0 - padding_mask
    bce = F.binary_cross_entropy_with_logits(predictions[..., 0], real_mask, reduction="none")
    conf = (bce * valid).sum() / valid.sum().clamp(min=1e-6)
    pred = torch.sigmoid(predictions[..., 1:])
    s = (targets + targets[..., [2, 3, 0, 1]]).clamp(min=1e-7)
    per_query = ((pred - targets).abs() / s).sum(-1)
    reg = (per_query * real_mask).sum() / real_mask.sum().clamp(min=1e-6)
    return conf, reg


# ---------------------------------------------------------------------------------------------- section 4
def distill_loss(student_value, teacher_value, logits, real_mask, weight):
    """student_value, teacher_value [S, B, H, d] (raw projections); logits [B, H, L, S]; real_mask [B, L].
    L = weight * mean_{b,h,c} [ sum_s m (vS^ - vT^)^2 / max(sum_s m, 1e-6) ],
    m[b,h,s] = sum over real queries of softmax_s(logits), with no gradient to m or to the teacher."""
    d = student_value.shape[-1]
    vs = F.layer_norm(student_value, (d,), eps=1e-5)
    vt = F.layer_norm(teacher_value.detach(), (d,), eps=1e-5)
    with torch.no_grad():
        m = (torch.softmax(logits, dim=-1) * real_mask[:, None, :, None]).sum(dim=2)  # B H S
    diff2 = ((vs - vt) ** 2).permute(1, 2, 0, 3)  # B H S d
    numerator = (m.unsqueeze(-1) * diff2).sum(dim=2)  # B H d
    denominator = m.sum(dim=-1).clamp(min=1e-6).unsqueeze(-1)
    return weight * (numerator / denominator).mean()


def fitnet_loss(student_levels, teacher_levels, adapters):
    """mean over levels of MSE(adapter_l(student_l), teacher_l); adapters: list of (weight [Ct, Cs, 1, 1], bias)."""
    losses = [F.mse_loss(F.conv2d(s, w, b), t.detach()) for s, t, (w, b) in zip(student_levels, teacher_levels,
                                                                           adapters)]
    return sum(losses) / len(losses)
