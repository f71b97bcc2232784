"""Where sessions survive a restart: a small key-value interface and its SQLite implementation.

A session is stored as one opaque payload (bytes) keyed by its id, together with its model
name. The server writes after every completed operation and every few drag steps, always from
its worker thread, so implementations must be thread-safe. ``stores.open_store`` picks the backend
from a spec (it imports both backends, so it cannot live here without an import cycle).
"""

from __future__ import annotations

import abc
import sqlite3
import threading
from pathlib import Path


class SessionStore(abc.ABC):
    """Persistent sessions: ``id -> (model, payload)``. Every method is thread-safe."""

    @abc.abstractmethod
    def put(self, session_id: str, model: str, payload: bytes) -> None:
        """Insert or replace one session atomically."""

    @abc.abstractmethod
    def get(self, session_id: str) -> tuple[str, bytes] | None:
        """``(model, payload)`` of a stored session, or ``None``."""

    @abc.abstractmethod
    def ids(self) -> list[str]:
        """Ids of every stored session."""

    @abc.abstractmethod
    def delete(self, session_id: str) -> None:
        """Forget a session (no error when it is absent)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections; the store is unusable afterwards."""


class SQLiteStore(SessionStore):
    """Sessions in one SQLite file in WAL mode.

    WAL lets readers (another server process, a lazy restore) proceed while a writer commits, and
    each ``put`` is a single committed statement, so a ``kill -9`` at any moment leaves either the
    previous or the new payload, never a torn one.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = sqlite3.connect(
            str(self.path), check_same_thread=False, isolation_level=None, timeout=30)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("CREATE TABLE IF NOT EXISTS sessions (id TEXT PRIMARY KEY, model TEXT NOT NULL, "
                           "payload BLOB NOT NULL, updated REAL NOT NULL DEFAULT (julianday('now')))")

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError(f"session store {self.path} is closed")
        return self._conn

    def put(self, session_id: str, model: str, payload: bytes) -> None:
        with self._lock:
            self._db().execute(
                "INSERT INTO sessions (id, model, payload, updated) VALUES (?, ?, ?, julianday('now')) "
                "ON CONFLICT(id) DO UPDATE SET model=excluded.model, payload=excluded.payload, "
                "updated=excluded.updated", (session_id, model, sqlite3.Binary(payload)))

    def get(self, session_id: str) -> tuple[str, bytes] | None:
        with self._lock:
            row = self._db().execute("SELECT model, payload FROM sessions WHERE id = ?",
                                     (session_id,)).fetchone()
        return None if row is None else (str(row[0]), bytes(row[1]))

    def ids(self) -> list[str]:
        with self._lock:
            rows = self._db().execute("SELECT id FROM sessions ORDER BY updated, id").fetchall()
        return [str(r[0]) for r in rows]

    def delete(self, session_id: str) -> None:
        with self._lock:
            self._db().execute("DELETE FROM sessions WHERE id = ?", (session_id,))

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def journal_mode(self) -> str:
        """The active journal mode (``wal``), for tests and diagnostics."""
        with self._lock:
            return str(self._db().execute("PRAGMA journal_mode").fetchone()[0])

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path})"
