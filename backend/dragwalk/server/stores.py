"""Which session store a spec names: ``postgresql://...`` or a SQLite file path.

The factory sits above both backends (``store`` holds the interface and SQLite,
``store_postgres`` the shared PostgreSQL store), so neither backend imports the other's module.
"""

from __future__ import annotations

from pathlib import Path

from ..home import dragwalk_home
from .store import SessionStore, SQLiteStore, StoreError
from .store_postgres import PostgresStore


def default_store_path() -> Path:
    """``$DRAGWALK_HOME/sessions.sqlite3``; ``DRAGWALK_HOME`` defaults to ``~/.dragwalk``."""
    return dragwalk_home() / "sessions.sqlite3"


def open_store(spec: str | Path | None = None) -> SessionStore:
    """A store from a spec: ``postgresql://...`` or a SQLite file path (default location if empty)."""
    text = str(spec) if spec is not None else ""
    if text.startswith(("postgresql://", "postgres://")):
        return PostgresStore(text)
    return SQLiteStore(Path(text) if text else default_store_path())


def check_store(spec: str | Path | None = None) -> list[str]:
    """Open the store, check it can be read, close it; returns warnings to print loudly.

    Run before the server says it serves: a garbage or damaged SQLite file raises
    :class:`StoreError` with a clear message; an existing 0-byte file (often a failed copy or a
    full disk) is usable but starts empty, which the user must hear about.
    """
    text = str(spec) if spec is not None else ""
    warnings = []
    if not text.startswith(("postgresql://", "postgres://")):
        path = Path(text).expanduser() if text else default_store_path()
        if path.is_file() and path.stat().st_size == 0:
            warnings.append(f"session store {path} is an empty (0-byte) file: starting with NO stored "
                            "sessions. If it should hold sessions, stop now and restore it from a backup.")
        elif path.exists() and not path.is_file():
            raise StoreError(f"session store {path} is not a file")
    store = open_store(spec)
    try:
        store.check()
    finally:
        store.close()
    return warnings
