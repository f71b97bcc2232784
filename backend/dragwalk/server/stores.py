"""Which session store a spec names: ``postgresql://...`` or a SQLite file path.

The factory sits above both backends (``store`` holds the interface and SQLite,
``store_postgres`` the shared PostgreSQL store), so neither backend imports the other's module.
"""

from __future__ import annotations

from pathlib import Path

from ..home import dragwalk_home
from .store import SessionStore, SQLiteStore
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
