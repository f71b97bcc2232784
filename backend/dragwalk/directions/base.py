"""The result every direction method returns, and the small helpers they share.

A :class:`DirectionSet` is a stack of unit vectors in one latent space with a
natural step size each. It is the only thing walks, the cache, the server and
the CLI need to know about a method: how the vectors were found stays inside
the method's module.

Files are one ``.safetensors`` holding the tensors with the JSON description in
the safetensors metadata, so loading never unpickles anything.
"""

from __future__ import annotations

import hashlib
import json
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import Tensor

from ..models.base import Generator, Latent

FORMAT = "dragwalk-directions"
VERSION = 1


@dataclass
class DirectionSet:
    """Directions found by one method for one model.

    Args:
        method: method key (``sefa``, ``ganspace``, ...).
        model: the generator's name.
        space: the latent space the vectors live in (``z`` or ``w``); a ``w``
            direction is applied to the w+ rows ``layers`` when the latent is w+.
        vectors: ``[K, D]`` unit rows.
        scales: ``[K]`` latent distance of "one unit" on a slider.
        layers: ``(start, end)`` rows of w+ the directions apply to (StyleGAN), or ``None`` (all).
        labels: a short name per direction.
        values: a number per direction where the method has one (eigenvalue, accuracy, ...).
        params: the parameters the set was computed with (JSON-friendly).
        extras: method data a walk or a tool needs later (DP-LaSE channel groups,
            the SFVQ codebook, the REDs mask, the LSD basis ...).
        provenance: what produced the set, filled by ``compute_directions``: method, resolved
            parameters, hashes of the inputs, model name and weight hash, dragwalk version.
    """

    method: str
    model: str
    space: str
    vectors: Tensor
    scales: Tensor
    layers: tuple[int, int] | None = None
    labels: list[str] = field(default_factory=list)
    values: list[float] | None = None
    params: dict[str, Any] = field(default_factory=dict)
    extras: dict[str, Tensor] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.vectors = self.vectors.detach().float().cpu()
        if self.vectors.dim() != 2:
            raise ValueError(f"vectors must be [K, D], got {tuple(self.vectors.shape)}")
        self.scales = torch.as_tensor(self.scales, dtype=torch.float32).detach().cpu().reshape(-1)
        if self.scales.numel() != self.vectors.shape[0]:
            raise ValueError(f"{self.scales.numel()} scales for {self.vectors.shape[0]} vectors")
        if not self.labels:
            self.labels = [f"{self.method} {i}" for i in range(len(self))]
        if len(self.labels) != len(self):
            raise ValueError(f"{len(self.labels)} labels for {len(self)} vectors")
        if self.layers is not None:
            self.layers = (int(self.layers[0]), int(self.layers[1]))
        self.extras = {k: v.detach().cpu() for k, v in self.extras.items()}

    def __len__(self) -> int:
        return int(self.vectors.shape[0])

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def check_index(self, index: int) -> int:
        if not 0 <= int(index) < len(self):
            raise ValueError(f"{self.method}: direction index {index} out of range 0..{len(self) - 1}")
        return int(index)

    # ----------------------------------------------------------------- summary / files
    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly summary (no big tensors) for the server and ``directions list``."""
        return {
            "method": self.method,
            "model": self.model,
            "space": self.space,
            "count": len(self),
            "dim": self.dim,
            "layers": list(self.layers) if self.layers else None,
            "labels": list(self.labels),
            "scales": [round(float(s), 6) for s in self.scales],
            "values": None if self.values is None else [float(v) for v in self.values],
            "params": dict(self.params),
            "extras": sorted(self.extras),
            "provenance": dict(self.provenance),
        }

    def save(self, path: str | Path) -> Path:
        from safetensors.torch import save_file

        path = Path(path)
        if path.suffix != ".safetensors":
            path = path.with_name(path.name + ".safetensors")
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {"vectors": self.vectors.contiguous(), "scales": self.scales.contiguous()}
        tensors.update({f"extras.{k}": v.contiguous() for k, v in self.extras.items()})
        meta = {"format": FORMAT, "version": VERSION, "method": self.method, "model": self.model,
                "space": self.space, "layers": list(self.layers) if self.layers else None,
                "labels": self.labels, "values": self.values, "params": self.params,
                "provenance": self.provenance}
        tmp = path.with_name(path.name + ".tmp")
        save_file(tensors, str(tmp), metadata={"dragwalk": json.dumps(meta)})
        tmp.replace(path)  # a reader never sees half a file
        return path

    @classmethod
    def load(cls, path: str | Path) -> "DirectionSet":
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no direction file at {path}")
        try:
            with safe_open(str(path), framework="pt") as handle:
                meta = json.loads((handle.metadata() or {})["dragwalk"])
                tensors = {k: handle.get_tensor(k) for k in handle.keys()}
        except (KeyError, json.JSONDecodeError, OSError) as exc:
            raise ValueError(f"{path}: not a dragwalk direction file ({exc})") from None
        except Exception as exc:  # safetensors' own error types
            raise ValueError(f"{path}: cannot read ({exc})") from None
        if meta.get("format") != FORMAT:
            raise ValueError(f"{path}: not a dragwalk direction file")
        extras = {k[len("extras."):]: v for k, v in tensors.items() if k.startswith("extras.")}
        return cls(method=meta["method"], model=meta["model"], space=meta["space"],
                   vectors=tensors["vectors"], scales=tensors["scales"],
                   layers=tuple(meta["layers"]) if meta.get("layers") else None,
                   labels=list(meta.get("labels") or []), values=meta.get("values"),
                   params=dict(meta.get("params") or {}), extras=extras,
                   provenance=dict(meta.get("provenance") or {}))


# --------------------------------------------------------------------- shared helpers
# Threads are the caller's: the CLIs take --threads, the server sets its own. Library code never
# changes a process-wide setting (tests/test_structure.py checks).


_fingerprints: "weakref.WeakKeyDictionary[Generator, str]" = weakref.WeakKeyDictionary()


def model_fingerprint(generator: Generator) -> str:
    """Short hash of the generator's first linear map (cached per generator object): two
    different files with one model name do not share directions."""
    fp = _fingerprints.get(generator)
    if fp is None:
        weight = generator.first_linear_map().detach().float().cpu().contiguous().numpy()
        fp = hashlib.sha1(weight.tobytes()).hexdigest()[:10]
        _fingerprints[generator] = fp
    return fp


def normalize_rows(vectors: Tensor, eps: float = 1e-12) -> Tensor:
    """Unit rows: every method reports unit directions so ``scales`` carry the magnitude."""
    return vectors / vectors.norm(dim=1, keepdim=True).clamp_min(eps)


def signed_rows(vectors: Tensor) -> Tensor:
    """Rows with a deterministic sign: each row's largest-magnitude component is positive.

    Eigen- and singular-vector solvers return either sign; a slider must not flip between
    runs, machines or library versions, so every eigen-method fixes it this one way.
    """
    idx = vectors.abs().argmax(dim=1, keepdim=True)
    signs = torch.sign(vectors.gather(1, idx))
    return vectors * torch.where(signs == 0, torch.ones_like(signs), signs)


def density_endpoint(z0: Tensor, step: Tensor) -> Tensor:
    """``(|z0| / |z0 + step|) (z0 + step)`` row-wise: the end point on ``z0``'s density shell.

    DP-LaSE trains with these endpoints and density walks use them, so they live here.
    """
    moved = z0 + step
    return moved * (z0.norm(dim=-1, keepdim=True) / moved.norm(dim=-1, keepdim=True).clamp_min(1e-12))


def add_direction(code: Tensor, step: Tensor, layers: tuple[int, int] | None) -> Tensor:
    """``code + step`` for ``[N, D]`` codes; on the rows ``layers`` for ``[N, L, D]`` (w+) codes.

    The one rule for where a direction lands (walks, the REDs Jacobian, SFVQ's segment latents).
    """
    step = step.to(code)
    if code.dim() == 2:
        return code + step
    start, end = layers if layers is not None else (0, code.shape[1])
    out = code.clone()
    out[:, start:end] = out[:, start:end] + step
    return out


def edit_space(generator: Generator) -> str:
    """The vector space methods work in: ``w`` where the model has one, else ``z``."""
    return "w" if "w" in generator.latent_spaces else "z"


def layer_range(generator: Generator, layers: Sequence[int] | None) -> tuple[int, int] | None:
    """Validate a ``(start, end)`` w+ row range; ``None`` means all rows."""
    if layers is None:
        return None
    if len(layers) != 2:
        raise ValueError(f"layers must be (start, end), got {layers!r}")
    start, end = int(layers[0]), int(layers[1])
    if not 0 <= start < end <= generator.num_ws:
        raise ValueError(f"layer range [{start}, {end}) outside 0..{generator.num_ws}")
    return start, end


def sample_space(generator: Generator, n: int, seed: int, space: str) -> Tensor:
    """``[n, D]`` sampled codes of ``space`` (``z`` or ``w``)."""
    latent = generator.sample_codes(n, seed=seed, space=space)
    code = latent.code
    if code.dim() == 3:  # a w+ answer: every row is the same w
        code = code[:, 0]
    return code.detach().float()


def projected_std(generator: Generator, vectors: Tensor, space: str, n: int = 1024,
                  seed: int = 12345) -> Tensor:
    """Std of sampled latents along each unit row: the natural step size of a direction.

    For an isotropic Gaussian ``z`` every unit direction has std 1, so no sampling is done.
    """
    if space == "z":
        return torch.ones(vectors.shape[0])
    codes = sample_space(generator, n, seed, space).cpu()
    return (codes @ vectors.T).std(dim=0)


def as_latent_code(generator: Generator, latent: Latent, space: str) -> Latent:
    """``latent`` expressed where a direction in ``space`` can be added to it."""
    if latent.space == space or (space == "w" and latent.space == "w+"):
        return latent
    if space == "w" and latent.space == "z":
        return generator.convert(latent, "w")
    raise ValueError(f"a direction in {space!r} cannot be applied to a {latent.space!r} latent "
                     f"(sample the image in {space!r})")


def layer_features(generator: Generator, latent: Latent, layer: str) -> Tensor:
    """The activation of ``layer`` for ``latent``, running only the blocks up to it.

    The one z -> w+ -> features path of the package: a generator's ``synthesize`` takes a
    latent in any of its spaces (and its offsets), so nothing is converted here.
    """
    return generator.synthesize(latent, feature_layer=layer, stop_at_feature=True).features


@torch.no_grad()
def features(generator: Generator, codes: Tensor, layer: str, space: str = "z",
             batch: int = 1000) -> Tensor:
    """Flattened activation of ``layer`` for ``[N, D]`` codes, in batches (early activations)."""
    out = [layer_features(generator, Latent(space, chunk.to(generator.device)), layer)
           .reshape(chunk.shape[0], -1).float().cpu() for chunk in codes.split(batch)]
    return torch.cat(out)
