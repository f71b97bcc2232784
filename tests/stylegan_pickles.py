"""Test helper: writes NVIDIA-structured StyleGAN2 network pickles, and an independent forward.

No real checkpoint can be downloaded in CI, so the tests make their own: the module tree
(``G_ema`` -> ``mapping``/``synthesis`` -> ``b4`` ... -> ``conv0``/``conv1``/``torgb`` ->
``affine``) is spelled out here from the format's description, independently of
``dragwalk.models.stylegan2``, with random weights. Each network is written the way
``torch_utils.persistence`` writes it: a reduce to the global
``torch_utils.persistence._reconstruct_persistent_obj`` with a ``meta`` dict whose
``module_src`` — were it ever executed — creates a marker file.

``reference_forward`` recomputes the image from the raw tensors by another route than the
project's module (per-sample loops, upsample-then-convolve instead of transposed conv, direct
formulas), so agreement checks the numerics rather than one implementation against itself.
"""

from __future__ import annotations

import collections
import math
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

PERSISTENCE = ("torch_utils.persistence", "_reconstruct_persistent_obj")


def write_pickle(folder: Path, data: bytes, name: str) -> Path:
    """``data`` written to ``folder / name``: the path a test hands the loader."""
    path = folder / name
    path.write_bytes(data)
    return path


# ---------------------------------------------------------------- writing pickles
class GlobalRef:
    """A global the pickle names (module, name) without it existing in this process."""

    def __init__(self, module: str, name: str):
        self.module, self.name = module, name

    def __call__(self, *args: Any) -> Any:  # pickle requires reduce callables to be callable
        raise RuntimeError("a GlobalRef only stands for a name in a pickle")


class FakeEasyDict(dict):
    """Pickles as ``dnnlib.util.EasyDict``."""


class FakePersistent:
    """A network object pickled like ``torch_utils.persistence`` does it."""

    def __init__(self, class_name: str, module_src: str, state: dict):
        self.class_name, self.module_src, self.state = class_name, module_src, state

    def __reduce__(self):
        meta = {"type": "class", "version": 4, "module_src": self.module_src,
                "class_name": self.class_name, "state": self.state}
        return GlobalRef(*PERSISTENCE), (meta,)


class NetworkPickler(pickle._Pickler):  # the pure-Python pickler lets us name globals freely
    def save(self, obj, save_persistent_id=True):
        if isinstance(obj, GlobalRef):
            return self._write_global(obj.module, obj.name)
        return super().save(obj, save_persistent_id)

    def save_global(self, obj, name=None):
        if obj is FakeEasyDict:
            return self._write_global("dnnlib.util", "EasyDict")
        return super().save_global(obj, name)

    def _write_global(self, module: str, name: str) -> None:
        if self.proto >= 4:
            self.save(module)
            self.save(name)
            self.write(pickle.STACK_GLOBAL)
        else:
            self.write(pickle.GLOBAL + module.encode() + b"\n" + name.encode() + b"\n")


def dumps(obj: Any, protocol: int = 3) -> bytes:
    import io
    buf = io.BytesIO()
    NetworkPickler(buf, protocol=protocol).dump(obj)
    return buf.getvalue()


def evil_source(marker: Path) -> str:
    """A module_src that leaves ``marker`` behind if anybody executes it."""
    return f"import pathlib\npathlib.Path({str(marker)!r}).write_text('module_src was executed')\n"


def _module(class_name: str, src: str, params: dict, buffers: dict, children: dict,
            init_kwargs: dict | None = None, **attrs: Any) -> FakePersistent:
    state = {
        "training": False,
        "_parameters": collections.OrderedDict((k, torch.nn.Parameter(v, requires_grad=False))
                                               for k, v in params.items()),
        "_buffers": collections.OrderedDict(buffers),
        "_non_persistent_buffers_set": set(),
        "_backward_hooks": collections.OrderedDict(),
        "_forward_hooks": collections.OrderedDict(),
        "_forward_pre_hooks": collections.OrderedDict(),
        "_state_dict_hooks": collections.OrderedDict(),
        "_load_state_dict_pre_hooks": collections.OrderedDict(),
        "_modules": collections.OrderedDict(children),
        "_init_args": (),
        "_init_kwargs": FakeEasyDict(init_kwargs or {}),
        **attrs,
    }
    return FakePersistent(class_name, src, state)


