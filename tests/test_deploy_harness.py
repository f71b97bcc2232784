"""The harness of the scale-out tests: real processes on loopback, in temporary dirs.

A throwaway PostgreSQL cluster, nginx running the deployment's own routing rules, and
``dragwalk serve`` workers configured by environment variables as in the images. Everything runs
the real programs (Debian's postgresql and nginx packages, the installed ``dragwalk`` script); a
missing program fails with the setup hint rather than skipping, so CI cannot pass by not testing.
The few tests at the end check the pieces alone (cheap, and they say which piece broke when the
two-worker test fails); tests/test_deploy_scaleout.py uses them together.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SETUP_HINT = "run `bash scripts/setup.sh --test`, which installs it"


def free_port() -> int:
    """A TCP port nobody listens on right now (loopback only)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(check, timeout: float, what: str, proc: subprocess.Popen | None = None,
             log: Path | None = None) -> None:
    """Poll ``check()`` until it is true; fail with the process log when it never is."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            break
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.1)
    tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
    state = f"exited with {proc.returncode}" if proc is not None and proc.poll() is not None else "timed out"
    pytest.fail(f"{what} did not come up ({state}):\n{tail}")


def stop(proc: subprocess.Popen | None, sig: int = signal.SIGTERM, timeout: float = 10) -> None:
    """Stop one process we started (by its pid), escalating to SIGKILL."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout)


def http_get(url: str, timeout: float = 10) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


# --- PostgreSQL --------------------------------------------------------------------------------

class PostgresCluster:
    """A private PostgreSQL cluster: ``initdb`` into a temporary dir, ``postgres`` on a free
    loopback port with its unix socket in that dir, trust authentication, fsync off.

    PostgreSQL refuses to run as root, so as root the cluster belongs to the ``postgres`` user
    (which Debian's package creates) and the programs run through ``setpriv``.
    """

    def __init__(self) -> None:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not found:
            pytest.fail(f"PostgreSQL (initdb) is not installed: {SETUP_HINT}")
        self.bindir = Path(found[-1]).parent
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="dragwalk-pg-"))
        self.log = self.dir / "postgres.log"
        self.proc: subprocess.Popen | None = None
        self._as_user: list[str] = []
        if os.geteuid() == 0:
            import pwd
            user = pwd.getpwnam("postgres")
            os.chown(self.dir, user.pw_uid, user.pw_gid)
            self._as_user = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}",
                             "--init-groups", "--"]
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> "PostgresCluster":
        data = self.dir / "data"
        subprocess.run(self._as_user + [str(self.bindir / "initdb"), "-D", str(data), "-U", "postgres",
                                        "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C"],
                       check=True, capture_output=True, timeout=120)
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                self._as_user + [str(self.bindir / "postgres"), "-D", str(data), "-p", str(self.port),
                                 "-h", "127.0.0.1", "-k", str(self.dir), "-c", "fsync=off",
                                 "-c", "full_page_writes=off", "-c", "synchronous_commit=off"],
                stdout=log, stderr=subprocess.STDOUT, cwd=self.dir)
        wait_for(self._ready, 60, "PostgreSQL", self.proc, self.log)
        return self

    def _ready(self) -> bool:
        return subprocess.run(self._as_user + [str(self.bindir / "pg_isready"), "-q", "-h", "127.0.0.1",
                                               "-p", str(self.port)], timeout=10).returncode == 0

    def close(self) -> None:
        stop(self.proc, signal.SIGINT, timeout=20)  # SIGINT: PostgreSQL's "fast" shutdown
        shutil.rmtree(self.dir, ignore_errors=True)


# --- nginx -------------------------------------------------------------------------------------

def nginx_exe() -> str:
    exe = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if not exe:
        pytest.fail(f"nginx is not installed: {SETUP_HINT}")
    return exe


NGINX_DIR = ROOT / "docker" / "nginx"


def render_nginx_conf(prefix: Path, port: int, upstreams: list[str]) -> str:
    """An nginx.conf for the test. It includes the shipped routing rules and proxy settings
    (docker/nginx/session-routing.conf, proxy.conf) as they are, so the rules tested are the
    rules deployed; only the upstream addresses, the listen address and the paths (all inside
    ``prefix``: nginx runs unprivileged there, no daemon) are the test's own."""
    servers = "\n".join(f"        server {addr} max_fails=1 fail_timeout=10s;" for addr in upstreams)
    return f"""
worker_processes 1;
events {{ worker_connections 256; }}
http {{
    log_format routed '$request_method $uri $status $upstream_addr';
    access_log {prefix}/access.log routed;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    include {NGINX_DIR}/session-routing.conf;
    upstream dragwalk_workers {{
        hash $session_key consistent;
{servers}
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://dragwalk_workers;
            include {NGINX_DIR}/proxy.conf;
        }}
    }}
}}
"""


