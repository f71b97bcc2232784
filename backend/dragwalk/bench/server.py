"""Server figures: frame latency and rate of one drag, and fairness of 8 drags at once.

Starts ``dragwalk serve`` in a subprocess on a free port (temporary store), drives it over real
websockets like the page does (hello, acks), and reports:

* one session dragging: frames per second received, and latency from the worker finishing a
  step (``progress.t``, server wall clock) to the page receiving its frame, p50/p95;
* N sessions dragging at once for a fixed time: total steps per second, and the slowest session's
  share of all steps (fair round robin gives 1/N);
* with ``--compare-batching``, the same N sessions on a second server started with
  ``--no-batch-drags`` (every drag stepped on its own), and the ratio of total steps per second.

The drags use an optimising method (``--method``, default DragGAN) towards a far target, so every
session keeps stepping until the deadline.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None, help="model the server opens (default: its default)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--sessions", type=int, default=8, help="concurrent sessions in the fairness run")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each run")
    parser.add_argument("--url", default=None, help="use a running server instead of starting one")
    parser.add_argument("--method", default="draggan", help="drag method (an optimising one keeps stepping)")
    parser.add_argument("--compare-batching", action="store_true",
                        help="also run the concurrent sessions on a server with --no-batch-drags")
    parser.add_argument("--json", dest="json_out", default=None, help="also write the figures to this file")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_server(args: argparse.Namespace, home: Path, *extra: str,
                  precompute: bool = False) -> tuple[subprocess.Popen, str]:
    """``dragwalk serve`` on a free port; without ``precompute`` the background direction sets
    are off (they would compete with the drags this bench measures)."""
    import httpx

    port = _free_port()
    cmd = [sys.executable, "-m", "dragwalk", "serve", "--port", str(port), "--device", args.device,
           "--store", str(home / "bench.sqlite3"), *extra]
    if args.model:
        cmd += ["--model", args.model]
    env = dict(os.environ, DRAGWALK_HOME=str(home), DRAGWALK_PRECOMPUTE_DIRECTIONS="1" if precompute else "0")
    env.pop("DRAGWALK_TOKEN", None)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(base + "/api/health", timeout=2).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not start in 120 s")


async def _drag_session(base: str, seed: int, seconds: float, start: asyncio.Event | None = None,
                        method: str = "draggan") -> dict[str, Any]:
    """Drag one session for ``seconds`` (far target, huge step budget), then stop; collect timings."""
    import httpx
    import websockets

    async with httpx.AsyncClient(base_url=base, timeout=120) as client:
        session = (await client.post("/api/sessions", json={"seed": seed})).json()
        resolution = session["resolution"]
    ws_url = base.replace("http", "ws", 1) + f"/ws/sessions/{session['id']}"
    produced: dict[int, float] = {}
    latencies: list[float] = []
    frames = 0
    async with websockets.connect(ws_url, max_size=2**25) as ws:
        await ws.send(json.dumps({"type": "hello", "version": 1, "credits": 2}))
        r = resolution
        await ws.send(json.dumps({"type": "set_points", "handles": [[0.45 * r, 0.5 * r]],
                                  "targets": [[0.9 * r, 0.5 * r]]}))
        if start is not None:
            await start.wait()
        await ws.send(json.dumps({"type": "start_drag", "method": method,
                                  "params": {"max_steps": 2000, "stop_distance": 0.01}}))
        began = time.time()
        first_frame = last_frame = None
        stopped = False
        while True:
            if not stopped and time.time() >= began + seconds:
                # steps keep arriving faster than any timeout, so the deadline is checked here
                await ws.send(json.dumps({"type": "stop_drag"}))
                stopped = True
            timeout = max(0.05, began + seconds - time.time()) if not stopped else 120
            try:
                message = await asyncio.wait_for(ws.recv(), timeout)
            except asyncio.TimeoutError:
                await ws.send(json.dumps({"type": "stop_drag"}))
                stopped = True
                continue
            now = time.time()
            if isinstance(message, bytes):
                seq = int.from_bytes(message[4:8], "big")
                step = int.from_bytes(message[8:12], "big")
                await ws.send(json.dumps({"type": "ack", "seq": seq}))
                if message[3] == 1:
                    frames += 1
                    first_frame = first_frame or now
                    last_frame = now
                    if step in produced:
                        latencies.append(now - produced.pop(step))
                continue
            event = json.loads(message)
            if event["type"] == "progress" and "t" in event:
                produced[event["step"]] = float(event["t"])
            elif event["type"] == "done":
                return {"steps": int(event["steps"]), "reason": event.get("reason"),
                        "seconds": now - began, "frames": frames,
                        "frame_span": (last_frame - first_frame) if frames > 1 else 0.0,
                        "latencies": latencies}
            elif event["type"] == "error":
                raise RuntimeError(f"server error: {event}")


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


async def _one_session(base: str, args: argparse.Namespace) -> dict[str, Any]:
    single = await _drag_session(base, 1, args.seconds, method=args.method)
    lat = single["latencies"]
    return {"steps": single["steps"], "seconds": round(single["seconds"], 2),
            "steps_per_second": round(single["steps"] / single["seconds"], 2),
            "frames": single["frames"],
            "fps": round((single["frames"] - 1) / single["frame_span"], 2) if single["frame_span"] else 0.0,
            "latency_ms_p50": round(1000 * _percentile(lat, 0.5), 1),
            "latency_ms_p95": round(1000 * _percentile(lat, 0.95), 1),
            "latency_samples": len(lat)}


async def _concurrent(base: str, args: argparse.Namespace) -> dict[str, Any]:
    start = asyncio.Event()
    tasks = [asyncio.ensure_future(_drag_session(base, 100 + i, args.seconds, start, args.method))
             for i in range(args.sessions)]
    await asyncio.sleep(1.0)       # every session created and connected before the drags start
    start.set()
    results = await asyncio.gather(*tasks)
    steps = [r["steps"] for r in results]
    wall = max(r["seconds"] for r in results)
    # a drag that ended on its own (its tracker arrived, say) needs no more steps: fairness is
    # judged among the sessions still dragging when they were stopped at the deadline
    running = [r["steps"] for r in results if r["reason"] == "stopped"] or steps
    return {"sessions": args.sessions, "steps": steps, "seconds": round(wall, 2),
            "reasons": [r["reason"] for r in results],
            "total_steps_per_second": round(sum(steps) / wall, 2),
            "slowest_share": round(min(steps) / max(1, sum(steps)), 4),
            "fair_share": round(1 / args.sessions, 4),
            "slowest_of_fair": round(min(running) / max(1e-9, statistics.median(running)), 3),
            "median_session_latency_ms_p50": round(1000 * statistics.median(
                [_percentile(r["latencies"], 0.5) for r in results if r["latencies"]] or [float("nan")]), 1)}


def _serve_and_measure(args: argparse.Namespace, home: Path, measure, *extra: str) -> dict[str, Any]:
    """Start a server (or use ``--url``), run ``measure(base, args)``, stop it; adds the device."""
    import httpx

    proc = None
    try:
        if args.url:
            base = args.url.rstrip("/")
        else:
            proc, base = _start_server(args, home, *extra)
        health = httpx.get(base + "/api/health", timeout=10).json()
        figures = asyncio.run(measure(base, args))
        figures["device"] = health.get("device")
        return figures
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()


async def _bench(base: str, args: argparse.Namespace) -> dict[str, Any]:
    return {"one_session": await _one_session(base, args), "concurrent": await _concurrent(base, args)}


def _describe(many: dict[str, Any]) -> str:
    ended = [f"{i}: {r}" for i, r in enumerate(many["reasons"]) if r != "stopped"]
    return (f"{many['sessions']} sessions at once: {many['total_steps_per_second']} steps/s in total; "
            f"steps per session {many['steps']}; slowest share {many['slowest_share']} (fair {many['fair_share']}); "
            f"slowest still-dragging session {many['slowest_of_fair']} of the median"
            + (f"; ended on their own: {', '.join(ended)}" if ended else ""))


def run(args: argparse.Namespace) -> int:
    if args.compare_batching and args.url:
        raise SystemExit("--compare-batching starts its own servers; leave out --url")
    with tempfile.TemporaryDirectory(prefix="dragwalk-bench-") as tmp:
        figures = _serve_and_measure(args, Path(tmp) / "batched", _bench)
        if args.compare_batching:
            figures["unbatched"] = _serve_and_measure(args, Path(tmp) / "single", _concurrent, "--no-batch-drags")
    one, many = figures["one_session"], figures["concurrent"]
    print(f"device {figures['device']}, method {args.method}")
    print(f"one session: {one['steps']} steps in {one['seconds']} s = {one['steps_per_second']} steps/s; "
          f"{one['frames']} frames, {one['fps']} fps; frame latency p50 {one['latency_ms_p50']} ms, "
          f"p95 {one['latency_ms_p95']} ms ({one['latency_samples']} samples)")
    print(("batched drags, " if args.compare_batching else "") + _describe(many))
    if args.compare_batching:
        single = figures["unbatched"]
        print("unbatched (--no-batch-drags), " + _describe(single))
        ratio = many["total_steps_per_second"] / max(single["total_steps_per_second"], 1e-9)
        figures["batching_speedup"] = round(ratio, 2)
        print(f"batching: {ratio:.2f}x the total steps per second")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(figures, indent=2))
    return 0
