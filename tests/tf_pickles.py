"""Test helper: TF-era StyleGAN2 pickles (``(G, D, Gs)`` of ``dnnlib.tflib.network.Network``).

Written from the format's description: each network pickles as the global
``dnnlib.tflib.network.Network`` rebuilt with ``NEWOBJ`` and given its state dict by ``BUILD``
(``version``, ``name``, ``static_kwargs``, ``components``, ``build_module_src``,
``build_func_name``, ``variables`` as ``(name, numpy array)`` pairs). ``build_module_src``
creates a marker file if anybody executes it.

``reference_forward`` follows the TF graph on the TF names and layouts: ``[k, k, in, out]``
kernels correlated (``tf.nn.conv2d``), an upsampling conv as "upsample (zero insertion + FIR,
gain 4) then correlate", styles ``x @ mod_weight / sqrt(in) + mod_bias + 1``.
"""

from __future__ import annotations

import math
import pickle

import numpy as np
import torch
import torch.nn.functional as F

import stylegan_pickles as sp

SQRT2 = math.sqrt(2.0)


class FakeTFNetwork:
    def __init__(self, name: str, variables: dict[str, np.ndarray], components: dict | None = None,
                 static_kwargs: dict | None = None, src: str = ""):
        self.state = {"version": 4, "name": name, "static_kwargs": sp.FakeEasyDict(static_kwargs or {}),
                      "components": sp.FakeEasyDict(components or {}), "build_module_src": src,
                      "build_func_name": f"training.networks_stylegan2.G_{name}",
                      "variables": list(variables.items())}


class TFPickler(sp.NetworkPickler):
    def save(self, obj, save_persistent_id=True):
        if isinstance(obj, FakeTFNetwork):
            if id(obj) in self.memo:  # a component shared by G and Gs
                self.write(self.get(self.memo[id(obj)][0]))
                return None
            self.save(sp.GlobalRef("dnnlib.tflib.network", "Network"))
            self.save(())
            self.write(pickle.NEWOBJ)
            self.memoize(obj)
            self.save(obj.state)
            self.write(pickle.BUILD)
            return None
        return super().save(obj, save_persistent_id)


def dumps(obj, protocol: int = 3) -> bytes:
    import io
    buf = io.BytesIO()
    TFPickler(buf, protocol=protocol).dump(obj)
    return buf.getvalue()


