"""``dragwalk bench directions --startup``: how soon after ``dragwalk serve`` starts is every
direction set the page offers ready, and how fast is a second start (disk cache)?

Issue 16's target: on the default model every method is ready <= 5 s after server start plus its
first background computation, and a second start takes <= 1 s. The bench starts a real server on a
fresh ``DRAGWALK_HOME`` with the background precomputation on, polls ``GET /api/directions/ready``
every 0.1 s and prints when each set became ready (seconds since the process was spawned) and what
its computation took; then it stops the server and starts it again on the same home, where every
set comes from disk.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any


def _watch(base: str, spawned: float, limit: float) -> dict[str, Any]:
    import httpx

    ready_at: dict[str, float] = {}
    summary: dict[str, Any] = {}
    with httpx.Client(base_url=base, timeout=10) as client:
        while time.monotonic() - spawned < limit:
            summary = client.get("/api/directions/ready").json()
            for model in summary.get("models", {}).values():
                for method, entry in model.items():
                    if entry["state"] in ("ready", "failed") and method not in ready_at:
                        ready_at[method] = time.monotonic() - spawned
            if summary.get("enabled") and not summary.get("running"):
                break
            time.sleep(0.1)
    return {"ready_at": ready_at, "summary": summary}


def _one_start(args: argparse.Namespace, home: Path, label: str, limit: float) -> dict[str, Any]:
    from .server import _start_server

    spawned = time.monotonic()
    proc, base = _start_server(args, home, precompute=True)
    serving = time.monotonic() - spawned
    try:
        seen = _watch(base, spawned, limit)
    finally:
        proc.terminate()
        proc.wait(30)
    print(f"{label}: serving after {serving:.1f} s (process spawn to /api/health)")
    models = seen["summary"].get("models", {})
    for model, methods in models.items():
        for method, entry in methods.items():
            at = seen["ready_at"].get(method)
            took = entry.get("seconds")
            extra = " from disk" if entry.get("from_disk") else ""
            extra += f" ({entry.get('error')})" if entry["state"] == "failed" else ""
            print(f"  {model} {method:13s} {entry['state']:9s} ready at {at if at is None else round(at, 1)} s, "
                  f"computation {took} s{extra}")
    all_ready = max(seen["ready_at"].values()) if seen["ready_at"] else None
    print(f"  all sets done {all_ready if all_ready is None else round(all_ready, 1)} s after spawn; "
          f"precompute thread {seen['summary'].get('seconds')} s after the app started")
    return {"serving": serving, **seen}


def run_startup(args: argparse.Namespace, limit: float = 900.0) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="dragwalk-startup-") as tmp:
        home = Path(tmp)
        first = _one_start(args, home, "first start (empty cache)", limit)
        second = _one_start(args, home, "second start (disk cache)", limit)
    return {"first": first, "second": second}
