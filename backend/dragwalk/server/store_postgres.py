"""Sessions in PostgreSQL: the store that every worker of a scale-out deployment can reach.

With several server processes (one per GPU) behind nginx, a session lives in memory on the worker
its id hashes to; when that worker dies, nginx sends the session's requests to the next worker on
the ring, which must find the session's last stored state. SQLite can only be shared by processes
on one host, so this store puts the same rows in a PostgreSQL table that all hosts reach
(docs/DEPLOY.md). ``open_store("postgresql://...")`` returns one of these.

One connection per store, used under a lock: the server calls the store from its worker thread,
rarely and with small rows, so a pool would buy nothing. A connection broken by a database
restart is opened again once, transparently, before an error is raised.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, TypeVar

from .store import SessionStore, StoreError

try:  # psycopg is an optional dependency: `pip install "dragwalk[postgres]"`
    import psycopg
except ImportError:  # pragma: no cover - exercised only where the extra is not installed
    psycopg = None  # type: ignore[assignment]

T = TypeVar("T")

TABLE = "dragwalk_sessions"
#: key of the advisory lock that serialises table creation (workers often start together, and
#: concurrent CREATE TABLE IF NOT EXISTS can still collide in PostgreSQL's catalogue)
_SCHEMA_LOCK_KEY = 0x64726167  # "drag"
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    id      text PRIMARY KEY,
    model   text NOT NULL,
    payload bytea NOT NULL,
    updated timestamptz NOT NULL DEFAULT now()
)"""
#: seconds to wait for the database before telling the user it is unreachable (unless the URL
#: sets its own connect_timeout)
DEFAULT_CONNECT_TIMEOUT = 5


class PostgresStoreError(StoreError):
    """The PostgreSQL store cannot be used: psycopg missing, or the database unreachable."""


def describe_url(url: str) -> str:
    """``user@host:port/dbname`` of a connection URL, without its password (for error messages)."""
    if psycopg is None:
        return "PostgreSQL"
    try:
        params = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "PostgreSQL (unparsable URL)"
    user = f"{params['user']}@" if params.get("user") else ""
    host = params.get("host") or "localhost"
    port = f":{params['port']}" if params.get("port") else ""
    return f"{user}{host}{port}/{params.get('dbname', '')}"


class PostgresStore(SessionStore):
    """Sessions as rows of ``dragwalk_sessions(id, model, payload, updated)``; the table is
    created when missing, so an empty database is enough."""

    def __init__(self, url: str, connect_timeout: float = DEFAULT_CONNECT_TIMEOUT) -> None:
        if psycopg is None:
            raise PostgresStoreError(
                "a postgresql:// store needs psycopg: pip install 'dragwalk[postgres]' "
                "(or 'psycopg[binary]')")
        self._url = url
        self._where = describe_url(url)
        self._timeout = connect_timeout
        self._lock = threading.Lock()
        self._conn: Any = None
        with self._lock:
            self._run(self._create_table)

    # -- the SessionStore interface -----------------------------------------------------------

    def put(self, session_id: str, model: str, payload: bytes) -> None:
        """Insert or replace one session in a single statement (atomic: a reader sees the old
        row or the new one, never a mix)."""
        def upsert(conn: Any) -> None:
            conn.execute(
                f"INSERT INTO {TABLE} (id, model, payload, updated) VALUES (%s, %s, %s, now()) "
                "ON CONFLICT (id) DO UPDATE SET model = EXCLUDED.model, "
                "payload = EXCLUDED.payload, updated = EXCLUDED.updated",
                (session_id, model, bytes(payload)))
        with self._lock:
            self._run(upsert)

    def get(self, session_id: str) -> tuple[str, bytes] | None:
        def select(conn: Any) -> tuple[str, bytes] | None:
            row = conn.execute(f"SELECT model, payload FROM {TABLE} WHERE id = %s",
                               (session_id,)).fetchone()
            return None if row is None else (row[0], bytes(row[1]))
        with self._lock:
            return self._run(select)

    def ids(self) -> list[str]:
        def select(conn: Any) -> list[str]:
            return [row[0] for row in conn.execute(f"SELECT id FROM {TABLE} ORDER BY updated, id")]
        with self._lock:
            return self._run(select)

    def delete(self, session_id: str) -> None:
        with self._lock:
            self._run(lambda conn: conn.execute(f"DELETE FROM {TABLE} WHERE id = %s", (session_id,)))

    def count(self) -> int:
        with self._lock:
            return int(self._run(lambda conn: conn.execute(f"SELECT count(*) FROM {TABLE}").fetchone()[0]))

    def age(self, session_id: str) -> float | None:
        def select(conn: Any) -> float | None:
            row = conn.execute(f"SELECT extract(epoch FROM now() - updated) FROM {TABLE} WHERE id = %s",
                               (session_id,)).fetchone()
            return None if row is None else max(0.0, float(row[0]))
        with self._lock:
            return self._run(select)

    def expire(self, max_age: float) -> int:
        def delete(conn: Any) -> int:
            return int(conn.execute(f"DELETE FROM {TABLE} WHERE updated < now() - make_interval(secs => %s)",
                                    (float(max_age),)).rowcount)
        with self._lock:
            return self._run(delete)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __repr__(self) -> str:
        return f"PostgresStore({self._where})"

    # -- connection handling ------------------------------------------------------------------

    def _connect(self) -> Any:
        kwargs: dict[str, Any] = {"autocommit": True}
        if "connect_timeout" not in psycopg.conninfo.conninfo_to_dict(self._url):
            kwargs["connect_timeout"] = max(1, round(self._timeout))
        try:
            return psycopg.connect(self._url, **kwargs)
        except psycopg.OperationalError as exc:
            reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            raise PostgresStoreError(f"cannot reach the session store {self._where}: {reason}") from None

    @staticmethod
    def _create_table(conn: Any) -> None:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK_KEY,))
            conn.execute(_SCHEMA)

    def _run(self, work: Callable[[Any], T]) -> T:
        """Run ``work(connection)`` (caller holds the lock); after a broken connection (database
        restarted, network cut) connect again and retry once. Every statement is idempotent, so
        a retry after a failure in flight cannot apply an edit twice."""
        for attempt in (1, 2):
            if self._conn is None or self._conn.closed:
                self._conn = self._connect()
            try:
                return work(self._conn)
            except psycopg.OperationalError as exc:
                self._conn.close()
                self._conn = None
                if attempt == 2:
                    raise PostgresStoreError(f"session store {self._where} failed: {exc}") from None
            except psycopg.Error as exc:      # refused statement (disk full, bad data): no retry
                raise PostgresStoreError(f"session store {self._where} refused: {exc}") from None
        raise AssertionError("unreachable")
