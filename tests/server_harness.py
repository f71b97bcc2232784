"""Start a real ``dragwalk serve`` in a subprocess for tests (server, frontend and deployment tests).

Usage::

    from server_harness import running_server

    def test_something(tmp_path):
        with running_server(tmp_path, token="secret") as server:
            httpx.get(server.url("/api/health"), headers=server.headers)
            server.ws_url(session_id)          # ws://127.0.0.1:PORT/ws/sessions/ID?token=...

The server gets its own DRAGWALK_HOME and SQLite store under ``tmp_path`` (pass ``store=`` to share
one between two servers, or to restart on the same store), binds a free port on 127.0.0.1, and is
stopped (terminate, then kill) when the block ends. ``server.kill()`` sends SIGKILL (the crash test);
``server.restart()`` starts it again on the same port and store.

Each server is a process of its own running ``dragwalk serve`` (``dragwalk.cli.main``) with its own
environment, working directory and log, but it is forked from a fork server (``multiprocessing``'s
"forkserver") that imported torch and the server once per test process: a fresh Python would spend
seconds of CPU on those imports for every server a test starts. ``DRAGWALK_TEST_EXEC_SERVERS=1``
starts each one as the installed command instead. :func:`run_dragwalk` runs any other ``dragwalk``
command the same way (a bench, an inversion, a server that must refuse to start). The installed
console script itself is run by tests/test_cli_foundation.py (``generate``) and the deployment
tests.
"""

from __future__ import annotations

import contextlib
import io
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import httpx

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _dragwalk_command() -> list[str]:
    exe = Path(sys.executable).with_name("dragwalk")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "dragwalk"]


#: what the fork server imports once (torch's compiler stack too: the server builds an optimiser
#: at start-up, which imports it)
_PRELOAD = ["torch", "torch._dynamo", "dragwalk.cli", "dragwalk.server.app", "dragwalk.server.routes",
            "dragwalk.server.ws", "dragwalk.server.editor", "dragwalk.server.precompute", "uvicorn"]
_fork_context = None


def _forking() -> "multiprocessing.context.ForkServerContext":
    global _fork_context
    if _fork_context is None:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(_PRELOAD)
        _fork_context = context
    return _fork_context


def _command_child(argv: list[str], env: dict[str, str], cwd: str, out_path: str, err_path: str) -> None:
    """The forked ``dragwalk ARGV``: its own session, environment, directory, stdout and stderr
    files (one file for both when the paths are the same), and the exit status Python would give."""
    os.setsid()
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    if env.get("OMP_NUM_THREADS", "").isdigit():       # read at torch's import, which the fork server did
        import torch
        torch.set_num_threads(max(1, int(env["OMP_NUM_THREADS"])))
    for target, path in ((1, out_path), (2, err_path)):
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.dup2(fd, target)
        os.close(fd)
    sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), line_buffering=True)
    sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), line_buffering=True)
    try:
        from dragwalk.cli import main
        code = main(argv)
    except SystemExit as exc:                   # as the interpreter: None 0, an int itself, else 1
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:
            print(exc.code, file=sys.stderr)
            code = 1
    except BaseException:
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def run_dragwalk(args: list[str], *, env: dict[str, str] | None = None, cwd: str | Path | None = None,
                 timeout: float = 300) -> subprocess.CompletedProcess:
    """``dragwalk ARGS`` (``dragwalk.cli.main``) in a process of its own, as ``subprocess.run``
    with ``capture_output=True, text=True`` would run the installed command, but forked from the
    fork server: no Python and torch start-up (seconds each on the 2-core machine). ``env``
    (default: this process's) is the whole environment of the command."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="dragwalk-command-") as tmp:
        out, err = Path(tmp) / "stdout", Path(tmp) / "stderr"
        child = _forking().Process(target=_command_child, daemon=True,
                                   args=(list(args), dict(os.environ if env is None else env),
                                         str(cwd or os.getcwd()), str(out), str(err)))
        child.start()
        child.join(timeout)
        if child.exitcode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
            child.join(10)
            raise subprocess.TimeoutExpired(["dragwalk", *args], timeout)
        read = lambda path: path.read_text(errors="replace") if path.exists() else ""  # noqa: E731
        return subprocess.CompletedProcess(["dragwalk", *args], child.exitcode, read(out), read(err))


class ForkedProcess:
    """The parts of ``subprocess.Popen`` the tests use, over a forked ``multiprocessing`` child."""

    def __init__(self, process: multiprocessing.process.BaseProcess) -> None:
        self._process = process

    @property
    def pid(self) -> int:
        return int(self._process.pid)

    @property
    def returncode(self) -> int | None:
        return self._process.exitcode           # -N when killed by signal N, as Popen

    def poll(self) -> int | None:
        return self._process.exitcode

    def wait(self, timeout: float | None = None) -> int:
        self._process.join(timeout)
        if self._process.exitcode is None:
            raise subprocess.TimeoutExpired("dragwalk serve", timeout)
        return self._process.exitcode

    def terminate(self) -> None:
        self._process.terminate()


@dataclass
class RunningServer:
    """A ``dragwalk serve`` subprocess and how to reach it."""

    port: int
    home: Path
    store: str
    token: str | None = None
    model: str | None = None
    frontend: Path | None = None
    env_extra: dict[str, str] = field(default_factory=dict)
    extra_args: tuple[str, ...] = ()
    process: subprocess.Popen | None = None
    log_path: Path | None = None
    startup_timeout: float = 90.0

    # ----------------------------------------------------------- addresses
    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def origin(self) -> str:
        return self.base

    def url(self, path: str = "/") -> str:
        return self.base + path

    def ws_url(self, session_id: str, token: bool = True) -> str:
        query = f"?token={self.token}" if (token and self.token) else ""
        return f"ws://127.0.0.1:{self.port}/ws/sessions/{session_id}{query}"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def client(self, **kwargs) -> httpx.Client:
        return httpx.Client(base_url=self.base, headers=self.headers, timeout=60, **kwargs)

    def create_session(self, seed: int = 0, **body) -> dict:
        with self.client() as client:
            response = client.post("/api/sessions", json={"seed": seed, **body})
            response.raise_for_status()
            return response.json()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""

    # ----------------------------------------------------------- lifecycle
    def start(self) -> "RunningServer":
        env = dict(os.environ)
        # no background direction sets unless a test asks (they would cost every test server CPU)
        env.update({"DRAGWALK_HOME": str(self.home), "PYTHONUNBUFFERED": "1", "DRAGWALK_PRECOMPUTE_DIRECTIONS": "0"})
        for key in ("DRAGWALK_TOKEN", "DRAGWALK_HOST", "DRAGWALK_PORT", "DRAGWALK_STORE", "DRAGWALK_MODEL"):
            env.pop(key, None)
        if self.frontend is not None:
            env["DRAGWALK_FRONTEND"] = str(self.frontend)
        env.update(self.env_extra)
        cmd = [*_dragwalk_command(), "serve", "--host", "127.0.0.1", "--port", str(self.port),
               "--store", self.store, "--device", "cpu"]
        if self.token:
            cmd += ["--token", self.token]
        if self.model:
            cmd += ["--model", self.model]
        cmd += list(self.extra_args)
        self.log_path = self.home / f"server-{self.port}.log"
        if os.environ.get("DRAGWALK_TEST_EXEC_SERVERS") == "1":
            log = open(self.log_path, "ab")
            self.process = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
            log.close()
        else:
            child = _forking().Process(target=_command_child, args=(cmd[cmd.index("serve"):], env, str(ROOT),
                                                                     str(self.log_path), str(self.log_path)),
                                       daemon=True)
            child.start()
            self.process = ForkedProcess(child)
        self.wait_ready()
        return self

    def wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"dragwalk serve exited with {self.process.returncode}:\n{self.log()}")
            try:
                r = httpx.get(self.url("/api/health"), headers=self.headers, timeout=2)
                if r.status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"dragwalk serve did not become ready in {self.startup_timeout} s:\n{self.log()}")

    def kill(self) -> None:
        """SIGKILL, as a crash would: no shutdown handler runs."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.kill()

    def restart(self) -> "RunningServer":
        self.stop()
        return self.start()


