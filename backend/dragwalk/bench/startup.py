"""``dragwalk bench directions --startup``: how soon after ``dragwalk serve`` starts is every
direction set the page offers ready, and how fast is a second start (disk cache)?

Issue 16's target: on the default model every method is ready <= 5 s after server start plus its
first background computation, and a second start takes <= 1 s. Each set's line says how long it
``waited`` beyond its own computation after the server served, and flags a wait over
:data:`WAIT_BOUND`. The bench starts a real server on a fresh ``DRAGWALK_HOME`` with the background precomputation on, polls ``GET /api/directions/ready``
every 0.1 s and prints when each set became ready (seconds since the process was spawned) and what
its computation took; then it stops the server and starts it again on the same home, where every
set comes from disk.

With ``--asked`` it then measures what a page sees: for each method, on a fresh home, a request for
the set the moment the server serves, with the background search running and on a server without
it (the set's own computation); the difference is what the page waited for the background.
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


#: issue 16's bound: a set is ready at most this long after the server serves plus its own computation
WAIT_BOUND = 5.0


def _one_start(args: argparse.Namespace, home: Path, label: str, limit: float) -> dict[str, Any]:
    from ..server.precompute import SHARES_WORK_OF
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
            if at is not None and took is not None:
                # waited: beyond its own computation after the server served (the sets before it
                # in the queue); a set that reads work another's computation did (SFVQ GANSpace's
                # PCA, LSD the scored faces) counts that computation as its own
                shared = methods.get(SHARES_WORK_OF.get(method, ""), {}).get("seconds") or 0.0
                wait = entry["waited"] = at - serving - float(took) - float(shared)
                over = f" (over {WAIT_BOUND:g} s)" if wait > WAIT_BOUND else ""
                extra += f", waited {wait:.1f} s{over}"
            print(f"  {model} {method:13s} {entry['state']:9s} ready at {at if at is None else round(at, 1)} s, "
                  f"computation {took} s{extra}")
    all_ready = max(seen["ready_at"].values()) if seen["ready_at"] else None
    print(f"  all sets done {all_ready if all_ready is None else round(all_ready, 1)} s after spawn; "
          f"precompute thread {seen['summary'].get('seconds')} s after the app started")
    return {"serving": serving, **seen}


def _ask(base: str, method: str, limit: float) -> float:
    """Seconds until ``compute_directions`` of ``method`` (its defaults, as the page sends it) is
    answered, asked over HTTP in a new session."""
    import httpx

    with httpx.Client(base_url=base, timeout=limit) as client:
        session = client.post("/api/sessions", json={"seed": 1}).json()
        began = time.monotonic()
        reply = client.post(f"/api/sessions/{session['id']}/commands",
                            json={"type": "compute_directions", "method": method, "params": {}})
        took = time.monotonic() - began
    if reply.status_code != 200 or reply.json()["reply"].get("type") != "directions":
        raise RuntimeError(f"{method}: {reply.status_code} {reply.text[:200]}")
    return took


def _asked_at_start(args: argparse.Namespace, limit: float) -> dict[str, Any]:
    """Per method, a page that asks for the set the moment the server serves: how long it waits
    with the background search running, against the same request on a server without it (the
    set's own computation there). Each on a fresh home."""
    from ..server.precompute import ORDER
    from .server import _start_server

    out: dict[str, Any] = {}
    print("asked at start (a page asks the moment the server serves; fresh home each):")
    for method in ORDER:
        row = {}
        for label, precompute in (("alone", False), ("with the background search", True)):
            with tempfile.TemporaryDirectory(prefix="dragwalk-asked-") as tmp:
                proc, base = _start_server(args, Path(tmp), precompute=precompute)
                try:
                    row[label] = _ask(base, method, limit)
                finally:
                    proc.terminate()
                    proc.wait(30)
        row["waited_extra"] = row["with the background search"] - row["alone"]
        out[method] = row
        print(f"  {method:13s} alone {row['alone']:6.1f} s, with the background search "
              f"{row['with the background search']:6.1f} s (extra {row['waited_extra']:+.1f} s)")
    return out


def run_startup(args: argparse.Namespace, limit: float = 900.0) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="dragwalk-startup-") as tmp:
        home = Path(tmp)
        first = _one_start(args, home, "first start (empty cache)", limit)
        second = _one_start(args, home, "second start (disk cache)", limit)
    figures: dict[str, Any] = {"first": first, "second": second}
    if getattr(args, "asked", False):
        figures["asked"] = _asked_at_start(args, limit)
    return figures
