"""Headless replay of an edit log (``log.json`` from the server): the same edits, run again.

Each operation is recomputed from its recorded settings (a drag runs the same method, points,
mask and number of steps; a walk recomputes its direction set and applies the same sliders; a
reseed samples the same seed) and compared with the latent the server recorded, so a replay checks
itself. A region (REDs) walk is recomputed from the mask its record carries (``region``), at the
latent the walk started from (the server records ``region`` only when the set was computed there).
Operations that cannot be recomputed (uploaded latents, photos, region walks without ``region``)
use the recorded latent.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import base64

import numpy as np
import torch

from ..latent_io import latent_from_dict
from ..models.base import Generator, Latent, Settings, as_hw
from .session import LOG_FORMAT


@dataclass
class OpReport:
    """How one operation was replayed: ``recomputed`` or taken ``recorded``, and how far the
    recomputed latent is from the recorded one (max absolute difference of the code)."""

    index: int
    kind: str
    how: str
    deviation: float | None


def _deviation(a: Latent, b: Latent) -> float:
    """Max absolute difference; infinite when the generator settings differ (another image)."""
    if a.settings != b.settings:
        return float("inf")
    diff = float((a.code.detach().cpu() - b.code.detach().cpu()).abs().max())
    for name, value in a.offsets.items():
        other = b.offsets.get(name)
        if other is not None:
            diff = max(diff, float((value.detach().cpu() - other.detach().cpu()).abs().max()))
    return diff


def pack_mask(mask: Any) -> dict[str, Any]:
    """A binary ``H x W`` mask as ``{"shape", "bits"}`` (base64 of the packed bits): small in a JSON log."""
    m = np.asarray(mask) > 0.5
    return {"shape": list(m.shape), "bits": base64.b64encode(np.packbits(m.reshape(-1))).decode()}


def unpack_mask(packed: Any, resolution: Any) -> np.ndarray:
    """The float mask of ``pack_mask`` (checked against the model's side or ``(height, width)``)."""
    height, width = as_hw(resolution)
    if not isinstance(packed, dict) or list(packed.get("shape") or []) != [height, width]:
        raise ValueError(f"region mask must be {height}x{width} (height x width)")
    try:
        bits = np.unpackbits(np.frombuffer(base64.b64decode(str(packed["bits"]), validate=True), np.uint8))
    except (KeyError, ValueError) as exc:
        raise ValueError(f"region mask is not readable: {exc}") from None
    if bits.size < height * width:
        raise ValueError("region mask is too short")
    return bits[: height * width].reshape(height, width).astype(np.float32)


def start_latent(generator: Generator, log: dict[str, Any]) -> Latent:
    start = log.get("start")
    if not isinstance(start, dict):
        raise ValueError("edit log has no 'start' object")
    if "latent" in start:
        return latent_from_dict(start["latent"], generator)
    return generator.sample(int(start.get("seed", 0)), truncation=float(start.get("truncation", 1.0)),
                            space=start.get("space"), settings=Settings.from_dict(start.get("settings")))


def _drag(generator: Generator, latent: Latent, op: dict[str, Any]) -> Latent:
    from ..drag import DragConfig, DragRun

    config = DragConfig.from_dict(op.get("params") or {"method": op.get("method", "draggan")})
    mask = op.get("mask")
    if isinstance(mask, str):          # base64 PNG (white = may change); older logs hold a list
        from .session import decode_base64, mask_from_png
        mask = mask_from_png(decode_base64(mask, 16 << 20), generator.image_size)
    mask_tensor = None if mask is None else torch.tensor(np.asarray(mask, dtype=np.float32))
    run = DragRun(generator, latent, op["handles"], op["targets"], mask_tensor, config)
    calls = int(op.get("calls", op.get("steps", config.max_steps)))
    changes: dict[int, list[dict]] = {}
    for change in op.get("changes") or []:      # points moved / lr changed while the drag ran
        changes.setdefault(int(change["before_call"]), []).append(change)
    with torch.enable_grad():
        for call in range(1, calls + 1):
            for change in changes.get(call, []):
                if "lr" in change:
                    run.set_lr(float(change["lr"]))
                else:
                    run.set_points(change["handles"], change["targets"])
            run.step()
            if run.done:
                break
    return run.latent


def _walk(generator: Generator, latent: Latent, op: dict[str, Any], cache_root: Path | None) -> Latent:
    from ..directions import DirectionCache, Walk, apply_walks

    info = op.get("set") or {}
    method, params = info.get("method"), dict(info.get("params") or {})
    if not method:
        raise LookupError("the walk's direction set is not recorded")
    if method == "reds":
        if "region" not in op:
            raise LookupError("region directions depend on the mask and latent of their time")
        from ..directions import compute_directions

        mask = unpack_mask(op["region"].get("mask"), generator.image_size)
        dset = compute_directions(generator, "reds", latent=latent, mask=mask, **params)
    else:
        from .config import directions_root
        root = cache_root or directions_root()
        dset = DirectionCache(root).get(generator, method, **params)
    walks = [Walk(dset, int(w["index"]), float(w["amount"]), op.get("walk_kind", "linear")) for w in op["walks"]]
    with torch.no_grad():
        return apply_walks(generator, latent, walks)


def replay_log(generator: Generator, log: Any, recompute: bool = True, cache_root: Path | None = None,
               on_op: Callable[[OpReport], None] | None = None) -> tuple[Latent, list[OpReport]]:
    """The final latent of ``log`` and a report per operation."""
    if not isinstance(log, dict) or log.get("format") != LOG_FORMAT:
        raise ValueError(f"not an edit log (expected \"format\": \"{LOG_FORMAT}\")")
    latent = start_latent(generator, log)
    reports = []
    for index, op in enumerate(log.get("operations") or []):
        if not isinstance(op, dict):
            raise ValueError(f"operation {index} is not an object")
        kind = str(op.get("kind"))
        recorded = latent_from_dict(op["latent"], generator) if "latent" in op else None
        result, how = None, "recorded"
        if recompute:
            try:
                if kind == "drag":
                    result = _drag(generator, latent, op)
                elif kind == "walk":
                    result = _walk(generator, latent, op, cache_root)
                elif kind == "reseed":
                    result = generator.sample(int(op["seed"]), truncation=float(op.get("truncation", 1.0)),
                                              space=op.get("space"),
                                              settings=Settings.from_dict(op.get("settings")))
                elif kind == "noise":
                    result = latent.with_settings(generator.check_settings(latent.settings.replace(
                        noise_mode=op["noise_mode"], noise_seed=int(op.get("noise_seed", 0)))))
            except (LookupError, ImportError):
                result = None
            if result is not None:
                how = "recomputed"
        if result is None:
            if recorded is None:
                raise ValueError(f"operation {index} ({kind}) can neither be recomputed nor has a recorded latent")
            result = recorded
        deviation = _deviation(result, recorded) if (recorded is not None and how == "recomputed") else None
        report = OpReport(index, kind, how, deviation)
        reports.append(report)
        if on_op is not None:
            on_op(report)
        latent = result.detach()
    return latent, reports
