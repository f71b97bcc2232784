"""TF-era StyleGAN2 pickles (``stylegan2-*-config-f.pkl``) read as data, converted to the own StyleGAN2.

Such a file is a pickle of the tuple ``(G, D, Gs)`` of ``dnnlib.tflib.network.Network``
objects. Each one pickles as that class plus a state dict: ``version``, ``name``,
``static_kwargs`` (the build function's keyword arguments), ``components`` (sub-networks:
``mapping`` and ``synthesis`` for a generator), ``build_module_src`` (the *source code* of the
module that builds the graph, which loading normally executes), ``build_func_name`` and
``variables``, a list of ``(name, numpy array)``. No TensorFlow is needed to read the arrays.

The allow-list unpickler of ``nvidia_pickle`` reads it, with one more global: the ``Network``
class becomes :class:`TFNetworkRecord`, which only keeps its state. ``build_module_src`` is
never looked at. Only ``Gs`` (the averaged generator) is converted.

Variable names and conventions (the TF graph's, converted here):

* mapping ``Dense{i}/weight`` is ``[in, out]`` (the own layers store ``[out, in]``), with the
  same learning-rate multiplier (``mapping_lrmul``, 0.01) and equalised-rate scaling;
* synthesis layers ``{r}x{r}/Conv`` (4x4), ``Conv0_up`` and ``Conv1``: ``weight`` is
  ``[k, k, in, out]``; ``mod_weight`` ``[w_dim, in]``; styles are ``dense + mod_bias + 1``
  (the own affine's bias absorbs the 1); ``noise_strength`` a scalar; the fixed noise maps are
  ``noise{i}`` ``[1, 1, r, r]`` of the synthesis network (layer index ``2 log2(r) - 5`` for
  ``Conv0_up``, ``- 4`` for ``Conv1``);
* ``Conv0_up`` is "upsample, then correlate with the kernel" while the own upsampling conv
  treats its kernel as a true convolution, so that kernel is flipped; plain convs correlate
  in both;
* ``{r}x{r}/ToRGB`` per block (skip architecture) or only at the end (orig);
  ``{r}x{r}/Skip/weight`` marks the resnet architecture;
* ``Gs`` keeps ``dlatent_avg`` (truncation's centre) and ``lod`` (unused).

Conditional TF models (``LabelConcat``) normalise z and the label embedding together, which
the own mapping does not; they are refused with that reason.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .base import ModelError
from .convert import build_stylegan2, channel_layout, filter_taps


class TFPickleError(ModelError):
    """A TF-era pickle that was refused or could not be converted; the message says why."""


class TFNetworkRecord:
    """Stand-in for ``dnnlib.tflib.network.Network``: its pickled state, nothing else."""

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict):
            raise TFPickleError("malformed TF network record (its state is not a dict)")
        self.state = state

    @property
    def components(self) -> dict:
        return dict(self.state.get("components") or {})

    @property
    def static_kwargs(self) -> dict:
        return dict(self.state.get("static_kwargs") or {})

    def variables(self, source: str) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for item in self.state.get("variables") or []:
            if not (isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], str)):
                raise TFPickleError(f"{source}: malformed variable list")
            name, value = item
            if isinstance(value, np.generic):  # a session returns 0-d variables as numpy scalars
                value = np.asarray(value)
            if not isinstance(value, np.ndarray) or value.dtype.kind != "f":
                raise TFPickleError(f"{source}: variable {name} is not a floating-point array")
            out[name] = value
        return out


#: what the unpickler may resolve for this format, on top of nvidia_pickle's allow-list
TF_GLOBALS: dict[tuple[str, str], Any] = {("dnnlib.tflib.network", "Network"): TFNetworkRecord}


def is_tf_data(data: Any) -> bool:
    return isinstance(data, TFNetworkRecord) or (
        isinstance(data, tuple) and bool(data) and all(isinstance(d, TFNetworkRecord) for d in data))


class _Vars:
    """Variables of one network, taken by name with their rank checked; tracks what was used."""

    def __init__(self, values: dict[str, np.ndarray], scope: str, source: str):
        self.values, self.scope, self.source, self.used = values, scope, source, set()

    def __contains__(self, name: str) -> bool:
        return name in self.values

    def get(self, name: str, ndim: int) -> np.ndarray:
        if name not in self.values:
            raise TFPickleError(f"{self.source}: the {self.scope} network lacks {name}")
        value = self.values[name]
        self.used.add(name)
        if value.ndim != ndim:
            raise TFPickleError(f"{self.source}: {self.scope}/{name} has shape {list(value.shape)}, "
                                f"expected {ndim} axes")
        return value

    def leftover(self) -> list[str]:
        return [k for k in self.values if k not in self.used]


def _t(a: np.ndarray) -> Tensor:
    return torch.from_numpy(np.array(a, dtype=np.float32, order="C"))  # keeps 0-d arrays 0-d


def _layer(v: _Vars, scope: str, noise: str, dst: str, out: dict, origin: dict, flip: bool) -> int:
    """A modulated conv layer; returns its output width."""
    w = v.get(scope + "/weight", 4)
    if flip:
        w = w[::-1, ::-1]
    pairs = {dst + "weight": (scope + "/weight", w.transpose(3, 2, 0, 1)),
             dst + "affine.weight": (scope + "/mod_weight", v.get(scope + "/mod_weight", 2).T),
             dst + "affine.bias": (scope + "/mod_bias", v.get(scope + "/mod_bias", 1) + 1),
             dst + "bias": (scope + "/bias", v.get(scope + "/bias", 1))}
    if noise:
        pairs[dst + "noise_strength"] = (scope + "/noise_strength", v.get(scope + "/noise_strength", 0))
        nmap = v.get(noise, 4)
        if nmap.shape[:2] != (1, 1):
            raise TFPickleError(f"{v.source}: synthesis/{noise} has shape {list(nmap.shape)}, expected [1, 1, r, r]")
        pairs[dst + "noise_const"] = (noise, nmap[0, 0])
    for own, (name, value) in pairs.items():
        out[own], origin[own] = _t(value), f"{v.scope}/{name}"
    return int(w.shape[3])


def _static(nets: list[TFNetworkRecord], key: str, default: Any) -> Any:
    for net in nets:
        if key in net.static_kwargs:
            return net.static_kwargs[key]
    return default


def convert_gs(gs: TFNetworkRecord, source: str) -> tuple[dict, dict[str, Tensor], dict[str, str]]:
    """Own ``StyleGAN2Generator`` arguments, tensors and each tensor's TF name, from ``Gs``."""
    comps = gs.components
    mapping_net, synthesis_net = comps.get("mapping"), comps.get("synthesis")
    if not isinstance(mapping_net, TFNetworkRecord) or not isinstance(synthesis_net, TFNetworkRecord):
        raise TFPickleError(f"{source}: the generator has no mapping/synthesis components")
    top = _Vars(gs.variables(source), "Gs", source)
    mv = _Vars(mapping_net.variables(source), "mapping", source)
    sv = _Vars(synthesis_net.variables(source), "synthesis", source)
    nets = [mapping_net, synthesis_net, gs]
    if "LabelConcat/weight" in mv:
        raise TFPickleError(f"{source}: conditional TF models (LabelConcat) are not supported: they "
                            f"normalise z and the label embedding together")
    for key, want in (("mapping_nonlinearity", "lrelu"), ("nonlinearity", "lrelu")):
        if _static(nets, key, want) != want:
            raise TFPickleError(f"{source}: unsupported {key} {_static(nets, key, want)!r}")
    out: dict[str, Tensor] = {}
    origin: dict[str, str] = {}
    n_dense = 0
    while f"Dense{n_dense}/weight" in mv:
        out[f"mapping.fc{n_dense}.weight"] = _t(mv.get(f"Dense{n_dense}/weight", 2).T)
        out[f"mapping.fc{n_dense}.bias"] = _t(mv.get(f"Dense{n_dense}/bias", 1))
        origin[f"mapping.fc{n_dense}.weight"] = f"mapping/Dense{n_dense}/weight"
        n_dense += 1
    if n_dense == 0:
        raise TFPickleError(f"{source}: the mapping network has no Dense layers")
    out["mapping.w_avg"], origin["mapping.w_avg"] = _t(top.get("dlatent_avg", 1)), "Gs/dlatent_avg"
    if "lod" in top:
        top.get("lod", 0)
    scopes = {int(m.group(1)) for k in sv.values for m in [re.match(r"(\d+)x\1/", k)] if m}
    if not scopes or 4 not in scopes:
        raise TFPickleError(f"{source}: the synthesis network has no 4x4 block")
    res = max(scopes)
    if sorted(scopes) != [2 ** i for i in range(2, int(math.log2(res)) + 1)]:
        raise TFPickleError(f"{source}: synthesis blocks {sorted(scopes)} are not consecutive powers of two")
    arch = "skip" if "4x4/ToRGB/weight" in sv else ("resnet" if f"{res}x{res}/Skip/weight" in sv else "orig")
    const = sv.get("4x4/Const/const", 4)
    out["synthesis.b4.const"], origin["synthesis.b4.const"] = _t(const[0]), "synthesis/4x4/Const/const"
    channels = {4: _layer(sv, "4x4/Conv", "noise0", "synthesis.b4.conv1.", out, origin, False)}
    for r in sorted(scopes)[1:]:
        p, s, i = f"synthesis.b{r}.", f"{r}x{r}/", int(math.log2(r)) * 2 - 5
        channels[r] = _layer(sv, s + "Conv0_up", f"noise{i}", p + "conv0.", out, origin, True)
        _layer(sv, s + "Conv1", f"noise{i + 1}", p + "conv1.", out, origin, False)
        if arch == "resnet":
            skip = sv.get(s + "Skip/weight", 4)[::-1, ::-1].transpose(3, 2, 0, 1)
            out[p + "skip.weight"], origin[p + "skip.weight"] = _t(skip), f"synthesis/{s}Skip/weight"
    for r in sorted(scopes):
        if arch == "skip" or r == res:
            _layer(sv, f"{r}x{r}/ToRGB", "", f"synthesis.b{r}.torgb.", out, origin, False)
    leftover = [f"{net.scope}/{k}" for net in (top, mv, sv) for k in net.leftover()]
    if leftover:
        raise TFPickleError(f"{source}: unexpected variables {leftover[:5]} (not a StyleGAN2 generator)")
    base, cmax = channel_layout(channels, source)
    taps = [float(t) for t in np.asarray(_static(nets, "resample_kernel", [1, 3, 3, 1]), dtype=np.float64)]
    kernel = torch.outer(torch.tensor(taps), torch.tensor(taps))
    taps = filter_taps(kernel / kernel.sum(), 1.0, source, "resample_kernel", TFPickleError)
    w_dim = int(out["mapping.w_avg"].shape[0])
    kwargs = {"z_dim": int(out["mapping.fc0.weight"].shape[1]), "c_dim": 0, "w_dim": w_dim,
              "img_resolution": res, "img_channels": int(out[f"synthesis.b{res}.torgb.weight"].shape[0]),
              "mapping_kwargs": {"num_layers": n_dense,
                                 "lr_multiplier": float(_static(nets, "mapping_lrmul", 0.01))},
              "synthesis_kwargs": {"channel_base": base, "channel_max": cmax, "architecture": arch,
                                   "resample_filter": taps}}
    return kwargs, out, origin


def generator_network(data: Any, source: str) -> TFNetworkRecord:
    """``Gs`` of a ``(G, D, Gs)`` tuple (or the single network pickled)."""
    gs = data[-1] if isinstance(data, tuple) else data
    if not isinstance(gs, TFNetworkRecord) or not gs.components:
        raise TFPickleError(f"{source}: no TF generator network (expected the tuple (G, D, Gs))")
    return gs


def build_tf_generator(data: Any, name: str, source: str):
    """The own :class:`StyleGAN2Generator` from an unpickled TF-era ``(G, D, Gs)``."""
    kwargs, tensors, origin = convert_gs(generator_network(data, source), source)
    model = build_stylegan2(kwargs, tensors, name, source, TFPickleError, origin)
    model.loader = "tf-stylegan2"
    return model
