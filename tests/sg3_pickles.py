"""Test helper: StyleGAN3 network pickles (configs T and R) and an independent forward.

The generator tree follows the paper's appendix and the format: ``mapping`` (as StyleGAN2's,
two layers by default), ``synthesis.input`` (``weight``, ``affine``, buffers ``transform``,
``freqs``, ``phases``) and layers ``L{i}_{size}_{channels}`` (``affine``, ``weight``, ``bias``,
buffers ``magnitude_ema``, ``up_filter``, ``down_filter``), with the layer schedule
recomputed here from the published formulas. Weights and filters are random (filters not
symmetric, so a flipped filter shows); pickles go through ``stylegan_pickles`` so their
``module_src`` would leave a marker if executed.

``reference_synthesis`` recomputes the image with per-sample loops, explicit pixel-centre
coordinates for the Fourier features, explicit zero insertion and depthwise filtering.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

import stylegan_pickles as sp


def schedule(res: int, channel_base: int, channel_max: int, num_layers: int, num_critical: int = 2,
             margin: int = 10, first_cutoff: float = 2.0, first_stopband: float = 2 ** 2.1,
             last_stopband_rel: float = 2 ** 0.3) -> list[dict]:
    out = []
    for i in range(num_layers + 1):
        e = min(i / (num_layers - num_critical), 1.0)
        cutoff = first_cutoff * (res / 2 / first_cutoff) ** e
        stop = first_stopband * (res / 2 * last_stopband_rel / first_stopband) ** e
        rate = 2 ** math.ceil(math.log2(min(stop * 2, res)))
        size = res if i >= num_layers - 1 else rate + 2 * margin
        ch = 3 if i == num_layers else int(np.rint(min(channel_base / 2 / cutoff, channel_max)))
        out.append(dict(cutoff=cutoff, rate=rate, size=size, ch=ch, hw=max(stop, rate / 2) - cutoff))
    return out


def kwargs(res=16, c_dim=0, z_dim=16, w_dim=16, config="T", num_layers=5, channel_base=128, channel_max=16,
           margin_size=4, mapping_layers=2) -> dict:
    synth = dict(channel_base=channel_base, channel_max=channel_max, num_layers=num_layers, num_critical=2,
                 margin_size=margin_size, num_fp16_res=2, conv_clamp=256, magnitude_ema_beta=0.99)
    if config == "R":
        synth.update(conv_kernel=1, use_radial_filters=True)
    return sp.full_kwargs(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, img_resolution=res,
                          mapping_kwargs=dict(num_layers=mapping_layers), synthesis_kwargs=synth)


def random_tensors(kw: dict, seed: int = 0) -> dict[str, Tensor]:
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=1.0, shift=0.0):
        return torch.randn(shape, generator=g) * scale + shift

    def taps(*shape):
        f = torch.rand(shape, generator=g) + 0.2
        return f / f.sum()

    sk, mk = kw["synthesis_kwargs"], kw["mapping_kwargs"]
    w_dim, c_dim, res = kw["w_dim"], kw["c_dim"], kw["img_resolution"]
    t: dict[str, Tensor] = {}
    if c_dim:
        t["mapping.embed.weight"], t["mapping.embed.bias"] = rnd(w_dim, c_dim), rnd(w_dim, scale=0.1)
    widths = [kw["z_dim"] + (w_dim if c_dim else 0)] + [w_dim] * mk["num_layers"]
    for i in range(mk["num_layers"]):
        t[f"mapping.fc{i}.weight"] = rnd(widths[i + 1], widths[i], scale=100)
        t[f"mapping.fc{i}.bias"] = rnd(widths[i + 1], scale=10)
    t["mapping.w_avg"] = rnd(w_dim, scale=0.5)
    sch = schedule(res, sk["channel_base"], sk["channel_max"], sk["num_layers"], margin=sk["margin_size"])
    c0 = sch[0]["ch"]
    t["synthesis.input.weight"] = rnd(c0, c0)
    t["synthesis.input.affine.weight"] = rnd(4, w_dim, scale=0.3)
    t["synthesis.input.affine.bias"] = torch.tensor([1.0, 0.2, 0.05, -0.03]) + rnd(4, scale=0.05)
    t["synthesis.input.transform"] = torch.tensor([[0.9, -0.2, 0.03], [0.25, 1.1, -0.02], [0.0, 0.0, 1.0]])
    t["synthesis.input.freqs"] = rnd(c0, 2, scale=sch[0]["cutoff"] * 0.6)
    t["synthesis.input.phases"] = torch.rand(c0, generator=g) - 0.5
    k = sk.get("conv_kernel", 3)
    radial = sk.get("use_radial_filters", False)
    n = sk["num_layers"]
    for i in range(n + 1):
        prev, cur = sch[max(i - 1, 0)], sch[i]
        torgb = i == n
        p = f"synthesis.L{i}_{cur['size']}_{cur['ch']}."
        kk = 1 if torgb else k
        t[p + "affine.weight"] = rnd(prev["ch"], w_dim)
        t[p + "affine.bias"] = rnd(prev["ch"], scale=0.2, shift=1.0)
        t[p + "weight"] = rnd(cur["ch"], prev["ch"], kk, kk)
        t[p + "bias"] = rnd(cur["ch"], scale=0.2)
        t[p + "magnitude_ema"] = torch.rand([], generator=g) * 1.5 + 0.5
        tmp = max(prev["rate"], cur["rate"]) * (1 if torgb else 2)
        up, down = tmp // prev["rate"], tmp // cur["rate"]
        if up > 1 and not torgb:
            t[p + "up_filter"] = taps(6 * up)
        if down > 1 and not torgb:
            t[p + "down_filter"] = taps(6 * down, 6 * down) if (radial and i < n - 2) else taps(6 * down)
    return t


def network_pickle(kw: dict, marker, seed: int = 0) -> tuple[bytes, dict[str, Tensor]]:
    tensors = random_tensors(kw, seed)
    src = sp.evil_source(marker)
    data = {"G_ema": sp.generator_record(kw, tensors, src, flat_kwargs=True),
            "G": sp.generator_record(kw, random_tensors(kw, seed + 1), src, flat_kwargs=True),
            "training_set_kwargs": sp.FakeEasyDict(resolution=kw["img_resolution"])}
    return sp.dumps(data, 4), tensors


# ---------------------------------------------------------------- reference forward
def _fourier(t, w: Tensor, size: int, rate: float, bandwidth: float) -> Tensor:
    a = w @ (t["synthesis.input.affine.weight"] / math.sqrt(w.shape[1])).T + t["synthesis.input.affine.bias"]
    outs = []
    centres = (torch.arange(size) + 0.5 - size / 2) / rate
    yy, xx = torch.meshgrid(centres, centres, indexing="ij")
    c0 = t["synthesis.input.weight"].shape[0]
    for i in range(w.shape[0]):
        cos, sin, tx, ty = (a[i] / a[i, :2].norm()).tolist()
        rot = torch.tensor([[cos, -sin, 0.0], [sin, cos, 0.0], [0.0, 0.0, 1.0]])
        trans = torch.tensor([[1.0, 0.0, -tx], [0.0, 1.0, -ty], [0.0, 0.0, 1.0]])
        m = rot @ trans @ t["synthesis.input.transform"]
        f = t["synthesis.input.freqs"] @ m[:2, :2]                       # [C, 2]
        ph = t["synthesis.input.phases"] + t["synthesis.input.freqs"] @ m[:2, 2]
        amp = (1 - (f.norm(dim=1) - bandwidth) / (rate / 2 - bandwidth)).clamp(0, 1)
        feats = torch.stack([torch.sin(2 * math.pi * (f[c, 0] * xx + f[c, 1] * yy + ph[c])) * amp[c]
                             for c in range(c0)])                        # [C, H, W]
        mixed = torch.einsum("oc,chw->ohw", t["synthesis.input.weight"] / math.sqrt(c0), feats)
        outs.append(mixed)
    return torch.stack(outs)


def _fir(x: Tensor, f: Tensor | None, up: int, down: int, pad: list[int]) -> Tensor:
    c = x.shape[1]
    if up > 1:
        z = torch.zeros(x.shape[0], c, x.shape[2] * up, x.shape[3] * up)
        z[:, :, ::up, ::up] = x
        x = z
    x = F.pad(x, pad)
    if f is not None:
        k = torch.outer(f, f) if f.dim() == 1 else f
        x = F.conv2d(x, (k * up * up).flip([0, 1]).expand(c, 1, *k.shape), groups=c)
    return x[:, :, ::down, ::down]


def reference_synthesis(t: dict[str, Tensor], kw: dict, ws: Tensor) -> Tensor:
    sk = kw["synthesis_kwargs"]
    n = sk["num_layers"]
    sch = schedule(kw["img_resolution"], sk["channel_base"], sk["channel_max"], n, margin=sk["margin_size"])
    x = _fourier(t, ws[:, 0], sch[0]["size"], sch[0]["rate"], sch[0]["cutoff"])
    k = sk.get("conv_kernel", 3)
    for i in range(n + 1):
        prev, cur = sch[max(i - 1, 0)], sch[i]
        torgb = i == n
        p = f"synthesis.L{i}_{cur['size']}_{cur['ch']}."
        kk = 1 if torgb else k
        styles = ws[:, i + 1] @ (t[p + "affine.weight"] / math.sqrt(ws.shape[2])).T + t[p + "affine.bias"]
        ys = []
        for b in range(x.shape[0]):
            s = styles[b] / (math.sqrt(prev["ch"] * kk * kk) if torgb else 1.0)
            wt = t[p + "weight"] * s.reshape(1, -1, 1, 1)
            if not torgb:
                wt = wt / torch.sqrt((wt ** 2).sum(dim=[1, 2, 3], keepdim=True) + 1e-8)
            wt = wt / torch.sqrt(t[p + "magnitude_ema"])
            ys.append(F.conv2d(x[b:b + 1], wt, padding=kk - 1))
        y = torch.cat(ys) + t[p + "bias"].reshape(1, -1, 1, 1)
        tmp = max(prev["rate"], cur["rate"]) * (1 if torgb else 2)
        up, down = tmp // prev["rate"], tmp // cur["rate"]
        up_taps = 6 * up if (up > 1 and not torgb) else 1
        down_taps = 6 * down if (down > 1 and not torgb) else 1
        total = (cur["size"] - 1) * down + 1 - (prev["size"] + kk - 1) * up + up_taps + down_taps - 2
        lo = (total + up) // 2
        y = _fir(y, t.get(p + "up_filter"), up, 1, [lo, total - lo, lo, total - lo])
        y = y.clamp(-256, 256) if torgb else (F.leaky_relu(y, 0.2) * math.sqrt(2)).clamp(-256, 256)
        x = _fir(y, t.get(p + "down_filter"), 1, down, [0, 0, 0, 0])
    return x * 0.25