@contextlib.contextmanager
def running_server(tmp_path: Path, *, token: str | None = None, model: str | None = None,
                   store: str | Path | None = None, port: int | None = None,
                   frontend: Path | None = None, env: dict[str, str] | None = None,
                   extra_args: tuple[str, ...] = (), home: Path | None = None) -> Iterator[RunningServer]:
    """A started ``dragwalk serve`` subprocess, stopped when the block ends."""
    home = Path(home or tmp_path / "dragwalk-home")
    home.mkdir(parents=True, exist_ok=True)
    server = RunningServer(port=port or free_port(), home=home,
                           store=str(store or home / "sessions.sqlite3"), token=token, model=model,
                           frontend=frontend, env_extra=dict(env or {}), extra_args=tuple(extra_args))
    server.start()
    try:
        yield server
    finally:
        server.stop()


class PageClient:
    """A websocket client that behaves like the page: says hello, acks frames, records everything.

    ``async with PageClient(server.ws_url(sid)) as page: await page.send(type="ping")``;
    ``await page.until(lambda e: e["type"] == "done")`` returns that event; ``page.events`` and
    ``page.frames`` (``(kind, seq, step, jpeg)``) keep what arrived.
    """

    def __init__(self, url: str, credits: int = 2, auto_ack: bool = True, hello: bool = True,
                 origin: str | None = None) -> None:
        self.url = url
        self.credits = credits
        self.auto_ack = auto_ack
        self.hello = hello
        self.origin = origin
        self.events: list[dict] = []
        self.frames: list[tuple[int, int, int, bytes]] = []
        self.ws = None

    async def __aenter__(self) -> "PageClient":
        import websockets

        kwargs = {"max_size": 32 * 1024 * 1024}
        if self.origin is not None:
            kwargs["origin"] = self.origin
        self.ws = await websockets.connect(self.url, **kwargs)
        if self.hello:
            await self.send(type="hello", version=1, credits=self.credits)
        return self

    async def __aexit__(self, *exc) -> None:
        await self.ws.close()

    async def send(self, **message) -> None:
        import json
        await self.ws.send(json.dumps(message))

    async def send_raw(self, data) -> None:
        await self.ws.send(data)

    async def receive(self, timeout: float = 60.0):
        """The next message: a dict for JSON, a tuple for a frame (acked when auto_ack)."""
        import asyncio
        import json

        from dragwalk.server.frames import unpack_frame
        message = await asyncio.wait_for(self.ws.recv(), timeout)
        if isinstance(message, bytes):
            frame = unpack_frame(message)
            self.frames.append(frame)
            if self.auto_ack:
                await self.send(type="ack", seq=frame[1])
            return frame
        event = json.loads(message)
        self.events.append(event)
        return event

    async def until(self, predicate, timeout: float = 60.0) -> dict:
        """Receive until a JSON event satisfies ``predicate``; return it."""
        import time
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no matching event in {timeout} s; last events: {self.events[-5:]}")
            item = await self.receive(left)
            if isinstance(item, dict) and predicate(item):
                return item