def variables(res: int, z_dim: int = 16, w_dim: int = 16, n_dense: int = 3, fmap_base: int = 256,
              fmap_max: int = 16, arch: str = "skip", seed: int = 0, lrmul: float = 0.01):
    """(mapping vars, synthesis vars, Gs vars) with random values, TF names and layouts."""
    g = np.random.default_rng(seed)

    def rnd(*shape, scale=1.0, shift=0.0):
        return (g.standard_normal(shape) * scale + shift).astype(np.float32)

    mv = {}
    widths = [z_dim] + [w_dim] * n_dense
    for i in range(n_dense):
        mv[f"Dense{i}/weight"] = rnd(widths[i], widths[i + 1], scale=1 / lrmul)
        mv[f"Dense{i}/bias"] = rnd(widths[i + 1], scale=0.1 / lrmul)

    def nf(r):
        return min(int(fmap_base / (2.0 ** (math.log2(r) - 1))), fmap_max)

    sv = {"4x4/Const/const": rnd(1, nf(4), 4, 4)}

    def layer(scope, cin, cout, k=3, noise=True):
        sv[scope + "/weight"] = rnd(k, k, cin, cout)
        sv[scope + "/mod_weight"] = rnd(w_dim, cin)
        sv[scope + "/mod_bias"] = rnd(cin, scale=0.2)
        if noise:
            sv[scope + "/noise_strength"] = np.float32(g.standard_normal() * 0.3).reshape(())
        sv[scope + "/bias"] = rnd(cout, scale=0.2)

    layer("4x4/Conv", nf(4), nf(4))
    log2 = int(math.log2(res))
    for lr in range(2, log2 + 1):
        r = 2 ** lr
        if r > 4:
            layer(f"{r}x{r}/Conv0_up", nf(r // 2), nf(r))
            layer(f"{r}x{r}/Conv1", nf(r), nf(r))
            if arch == "resnet":
                sv[f"{r}x{r}/Skip/weight"] = rnd(1, 1, nf(r // 2), nf(r))
        if arch == "skip" or r == res:
            layer(f"{r}x{r}/ToRGB", nf(r), 3, k=1, noise=False)
    for i in range(2 * log2 - 3):
        r = 2 ** ((i + 5) // 2)
        sv[f"noise{i}"] = rnd(1, 1, r, r)
    gv = {"dlatent_avg": rnd(w_dim, scale=0.5), "lod": np.float32(0).reshape(())}
    return mv, sv, gv


def tf_pickle(mv, sv, gv, src: str = "", static: dict | None = None, protocol: int = 3) -> bytes:
    static = static or {}
    mapping = FakeTFNetwork("mapping", mv, static_kwargs=dict(static, mapping_lrmul=static.get("mapping_lrmul", 0.01)),
                            src=src)
    synthesis = FakeTFNetwork("synthesis", sv, static_kwargs={"resolution": 0}, src=src)
    gs = FakeTFNetwork("Gs", gv, {"mapping": mapping, "synthesis": synthesis}, {"truncation_psi": 0.5}, src)
    g = FakeTFNetwork("G", gv, {"mapping": mapping, "synthesis": synthesis}, {}, src)
    d = FakeTFNetwork("D", {"Output/weight": np.zeros((4, 1), np.float32)}, {}, {}, src)
    return dumps((g, d, gs), protocol)


# ---------------------------------------------------------------- the TF graph on TF names
def reference_mapping(mv, gv, z, psi=1.0, cutoff=None, num_ws=1, lrmul=0.01):
    t = lambda a: torch.from_numpy(np.asarray(a))  # noqa: E731
    x = z / torch.sqrt((z * z).mean(dim=1, keepdim=True) + 1e-8)
    i = 0
    while f"Dense{i}/weight" in mv:
        w = t(mv[f"Dense{i}/weight"])
        y = x @ (w * lrmul / math.sqrt(w.shape[0])) + t(mv[f"Dense{i}/bias"]) * lrmul
        x = F.leaky_relu(y, 0.2) * SQRT2
        i += 1
    ws = x[:, None].repeat(1, num_ws, 1)
    avg = t(gv["dlatent_avg"])
    rows = num_ws if cutoff is None else cutoff
    ws[:, :rows] = avg + psi * (ws[:, :rows] - avg)
    return ws


def _upsample(x, margin=0):
    n, c, h, w = x.shape
    up = torch.zeros(n, c, 2 * h, 2 * w)
    up[:, :, ::2, ::2] = x
    up = F.pad(up, [2 + margin, 1 + margin, 2 + margin, 1 + margin])
    k = torch.tensor([1.0, 3, 3, 1])
    k = torch.outer(k, k) / 64 * 4
    return F.conv2d(up, k.expand(c, 1, 4, 4), groups=c)


def _modconv(sv, scope, x, w, demod, up):
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
    kernel = t(sv[scope + "/weight"])               # [k, k, in, out]
    kh, kw, cin, cout = kernel.shape
    s = w @ (t(sv[scope + "/mod_weight"]) / math.sqrt(w.shape[1])) + t(sv[scope + "/mod_bias"]) + 1
    outs = []
    for i in range(x.shape[0]):
        k = kernel / math.sqrt(kh * kw * cin) * s[i].reshape(1, 1, cin, 1)
        if demod:
            k = k / torch.sqrt((k * k).sum(dim=[0, 1, 2], keepdim=True) + 1e-8)
        k = k.permute(3, 2, 0, 1)                    # correlation kernel [out, in, k, k]
        xi = x[i:i + 1]
        if up:
            outs.append(F.conv2d(_upsample(xi, margin=kh // 2), k))
        else:
            outs.append(F.conv2d(xi, k, padding=kh // 2))
    return torch.cat(outs)


def _layer(sv, scope, x, w, noise, up):
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
    y = _modconv(sv, scope, x, w, True, up)
    y = y + t(noise)[0, 0] * float(sv[scope + "/noise_strength"])
    y = y + t(sv[scope + "/bias"]).reshape(1, -1, 1, 1)
    return F.leaky_relu(y, 0.2) * SQRT2


def _torgb(sv, scope, x, w):
    return _modconv(sv, scope, x, w, False, False) + torch.from_numpy(sv[scope + "/bias"]).reshape(1, -1, 1, 1)


def reference_synthesis(sv, ws, arch: str = "skip"):
    res = max(int(k.split("x")[0]) for k in sv if "x" in k.split("/")[0])
    x = torch.from_numpy(sv["4x4/Const/const"]).repeat(ws.shape[0], 1, 1, 1)
    x = _layer(sv, "4x4/Conv", x, ws[:, 0], sv["noise0"], False)
    y = _torgb(sv, "4x4/ToRGB", x, ws[:, 1]) if arch == "skip" else None
    r = 8
    while r <= res:
        li = int(math.log2(r)) * 2 - 5
        t = x
        x = _layer(sv, f"{r}x{r}/Conv0_up", x, ws[:, li], sv[f"noise{li}"], True)
        x = _layer(sv, f"{r}x{r}/Conv1", x, ws[:, li + 1], sv[f"noise{li + 1}"], False)
        if arch == "resnet":
            skip = torch.from_numpy(np.ascontiguousarray(sv[f"{r}x{r}/Skip/weight"])).permute(3, 2, 0, 1)
            t = F.conv2d(_upsample(t), skip / math.sqrt(skip.shape[1]))
            x = (x + t) / SQRT2
        if arch == "skip":
            y = _upsample(y) + _torgb(sv, f"{r}x{r}/ToRGB", x, ws[:, li + 2])
        elif r == res:
            y = _torgb(sv, f"{r}x{r}/ToRGB", x, ws[:, li + 2])
        r *= 2
    return y
