"""Server settings: command-line flags first, then ``DRAGWALK_*`` environment variables, then defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..home import dragwalk_home
from ..models import DEFAULT_MODEL

#: the repository's static page, unless DRAGWALK_FRONTEND says otherwise
DEFAULT_FRONTEND = Path(__file__).resolve().parents[3] / "frontend"


def directions_root() -> Path:
    """Where direction sets are cached (shared by the server and ``dragwalk replay``)."""
    return dragwalk_home() / "directions"


@dataclass
class Limits:
    """Bounds on everything a client can send or make the server keep."""

    upload_bytes: int = 20 * 1024 * 1024       # uploads (latents, logs, photos)
    photo_pixels: int = 40_000_000             # decoded photo size
    message_bytes: int = 1024 * 1024           # one websocket text message
    max_points: int = 128                      # handle/target pairs
    history: int = 100                         # history entries kept per session
    animation_frames: int = 300                # frames of the last drag kept for GIF/MP4
    max_drag_steps: int = 2000                 # upper bound on params.max_steps
    sessions: int = 256                        # sessions held in memory at once
    store_every: int = 10                      # drag steps between stores of a running drag


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
    #: drags of several sessions on one model share each forward/backward (scheduler batching)
    batch_drags: bool = True

    @classmethod
    def from_args(cls, args: Any | None = None, env: dict[str, str] | None = None) -> "Settings":
        """Merge parsed CLI ``args`` (attributes may be missing or None) with the environment.

        A flag given on the command line wins; argparse defaults do not hide the environment, so
        flags that equal their parser default fall back to ``DRAGWALK_*`` when set there.
        """
        env = dict(os.environ if env is None else env)
        defaults = cls()

        def pick(name: str, default: Any) -> Any:
            value = getattr(args, name, None) if args is not None else None
            env_value = env.get(f"DRAGWALK_{name.upper()}")
            if value is not None and (value != default or env_value in (None, "")):
                return value
            return env_value if env_value not in (None, "") else default

        frontend = env.get("DRAGWALK_FRONTEND")
        limits = Limits()
        if env.get("DRAGWALK_STORE_EVERY", "").isdigit():     # drag steps between stores (tests lower it)
            limits.store_every = max(1, int(env["DRAGWALK_STORE_EVERY"]))
        return cls(
            host=str(pick("host", defaults.host)),
            port=int(pick("port", defaults.port)),
            model=str(pick("model", defaults.model)),
            device=str(pick("device", defaults.device)),
            token=pick("token", None) or None,
            store=pick("store", None) or None,
            frontend=Path(frontend) if frontend else DEFAULT_FRONTEND,
            limits=limits,
            batch_drags=_batch_drags(getattr(args, "batch_drags", None), env.get("DRAGWALK_BATCH_DRAGS")),
        )


def _batch_drags(flag: bool | None, env_value: str | None) -> bool:
    """The flag when given, else ``DRAGWALK_BATCH_DRAGS`` (0/false/no/off disable), else on."""
    if flag is not None:
        return bool(flag)
    if env_value in (None, ""):
        return True
    value = env_value.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"DRAGWALK_BATCH_DRAGS must be 1 or 0, got {env_value!r}")