class Nginx:
    """nginx in the foreground (``daemon off``) with a generated config in a temporary dir."""

    def __init__(self, upstreams: list[str]) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="dragwalk-nginx-"))
        self.port = free_port()
        self.conf = self.dir / "nginx.conf"
        self.conf.write_text(render_nginx_conf(self.dir, self.port, upstreams))
        self.log = self.dir / "error.log"
        self.proc: subprocess.Popen | None = None
        self.url = f"http://127.0.0.1:{self.port}"

    def _args(self) -> list[str]:
        # as root nginx's workers would switch to "nobody", who cannot write the temp dirs here
        user = "user root root; " if os.geteuid() == 0 else ""
        return [nginx_exe(), "-p", str(self.dir), "-c", str(self.conf),
                "-g", f"{user}daemon off; pid {self.dir}/nginx.pid; error_log {self.log} info;"]

    def routed(self) -> list[tuple[str, str, str, str]]:
        """(method, uri, status, upstream addresses tried) of every request so far, oldest
        first; a failed-over request lists every upstream tried, comma-separated."""
        path = self.dir / "access.log"
        lines = path.read_text().splitlines() if path.exists() else []
        return [tuple(line.split(" ", 3)) for line in lines]  # type: ignore[misc]

    def check_config(self) -> subprocess.CompletedProcess:
        return subprocess.run(self._args() + ["-t"], capture_output=True, text=True, timeout=30)

    def start(self) -> "Nginx":
        with open(self.dir / "stderr.log", "wb") as out:  # start-up errors come before error_log
            self.proc = subprocess.Popen(self._args(), stdout=out, stderr=subprocess.STDOUT)
        wait_for(lambda: socket.create_connection(("127.0.0.1", self.port), 1).close() is None,
                 20, "nginx", self.proc, self.dir / "stderr.log")
        return self

    def close(self) -> None:
        stop(self.proc, signal.SIGQUIT)  # SIGQUIT: graceful shutdown
        shutil.rmtree(self.dir, ignore_errors=True)


# --- dragwalk workers --------------------------------------------------------------------------

def dragwalk_command() -> list[str]:
    exe = Path(sys.executable).with_name("dragwalk")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "dragwalk"]


class Worker:
    """One ``dragwalk serve`` process on a free loopback port, configured by environment
    variables the way the container images configure it."""

    def __init__(self, name: str, store: str, home: Path) -> None:
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.home = home
        self.log = home / f"{name}.log"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("DRAGWALK_")}
        self.env.update(DRAGWALK_HOST="127.0.0.1", DRAGWALK_PORT=str(self.port), DRAGWALK_DEVICE="cpu",
                        DRAGWALK_MODEL="digiface-dcgan64", DRAGWALK_STORE=store,
                        DRAGWALK_HOME=str(home), OMP_NUM_THREADS="1")
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Worker":
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(dragwalk_command() + ["serve"], env=self.env, cwd=self.home,
                                         stdout=log, stderr=subprocess.STDOUT)
        return self

    def wait_healthy(self, timeout: float = 90) -> None:
        wait_for(lambda: http_get(self.url + "/api/health", 2)[0] == 200, timeout,
                 f"worker {self.name}", self.proc, self.log)

    def kill(self) -> None:
        """SIGKILL: the worker gets no chance to save anything (a crash, an OOM kill)."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def close(self) -> None:
        stop(self.proc)


# --- checks of the pieces alone ---------------------------------------------------------------

class _NameServer:
    """A tiny HTTP backend in a thread that answers every GET with its own name: enough to see
    where nginx sends a request, without starting a model."""

    def __init__(self, name: str) -> None:
        import http.server
        import threading

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the stdlib's naming
                body = name.encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_nginx_accepts_the_shipped_rules():
    nginx = Nginx(["127.0.0.1:1", "127.0.0.1:2"])
    try:
        result = nginx.check_config()
        assert result.returncode == 0, result.stderr
    finally:
        shutil.rmtree(nginx.dir, ignore_errors=True)


def test_nginx_routes_each_session_to_one_backend_and_fails_over():
    backends = [_NameServer("a"), _NameServer("b")]
    nginx = Nginx([b.address for b in backends])
    try:
        nginx.start()
        ids = [f"session{i:04d}" for i in range(24)]

        def owner(path: str) -> str:
            status, body = http_get(nginx.url + path, 5)
            assert status == 200, (path, status, body)
            return body.decode()

        first = {sid: owner(f"/api/sessions/{sid}") for sid in ids}
        # the hash spreads sessions over both backends ...
        assert set(first.values()) == {"a", "b"}
        # ... and every path naming a session (sub-resources, the websocket path) lands on the
        # same backend as the session itself, every time
        for sid in ids:
            assert owner(f"/api/sessions/{sid}/image.png") == first[sid]
            assert owner(f"/ws/sessions/{sid}") == first[sid]
            assert owner(f"/api/sessions/{sid}") == first[sid]
        # requests without a session id are spread round-robin
        assert {owner("/api/health") for _ in range(4)} == {"a", "b"}

        # backend "a" goes away: its sessions move to "b", the others stay where they were
        backends[0].close()
        for sid in ids:
            assert owner(f"/api/sessions/{sid}") == "b"
    finally:
        nginx.close()
        for backend in backends[1:]:
            backend.close()
