"""Where dragwalk keeps what it writes for itself: the session store and the direction caches."""

from __future__ import annotations

import os
from pathlib import Path


def dragwalk_home() -> Path:
    """``$DRAGWALK_HOME``, default ``~/.dragwalk`` (tests point it at a temporary folder)."""
    return Path(os.environ.get("DRAGWALK_HOME") or Path.home() / ".dragwalk").expanduser()
