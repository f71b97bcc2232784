"""Scale-out on real parts: the shared PostgreSQL store, then two ``dragwalk serve`` workers
behind nginx (docker/nginx's routing rules) that survive the loss of one of them.

The PostgreSQL cluster is a throwaway one started for this module (tests/test_deploy_harness.py);
the store tests run against it directly, the two-worker test shares it between the workers the
way docker/compose.yaml's "scale" profile does.
"""

from __future__ import annotations

import threading
import time

import psycopg  # part of the test extra: a missing install fails here, it never skips
import pytest

from test_deploy_harness import PostgresCluster


@pytest.fixture(scope="module")
def pg_url():
    cluster = PostgresCluster()
    try:
        cluster.start()
        yield cluster.url
    finally:
        cluster.close()


@pytest.fixture()
def pg_store(pg_url):
    from dragwalk.server.stores import open_store

    store = open_store(pg_url)
    yield store
    for sid in store.ids():
        store.delete(sid)
    store.close()


# --- the shared store --------------------------------------------------------------------------

def test_open_store_picks_postgres_for_a_url(pg_store):
    from dragwalk.server.store_postgres import PostgresStore

    assert isinstance(pg_store, PostgresStore)
    assert "postgres@127.0.0.1" in repr(pg_store)


def test_postgres_store_round_trips_and_replaces(pg_store, pg_url):
    from dragwalk.server.stores import open_store

    payload = bytes(range(256)) * 40  # every byte value, NUL included
    assert pg_store.get("abcdefgh") is None
    pg_store.put("abcdefgh", "digiface-dcgan64", payload)
    pg_store.put("ijklmnop", "other.pkl", b"x")
    assert pg_store.get("abcdefgh") == ("digiface-dcgan64", payload)
    pg_store.put("abcdefgh", "digiface-dcgan64", b"newer")
    assert pg_store.get("abcdefgh") == ("digiface-dcgan64", b"newer")
    assert pg_store.ids() == ["ijklmnop", "abcdefgh"]  # least recently stored first, as SQLiteStore

    # a second process's store (here: a second connection) sees the same rows at once
    other = open_store(pg_url)
    try:
        assert other.get("abcdefgh") == ("digiface-dcgan64", b"newer")
        other.delete("ijklmnop")
        other.delete("not-there")  # no error
    finally:
        other.close()
    assert pg_store.ids() == ["abcdefgh"]


def test_postgres_store_is_thread_safe(pg_store):
    def writer(k: int) -> None:
        for i in range(20):
            pg_store.put(f"thread{k}", "m", f"{k}:{i}".encode())
            assert pg_store.get(f"thread{k}")[1].startswith(f"{k}:".encode())

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(pg_store.ids()) == [f"thread{k}" for k in range(4)]
    assert all(pg_store.get(f"thread{k}")[1] == f"{k}:19".encode() for k in range(4))


def test_postgres_store_reconnects_after_losing_its_connection(pg_store, pg_url):
    pg_store.put("survivor", "m", b"before")
    with psycopg.connect(pg_url, autocommit=True) as admin:  # what a database restart does to it
        killed = admin.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                               "WHERE pid <> pg_backend_pid() AND datname = current_database() "
                               "AND backend_type = 'client backend'").fetchone()[0]
    assert killed >= 1
    assert pg_store.get("survivor") == ("m", b"before")
    pg_store.put("survivor", "m", b"after")
    assert pg_store.get("survivor") == ("m", b"after")


def test_workers_starting_together_create_the_table_once(pg_url):
    from dragwalk.server.store_postgres import TABLE, PostgresStore

    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute(f"DROP TABLE IF EXISTS {TABLE}")
    stores, errors = [], []

    def start() -> None:
        try:
            stores.append(PostgresStore(pg_url))
        except Exception as exc:  # noqa: BLE001 - collected and reported below
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    stores[0].put("shared01", "m", b"p")
    assert all(s.get("shared01") == ("m", b"p") for s in stores)
    for s in stores:
        s.close()
    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute(f"DELETE FROM {TABLE}")


