"""Server settings: command-line flags first, then ``DRAGWALK_*`` environment variables, then defaults.

Every ``dragwalk serve`` flag is declared once, in :data:`OPTIONS`, with its environment variable,
type and default. The parser's defaults are all ``None``, so "the flag was given" is always
distinguishable from "the flag equals its default": a flag given on the command line beats the
environment even when it repeats the default (``--host 127.0.0.1`` beats ``DRAGWALK_HOST=0.0.0.0``).
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..home import dragwalk_home
from ..models import DEFAULT_MODEL

#: the repository's static page, unless DRAGWALK_FRONTEND says otherwise
DEFAULT_FRONTEND = Path(__file__).resolve().parents[3] / "frontend"
#: host names a loopback-bound server answers by default (DNS-rebinding guard)
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def directions_root() -> Path:
    """Where direction sets are cached (shared by the server and ``dragwalk replay``)."""
    return dragwalk_home() / "directions"


@dataclass
class Limits:
    """Bounds on everything a client can send or make the server keep (docs/DEPLOY.md, "Security model")."""

    upload_bytes: int = 20 * 1024 * 1024       # uploads (latents, logs, photos)
    photo_pixels: int = 40_000_000             # decoded photo size
    message_bytes: int = 1024 * 1024           # one websocket text message
    max_points: int = 128                      # handle/target pairs
    history: int = 100                         # history entries kept per session
    animation_frames: int = 300                # frames of the last drag kept for GIF/MP4
    max_drag_steps: int = 2000                 # upper bound on params.max_steps
    sessions: int = 256                        # sessions held in memory at once
    store_every: int = 10                      # drag steps between stores of a running drag
    label_chars: int = 200                     # a history entry's label (uploaded logs)
    kind_chars: int = 16                       # a history entry's kind
    record_bytes: int = 64 * 1024              # a history entry's record, as JSON
    outbox_bytes: int = 32 * 1024 * 1024       # queued for one websocket that does not read
    stored_sessions: int = 10_000              # sessions in the store (new ones refused beyond)
    session_days: float = 30.0                 # a session not edited for this long expires
    create_per_minute: int = 30                # new sessions per client address and minute (0 = off)
    timeout_header: float = 10.0               # seconds to send a request's headers
    timeout_body: float = 60.0                 # seconds to send a request's body
    timeout_keep_alive: float = 5.0            # idle seconds before a kept-alive connection closes
    max_connections: int = 256                 # open connections + running requests (503 beyond)


@dataclass
class Settings:
    """What ``dragwalk serve`` was told; also what tests pass to ``create_app``."""

    host: str = "127.0.0.1"
    port: int = 8000
    model: str = DEFAULT_MODEL
    device: str = "auto"
    token: str | None = None
    store: str | None = None
    frontend: Path = field(default_factory=lambda: DEFAULT_FRONTEND)
    limits: Limits = field(default_factory=Limits)
    jpeg_quality: int = 85
    #: extra Host names (besides loopback and the bound address) this server answers; "*" = any
    allowed_hosts: tuple[str, ...] = ()
    #: extra page origins (scheme://host[:port]) allowed to open websockets and send writes
    allowed_origins: tuple[str, ...] = ()
    #: bind to a non-loopback address without a token (the user said they mean it)
    allow_no_token: bool = False
    #: drags of several sessions on one model share each forward/backward (scheduler batching)
    batch_drags: bool = True
    #: how networks run (:mod:`dragwalk.runtime`): drags' arithmetic, activation layout, compilation
    precision: str = "fp32"
    channels_last: bool = False
    compile: str = "none"
    #: compute the start-up model's expensive direction sets in the background (server/precompute.py);
    #: on for ``dragwalk serve`` (``from_args``), off for an app built in-process (tests)
    precompute_directions: bool = False

    @classmethod
    def from_args(cls, args: Any | None = None, env: dict[str, str] | None = None) -> "Settings":
        """Merge parsed CLI ``args`` (attributes missing or None = not given) with the environment."""
        env = dict(os.environ if env is None else env)
        settings = cls(precompute_directions=True)
        for option in OPTIONS:
            given = getattr(args, option.dest, None) if args is not None else None
            raw = env.get(option.env, "")
            if given is not None:
                value = given
            elif raw != "":
                try:
                    value = option.parse(raw)
                except ValueError:
                    raise ValueError(f"{option.env}={raw!r} is not a valid {option.flag} value") from None
            else:
                continue
            option.apply(settings, value)
        frontend = env.get("DRAGWALK_FRONTEND")
        if frontend:
            settings.frontend = Path(frontend)
        if env.get("DRAGWALK_STORE_EVERY", "").isdigit():     # drag steps between stores (tests lower it)
            settings.limits.store_every = max(1, int(env["DRAGWALK_STORE_EVERY"]))
        return settings


def _words(text: str) -> tuple[str, ...]:
    return tuple(w.strip() for w in text.split(",") if w.strip())


def _flag(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(text)


@dataclass(frozen=True)
class Option:
    """One ``dragwalk serve`` flag: where it lands in :class:`Settings` and its ``DRAGWALK_*`` twin."""

    flag: str
    target: str               # "host" or "limits.timeout_header"
    parse: Callable[[str], Any]
    help: str
    #: for a switch (parse=_flag): the value the flag sets
    const: bool = True
    #: the variable's name when it is not the flag's (``--no-batch-drags`` <-> DRAGWALK_BATCH_DRAGS)
    name: str | None = None

    @property
    def dest(self) -> str:
        return self.name or self.flag.lstrip("-").replace("-", "_")

    @property
    def env(self) -> str:
        return "DRAGWALK_" + self.dest.upper()

    def apply(self, settings: Settings, value: Any) -> None:
        owner, _, name = self.target.rpartition(".")
        obj = settings.limits if owner == "limits" else settings
        if self.parse is _words and isinstance(value, str):
            value = _words(value)
        setattr(obj, name, value)


OPTIONS: tuple[Option, ...] = (
    Option("--host", "host", str, "address to bind (default 127.0.0.1)"),
    Option("--port", "port", int, "port (default 8000)"),
    Option("--model", "model", str, f"built-in model name or .pkl/.safetensors path (default {DEFAULT_MODEL})"),
    Option("--device", "device", str, "auto (cuda, then mps, then cpu), cpu, cuda, cuda:N, mps"),
    Option("--token", "token", str, "access token required on every request"),
    Option("--store", "store", str, "session store: a SQLite path or postgresql:// URL "
           "(default $DRAGWALK_HOME/sessions.sqlite3)"),
    Option("--allowed-hosts", "allowed_hosts", _words,
           "comma-separated Host names to answer besides loopback and the bound address ('*' = any)"),
    Option("--allowed-origins", "allowed_origins", _words,
           "comma-separated page origins (https://host[:port]) allowed besides the server's own"),
    Option("--allow-no-token", "allow_no_token", _flag,
           "bind to a non-loopback address without --token (anyone who reaches the port can edit)"),
    Option("--timeout-header", "limits.timeout_header", float, "seconds a client may take to send headers (10)"),
    Option("--timeout-body", "limits.timeout_body", float, "seconds a client may take to send a body (60)"),
    Option("--timeout-keep-alive", "limits.timeout_keep_alive", float, "idle keep-alive seconds (5)"),
    Option("--max-connections", "limits.max_connections", int,
           "open connections and running requests before new requests get 503 (256)"),
    Option("--max-stored-sessions", "limits.stored_sessions", int, "sessions the store keeps (10000)"),
    Option("--session-days", "limits.session_days", float, "days without an edit before a session expires (30)"),
    Option("--create-per-minute", "limits.create_per_minute", int,
           "new sessions per client address and minute, 0 = no limit (30)"),
    Option("--no-batch-drags", "batch_drags", _flag, "step every session's drag on its own instead of "
           "batching drags on one model", const=False, name="batch_drags"),
    Option("--precision", "precision", str, "arithmetic of drags' forward passes: fp32 (default), bf16, "
           "fp16 (GPU only)"),
    Option("--channels-last", "channels_last", _flag, "NHWC activations (pays on GPUs in half precision)",
           const=True, name="channels_last"),
    Option("--compile", "compile", str, "torch.compile the networks' layers: none (default), default, "
           "max-autotune-no-cudagraphs"),
    Option("--no-precompute-directions", "precompute_directions", _flag, "do not compute the model's "
           "direction sets (GANSpace, SFVQ, DP-LaSE, labelled) in the background at start",
           const=False, name="precompute_directions"),
)


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``dragwalk serve``; each also reads its ``DRAGWALK_*`` variable (the flag wins)."""
    for option in OPTIONS:
        if option.parse is _flag:
            parser.add_argument(option.flag, dest=option.dest, action="store_const", const=option.const,
                                default=None, help=f"{option.help} (also {option.env}={int(option.const)})")
        else:
            kind = option.parse if option.parse in (int, float) else str
            parser.add_argument(option.flag, dest=option.dest, type=kind, default=None,
                                help=f"{option.help}; also {option.env}")