# ---------------------------------------------------------------- the format's tree
def full_kwargs(z_dim=32, c_dim=0, w_dim=32, img_resolution=64, img_channels=3,
                mapping_kwargs=None, synthesis_kwargs=None) -> dict:
    return dict(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, img_resolution=img_resolution,
                img_channels=img_channels, mapping_kwargs=dict(mapping_kwargs or {}),
                synthesis_kwargs=dict(synthesis_kwargs or {}))


def random_generator_tensors(kw: dict, seed: int = 0, fp16_storage: bool = False) -> dict[str, Tensor]:
    """Flat ``name -> tensor`` of a StyleGAN2 generator described by ``kw`` (random weights)."""
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=1.0, shift=0.0):
        return torch.randn(shape, generator=g) * scale + shift

    mk, sk = kw["mapping_kwargs"], kw["synthesis_kwargs"]
    z_dim, c_dim, w_dim, res, img_ch = (kw[k] for k in ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels"))
    lr = mk.get("lr_multiplier", 0.01)
    n_layers = mk.get("num_layers", 8)
    embed = 0 if c_dim == 0 else w_dim
    t: dict[str, Tensor] = {}
    if c_dim:
        t["mapping.embed.weight"], t["mapping.embed.bias"] = rnd(embed, c_dim), rnd(embed, scale=0.1)
    widths = [z_dim + embed] + [w_dim] * n_layers
    for i in range(n_layers):
        t[f"mapping.fc{i}.weight"] = rnd(widths[i + 1], widths[i], scale=1 / lr)
        t[f"mapping.fc{i}.bias"] = rnd(widths[i + 1], scale=0.1 / lr)
    t["mapping.w_avg"] = rnd(w_dim, scale=0.5)
    f = torch.tensor([1.0, 3, 3, 1])
    f = torch.outer(f, f) / 64
    log2 = int(math.log2(res))
    ch = {2 ** i: min(sk.get("channel_base", 32768) // 2 ** i, sk.get("channel_max", 512))
          for i in range(2, log2 + 1)}
    fp16_res = max(2 ** (log2 + 1 - sk.get("num_fp16_res", 0)), 8)
    arch = sk.get("architecture", "skip")
    for r in ch:
        p = f"synthesis.b{r}."
        half = fp16_storage and r >= fp16_res
        block: dict[str, Tensor] = {p + "resample_filter": f.clone()}
        cin = ch[r // 2] if r > 4 else 0
        if r == 4:
            block[p + "const"] = rnd(ch[r], r, r)
        convs = ([("conv0", cin)] if r > 4 else []) + [("conv1", ch[r])]
        for name, c_in in convs:
            q = p + name + "."
            block.update({q + "affine.weight": rnd(c_in, w_dim), q + "affine.bias": rnd(c_in, scale=0.2, shift=1),
                          q + "weight": rnd(ch[r], c_in, 3, 3), q + "noise_const": rnd(r, r),
                          q + "noise_strength": rnd(scale=0.3), q + "bias": rnd(ch[r], scale=0.2),
                          q + "resample_filter": f.clone()})
        if r == res or arch == "skip":
            q = p + "torgb."
            block.update({q + "affine.weight": rnd(ch[r], w_dim), q + "affine.bias": rnd(ch[r], scale=0.2, shift=1),
                          q + "weight": rnd(img_ch, ch[r], 1, 1), q + "bias": rnd(img_ch, scale=0.2)})
        if r > 4 and arch == "resnet":
            block[p + "skip.weight"] = rnd(ch[r], cin, 1, 1)
            block[p + "skip.resample_filter"] = f.clone()
        if half:
            block = {k: v.half() for k, v in block.items()}
        t.update(block)
    return t


def _tree(tensors: dict[str, Tensor], prefix: str, class_names: dict[str, str], src: str,
          kwargs_for: dict[str, dict]) -> FakePersistent:
    """Group flat tensors into nested persistent records (parameters vs buffers as in the format)."""
    buffers_named = ("noise_const", "resample_filter", "w_avg")
    own = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix) and "." not in k[len(prefix):]}
    children = sorted({k[len(prefix):].split(".")[0] for k in tensors
                       if k.startswith(prefix) and "." in k[len(prefix):]},
                      key=_order)
    kids = {c: _tree(tensors, f"{prefix}{c}.", class_names, src, kwargs_for) for c in children}
    params = {k: v for k, v in own.items() if k not in buffers_named}
    buffers = {k: v for k, v in own.items() if k in buffers_named}
    path = prefix[:-1]
    leaf = path.split(".")[-1] if path else ""
    cls = class_names.get(leaf) or class_names.get(leaf.rstrip("0123456789")) or "Module"
    return _module(cls, src, params, buffers, kids, kwargs_for.get(path))


def _order(name: str) -> tuple:
    digits = "".join(ch for ch in name if ch.isdigit())
    return (name.rstrip("0123456789"), int(digits) if digits else -1)


CLASS_NAMES = {"": "Generator", "mapping": "MappingNetwork", "synthesis": "SynthesisNetwork",
               "b": "SynthesisBlock", "conv": "SynthesisLayer", "torgb": "ToRGBLayer",
               "affine": "FullyConnectedLayer", "fc": "FullyConnectedLayer", "embed": "FullyConnectedLayer",
               "skip": "Conv2dLayer"}


def generator_record(kw: dict, tensors: dict[str, Tensor], src: str, flat_kwargs: bool = False) -> FakePersistent:
    """The ``Generator`` persistent record. ``flat_kwargs`` puts the synthesis options at the
    top level of ``init_kwargs`` as the stylegan3 repository does."""
    init = FakeEasyDict({k: v for k, v in kw.items() if k not in ("mapping_kwargs", "synthesis_kwargs")})
    init["mapping_kwargs"] = FakeEasyDict(kw["mapping_kwargs"])
    if flat_kwargs:
        init.update(kw["synthesis_kwargs"])
    else:
        init["synthesis_kwargs"] = FakeEasyDict(kw["synthesis_kwargs"])
    return _tree(tensors, "", CLASS_NAMES, src, {"": init})


def network_pickle(kw: dict, marker: Path, seed: int = 0, fp16_storage: bool = False,
                   protocol: int = 3, flat_kwargs: bool = False,
                   keys: tuple[str, ...] = ("G", "D", "G_ema", "augment_pipe")) -> tuple[bytes, dict[str, Tensor]]:
    """Bytes of a whole training snapshot, and the G_ema tensors (for the reference)."""
    src = evil_source(marker)
    tensors = random_generator_tensors(kw, seed, fp16_storage)
    data: dict[str, Any] = {"training_set_kwargs": FakeEasyDict(
        class_name="training.dataset.ImageFolderDataset", path="faces.zip", use_labels=kw["c_dim"] > 0,
        max_size=np.int64(70000), xflip=False, resolution=kw["img_resolution"])}
    for key in keys:
        if key == "G":
            data["G"] = generator_record(kw, random_generator_tensors(kw, seed + 1), src, flat_kwargs)
        elif key == "G_ema":
            data["G_ema"] = generator_record(kw, tensors, src, flat_kwargs)
        elif key == "D":
            data["D"] = _module("Discriminator", src, {}, {}, {
                "b8": _module("DiscriminatorBlock", src, {"weight": torch.randn(8, 3, 3, 3)}, {}, {}),
                "epilogue": _module("DiscriminatorEpilogue", src, {"out": torch.randn(1, 8)}, {}, {},
                                    mbstd_group_size=4)}, {"c_dim": kw["c_dim"]})
        elif key == "augment_pipe":
            data["augment_pipe"] = _module("AugmentPipe", src, {}, {"p": torch.zeros([]),
                                                                     "Hz_geom": torch.randn(12)}, {},
                                           {"xflip": 1.0}, xflip=1.0, rotate90=1.0, imgfilter_bands=[1, 1, 1, 1],
                                           noise_std=np.float64(0.1))
    return dumps(data, protocol), tensors


# ---------------------------------------------------------------- reference forward
SQRT2 = math.sqrt(2.0)


def _fc(x: Tensor, weight: Tensor, bias: Tensor, lr: float = 1.0, act: bool = False) -> Tensor:
    y = x @ (weight.float() * (lr / math.sqrt(weight.shape[1]))).T + bias.float() * lr
    return torch.where(y >= 0, y, 0.2 * y) * SQRT2 if act else y


def _unit(x: Tensor) -> Tensor:
    return x / torch.sqrt((x * x).mean(dim=1, keepdim=True) + 1e-8)


def reference_mapping(t: dict[str, Tensor], kw: dict, z: Tensor, c: Tensor | None, num_ws: int,
                      psi: float = 1.0, cutoff: int | None = None) -> Tensor:
    mk = kw["mapping_kwargs"]
    lr = mk.get("lr_multiplier", 0.01)
    parts = []
    if kw["z_dim"]:
        parts.append(_unit(z.float()))
    if kw["c_dim"]:
        parts.append(_unit(_fc(c.float(), t["mapping.embed.weight"], t["mapping.embed.bias"])))
    x = torch.cat(parts, dim=1)
    for i in range(mk.get("num_layers", 8)):
        x = _fc(x, t[f"mapping.fc{i}.weight"], t[f"mapping.fc{i}.bias"], lr, act=True)
    ws = torch.stack([x] * num_ws, dim=1)
    avg = t["mapping.w_avg"].float()
    rows = num_ws if cutoff is None else cutoff
    ws[:, :rows] = avg + psi * (ws[:, :rows] - avg)
    return ws


def _zero_upsample_fir(x: Tensor, margin: int = 0) -> Tensor:
    """Zero insertion x2, pad (2, 1), [1,3,3,1] FIR with gain 4 — one depthwise conv2d.

    ``margin`` keeps that many more samples of the filtered signal on every side (a
    following 3x3 conv needs them: the format convolves the *full* upsampled response)."""
    n, c, h, w = x.shape
    up = torch.zeros(n, c, 2 * h, 2 * w, dtype=x.dtype)
    up[:, :, 0::2, 0::2] = x
    up = F.pad(up, [2 + margin, 1 + margin, 2 + margin, 1 + margin])
    k = torch.tensor([1.0, 3, 3, 1])
    k = (torch.outer(k, k) / 64 * 4).expand(c, 1, 4, 4)
    return F.conv2d(up, k, groups=c)


def _modconv(x: Tensor, weight: Tensor, styles: Tensor, demod: bool, up: bool) -> Tensor:
    out = []
    for i in range(x.shape[0]):
        wi = weight.float() * styles[i].reshape(1, -1, 1, 1)
        if demod:
            wi = wi / torch.sqrt((wi * wi).sum(dim=[1, 2, 3], keepdim=True) + 1e-8)
        xi = x[i:i + 1]
        if up:  # the upsampling layer's kernel acts as a true convolution
            out.append(F.conv2d(_zero_upsample_fir(xi, margin=wi.shape[-1] // 2), wi.flip([2, 3])))
        else:
            out.append(F.conv2d(xi, wi, padding=wi.shape[-1] // 2))
    return torch.cat(out)


def _layer(t: dict, p: str, x: Tensor, w: Tensor, up: bool, clamp, gain: float = 1.0) -> Tensor:
    styles = _fc(w, t[p + "affine.weight"], t[p + "affine.bias"])
    y = _modconv(x, t[p + "weight"], styles, True, up)
    y = y + t[p + "noise_const"].float() * t[p + "noise_strength"].float()
    y = y + t[p + "bias"].float().reshape(1, -1, 1, 1)
    y = torch.where(y >= 0, y, 0.2 * y) * (SQRT2 * gain)
    return y if clamp is None else y.clamp(-clamp * gain, clamp * gain)


def _torgb(t: dict, p: str, x: Tensor, w: Tensor, clamp) -> Tensor:
    styles = _fc(w, t[p + "affine.weight"], t[p + "affine.bias"]) / math.sqrt(x.shape[1])
    y = _modconv(x, t[p + "weight"], styles, False, False) + t[p + "bias"].float().reshape(1, -1, 1, 1)
    return y if clamp is None else y.clamp(-clamp, clamp)


def reference_synthesis(t: dict[str, Tensor], kw: dict, ws: Tensor) -> Tensor:
    sk = kw["synthesis_kwargs"]
    arch, clamp, res = sk.get("architecture", "skip"), sk.get("conv_clamp"), kw["img_resolution"]
    x = img = None
    row = 0
    r = 4
    while r <= res:
        p = f"synthesis.b{r}."
        if r == 4:
            x = t[p + "const"].float()[None].repeat(ws.shape[0], 1, 1, 1)
            x = _layer(t, p + "conv1.", x, ws[:, row], False, clamp)
            row += 1
        elif arch == "resnet":
            skip_w = t[p + "skip.weight"].float() / math.sqrt(x.shape[1])
            y = F.conv2d(_zero_upsample_fir(x), skip_w) * math.sqrt(0.5)
            h = _layer(t, p + "conv0.", x, ws[:, row], True, clamp)
            x = y + _layer(t, p + "conv1.", h, ws[:, row + 1], False, clamp, gain=math.sqrt(0.5))
            row += 2
        else:
            x = _layer(t, p + "conv0.", x, ws[:, row], True, clamp)
            x = _layer(t, p + "conv1.", x, ws[:, row + 1], False, clamp)
            row += 2
        if img is not None:
            img = _zero_upsample_fir(img)
        if arch == "skip" or r == res:
            y = _torgb(t, p + "torgb.", x, ws[:, row], clamp)
            img = y if img is None else img + y
        r *= 2
    return img


def num_ws(kw: dict) -> int:
    return 2 * int(math.log2(kw["img_resolution"])) - 2