def test_unreachable_database_is_a_clear_error():
    from dragwalk.server.store_postgres import PostgresStoreError
    from test_deploy_harness import free_port

    url = f"postgresql://someone:secret-pw@127.0.0.1:{free_port()}/nowhere"
    started = time.monotonic()
    with pytest.raises(PostgresStoreError) as info:
        from dragwalk.server.stores import open_store
        open_store(url)
    message = str(info.value)
    assert "cannot reach the session store someone@127.0.0.1" in message and "/nowhere" in message
    assert "secret-pw" not in message
    assert time.monotonic() - started < 10


# --- two workers behind nginx ------------------------------------------------------------------

def _json(method: str, url: str, body: dict | None = None) -> dict:
    import json
    import urllib.request

    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json"} if data else {})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


class _Editor:
    """A websocket client of one session, through nginx: sends commands and waits for the event
    that says each one finished (frames are ignored; the server keeps only the newest)."""

    def __init__(self, ws_url: str) -> None:
        from websockets.sync.client import connect

        # Origin as a browser on the nginx address sends it: nginx must pass the Host on
        origin = "http://" + ws_url.split("/")[2]
        self._connection = connect(ws_url, origin=origin, open_timeout=30, max_size=None)
        self.ws = self._connection.__enter__()
        self.state = self.until("state")["session"]  # sent on accept
        self.command({"type": "hello", "version": 1, "credits": 8})  # answered with a state too

    def until(self, kind: str, timeout: float = 60) -> dict:
        import json

        deadline = time.monotonic() + timeout
        while True:
            message = self.ws.recv(timeout=max(0.1, deadline - time.monotonic()))
            if isinstance(message, bytes):
                continue
            event = json.loads(message)
            if event["type"] == "error":
                raise AssertionError(f"server error: {event}")
            if event["type"] == kind:
                return event

    def command(self, message: dict, reply: str = "state") -> dict:
        import json

        self.ws.send(json.dumps(message))
        event = self.until(reply)
        if reply == "state":
            self.state = event["session"]
        return event

    def close(self) -> None:
        self._connection.__exit__(None, None, None)


def _edit(ws_url: str, seed: int, drag: bool) -> None:
    """A few real edits: a reseed, points, and either a short drag or an undo+redo pair."""
    editor = _Editor(ws_url)
    try:
        editor.command({"type": "reseed", "seed": seed + 1000})
        editor.command({"type": "set_points", "handles": [[20, 30]], "targets": [[26, 30]]})
        if drag:
            editor.command({"type": "start_drag", "params": {"max_steps": 4}}, reply="done")
            editor.command({"type": "ping"}, reply="pong")
        else:
            editor.command({"type": "undo"})
            editor.command({"type": "redo"})
    finally:
        editor.close()


def _without_volatile(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if k != "busy"}


@pytest.fixture(params=["postgres", "sqlite"])
def store_spec(request, tmp_path):
    """PostgreSQL (the shared option, what compose's "scale" profile uses) and one SQLite file
    (the embedded option: workers on one host sharing a file)."""
    if request.param == "postgres":
        return request.getfixturevalue("pg_url")
    return str(tmp_path / "shared.sqlite3")


