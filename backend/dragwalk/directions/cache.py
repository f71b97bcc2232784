"""Direction sets computed once per model and reused: memory first, then disk.

A slider must never wait for a computation that was already done, in this
process or an earlier one. The key is the model (its name and a fingerprint of
its first linear map, so two different files with one name do not collide), the
method, and the parameters after defaults are filled in (so ``num=32`` and "no
num" are the same entry). Person-given ``codes``/``labels`` enter the key by a
hash of their values. REDs with a mask depend on the image and the painted
region: they are kept only in a small in-memory table, never on disk. A run that stopped early
(``params["truncated"]``, DP-LaSE at its time limit) is handed to its caller and kept nowhere: a time
limit is a budget, not part of the key (:data:`BUDGETS`), so the key belongs to the full run. Every set carries its
``provenance`` (method, parameters, model hash, dragwalk version) in its file.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from ..home import dragwalk_home
from ..models.base import Generator
from . import progress
from .base import DirectionSet, model_fingerprint
from .labelled import model_dir
from .methods import check_method, compute_directions, input_hashes, resolved_params

#: parameters that bound a run's cost but not its result: a run they cut short is never stored
#: on disk (``params["truncated"]``), so a full run answers every value of them
BUDGETS = ("time_limit",)


def cache_key(generator: Generator, method: str, params: dict[str, Any]) -> str:
    """Stable hex key of (model, method, resolved parameters but budgets, hashed inputs)."""
    merged = {k: v for k, v in resolved_params(method, params).items() if k not in BUDGETS}
    inputs = input_hashes(params)
    blob = json.dumps({"model": generator.name, "fp": model_fingerprint(generator), "method": method,
                       "params": merged, "inputs": inputs}, sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


class DirectionCache:
    """``get(generator, method, **params)``: computed once, then from memory or disk.

    Args:
        root: folder for the files (default ``$DRAGWALK_HOME/directions``, else
            ``~/.dragwalk/directions``); one sub-folder per model.
        memory: how many sets to keep in memory (REDs included).
    """

    def __init__(self, root: str | Path | None = None, memory: int = 64):
        self.root = Path(root).expanduser() if root is not None else dragwalk_home() / "directions"
        self.memory = int(memory)
        self._sets: OrderedDict[str, DirectionSet] = OrderedDict()
        self._lock = threading.Lock()
        self._key_locks = progress.KeyedLocks()

    def path(self, generator: Generator, method: str, **params: Any) -> Path:
        """Where the set for these arguments is (or would be) stored."""
        return model_dir(self.root, generator.name) / f"{method}-{cache_key(generator, method, params)}.safetensors"

    def on_disk(self, generator: Generator, method: str, **params: Any) -> bool:
        return self._persistent(method, params) and self.path(generator, method, **params).is_file()

    @staticmethod
    def _persistent(method: str, params: dict[str, Any]) -> bool:
        return bool(check_method(method)["cacheable"]) and params.get("mask") is None \
            and params.get("latent") is None

    def get(self, generator: Generator, method: str, **params: Any) -> DirectionSet:
        key = cache_key(generator, method, params)
        with self._lock:
            hit = self._sets.get(key)
            if hit is not None:
                self._sets.move_to_end(key)
                return hit
        with self._key_locks.hold(key):  # one computation per key, however many callers wait for it
            with self._lock:
                hit = self._sets.get(key)
            if hit is not None:
                return hit
            persistent = self._persistent(method, params)
            path = model_dir(self.root, generator.name) / f"{method}-{key}.safetensors"
            result = None
            if persistent and path.is_file():
                try:
                    result = DirectionSet.load(path)
                except ValueError:
                    result = None  # a damaged file is recomputed and overwritten
            if result is None:
                result = compute_directions(generator, method, **params)
                # a run cut short (DP-LaSE's time limit) is not what these parameters give on
                # another machine: it serves this process, and is never written under their key
                if persistent and not result.params.get("truncated", False):
                    result.save(path)
            if result.params.get("truncated", False):
                return result       # nor kept under the key, which a full run (no time limit) shares
            with self._lock:
                self._sets[key] = result
                while len(self._sets) > self.memory:
                    self._sets.popitem(last=False)
            return result