@pytest.mark.slow
def test_sessions_survive_the_death_of_their_worker(store_spec, tmp_path):
    from test_deploy_harness import Nginx, Worker, http_get

    workers = [Worker(name, store_spec, tmp_path / name) for name in ("w0", "w1")]
    nginx = None
    try:
        for w in workers:
            w.home.mkdir()
            w.start()
        for w in workers:
            w.wait_healthy()
        nginx = Nginx([f"127.0.0.1:{w.port}" for w in workers])
        nginx.start()
        by_addr = {f"127.0.0.1:{w.port}": w for w in workers}

        def request_via_nginx(method: str, path: str, body: dict | None = None) -> tuple[dict, str]:
            """The JSON answer and the upstream(s) nginx tried, from its access log (written
            just after the response, hence the short wait)."""
            seen = len(nginx.routed())
            answer = _json(method, nginx.url + path, body)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                rows = [r for r in nginx.routed()[seen:] if r[0] == method and r[1] == path]
                if rows:
                    return answer, rows[-1][3]
                time.sleep(0.02)
            raise AssertionError(f"nginx logged no {method} {path}")

        # sessions created through nginx land round-robin; each then lives on the worker its id
        # hashes to, which restores it from the store on first use
        created: dict[str, str] = {}
        owner: dict[str, str] = {}

        def create(seed: int) -> str:
            answer, created_on = request_via_nginx("POST", "/api/sessions", {"seed": seed})
            sid = answer["id"]
            created[sid] = created_on
            owner[sid] = request_via_nginx("GET", f"/api/sessions/{sid}")[1]
            return sid

        for seed in range(6):
            create(seed)
        # the case that loses edits if done wrong: a session created on one worker (which keeps
        # a copy in memory) but edited on the other, whose death sends it back to the creator
        def crossed() -> list[str]:
            return [s for s in owner if owner[s] != created[s]]
        extra = 100
        # random ids: keep creating until both workers own sessions and one is crossed
        # (6 ids all on one worker happens a few times in a hundred runs)
        while (not crossed() or set(owner.values()) != set(by_addr)) and extra < 160:
            create(extra)
            extra += 1
        victim_addr = owner[crossed()[0]]
        assert set(owner.values()) == set(by_addr), "the hash put every session on one worker"

        ws_base = nginx.url.replace("http://", "ws://")
        for i, sid in enumerate(owner):
            _edit(f"{ws_base}/ws/sessions/{sid}", seed=i, drag=(i == 0 or sid == crossed()[0]))

        before = {}
        for sid in owner:
            summary, served_by = request_via_nginx("GET", f"/api/sessions/{sid}")
            assert served_by == owner[sid]
            assert len(summary["history"]) >= 2, summary  # the edits happened
            status, png = http_get(f"{nginx.url}/api/sessions/{sid}/image.png")
            assert status == 200 and png.startswith(b"\x89PNG")
            before[sid] = (_without_volatile(summary), png)

        # the worker dies without a chance to save anything
        victim = by_addr[victim_addr]
        survivor_addr = next(a for a in by_addr if a != victim_addr)
        victim.kill()
        moved = [sid for sid in owner if owner[sid] == victim_addr]
        assert moved

        changed = []
        for sid in owner:
            summary, served_by = request_via_nginx("GET", f"/api/sessions/{sid}")
            assert served_by.split(", ")[-1] == survivor_addr
            status, png = http_get(f"{nginx.url}/api/sessions/{sid}/image.png")
            assert status == 200
            if (_without_volatile(summary), png) != before[sid]:
                was = before[sid][0]
                changed.append(f"{sid}: created on {created[sid]}, lived on {owner[sid]}; history "
                               f"{len(was['history'])} -> {len(summary['history'])}, cursor "
                               f"{was['cursor']} -> {summary['cursor']}, same image: {png == before[sid][1]}")
        assert not changed, (f"worker {victim_addr} was killed; {survivor_addr} served these "
                             "sessions differently:\n" + "\n".join(changed))

        # the moved sessions are live on the survivor: editing goes on where it stopped
        editor = _Editor(f"{ws_base}/ws/sessions/{moved[0]}")
        try:
            cursor = editor.state["cursor"]
            editor.command({"type": "undo"})
            assert editor.state["cursor"] == cursor - 1
        finally:
            editor.close()
    finally:
        if nginx is not None:
            nginx.close()
        for w in workers:
            w.close()
