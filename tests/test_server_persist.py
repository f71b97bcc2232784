"""Crash safety and access control of ``dragwalk serve`` (real subprocesses, kill -9)."""

from __future__ import annotations

import asyncio
import sqlite3

import httpx
import numpy as np
import pytest
import websockets

from dragwalk.latent_io import unpack_array

from server_harness import PageClient, running_server


def is_type(kind):
    return lambda e: e.get("type") == kind


def test_kill_9_mid_drag_and_restart_restores_sessions(tmp_path):
    store = tmp_path / "sessions.sqlite3"
    with running_server(tmp_path, store=store, env={"DRAGWALK_STORE_EVERY": "1"}) as server:
        quiet = server.create_session(seed=11)["id"]
        sid = server.create_session(seed=12)["id"]

        async def scenario():
            async with PageClient(server.ws_url(sid)) as page:
                await page.send(type="reseed", seed=13)
                await page.until(lambda e: e["type"] == "state" and e["session"]["cursor"] == 1)
                await page.send(type="set_points", handles=[[30.0, 34.0]], targets=[[50.0, 34.0]])
                await page.send(type="start_drag", method="stable", params={"max_steps": 500})
                await page.until(lambda e: e["type"] == "progress" and e["step"] >= 3, timeout=120)
                await asyncio.sleep(0.3)            # let the periodic store of step >= 2 land
                server.kill()                       # SIGKILL: no shutdown handler runs

        # a second process on the same store serves a session it never held (lazy restore)
        with running_server(tmp_path / "second", store=store) as second:
            with second.client() as client:
                assert client.get(f"/api/sessions/{quiet}").json()["seed"] == 11
        asyncio.run(scenario())
        assert server.process.returncode == -9
        with sqlite3.connect(store) as db:
            assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"

        server.start()                              # same port, same store
        with server.client() as client:
            restored = client.get(f"/api/sessions/{sid}").json()
            other = client.get(f"/api/sessions/{quiet}").json()
            log = client.get(f"/api/sessions/{sid}/log.json").json()
    assert other["seed"] == 11 and other["cursor"] == 0
    kinds = [h["kind"] for h in restored["history"]]
    assert kinds == ["start", "reseed", "drag"], restored["history"]
    assert "interrupted" in restored["history"][2]["label"]
    assert restored["busy"] is None and restored["points"]["handles"] == [[30.0, 34.0]]
    reseeded = unpack_array(log["operations"][0]["latent"]["code"])     # packed in the log
    dragged = unpack_array(log["operations"][1]["latent"]["code"])
    assert np.abs(dragged - reseeded).max() > 0            # the drag's progress survived the crash


TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def token_server(tmp_path_factory):
    """One server with an access token for the access-control tests."""
    with running_server(tmp_path_factory.mktemp("token"), token=TOKEN) as srv:
        yield srv


def test_token_is_required_everywhere(token_server):
    token, server = TOKEN, token_server
    anonymous = httpx.get(server.url("/api/health"))
    assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == "unauthorized"
    assert httpx.get(server.url("/")).status_code == 401
    wrong = httpx.get(server.url("/api/health"), headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    page = httpx.get(server.url(f"/?token={token}"))     # exchanged for the cookie, URL cleaned
    assert page.status_code == 303 and "dragwalk_token" in page.headers.get("set-cookie", "")
    assert page.headers["location"] == "/"
    with server.client() as client:
        sid = client.post("/api/sessions", json={"seed": 1}).json()["id"]
    cookie = httpx.get(server.url(f"/api/sessions/{sid}"), cookies={"dragwalk_token": token})
    assert cookie.status_code == 200

    async def closed_code(url):
        async with websockets.connect(url) as ws:
            event = __import__("json").loads(await asyncio.wait_for(ws.recv(), 30))
            with pytest.raises(websockets.ConnectionClosed) as info:
                await asyncio.wait_for(ws.recv(), 30)
            return event["code"], info.value.rcvd.code

    assert asyncio.run(closed_code(server.ws_url(sid, token=False))) == ("unauthorized", 4401)

    async def with_token():
        async with PageClient(server.ws_url(sid)) as page:
            return await page.until(is_type("state"))

    assert asyncio.run(with_token())["session"]["id"] == sid


def test_security_headers_and_token_leaves_the_url(token_server):
    srv = token_server
    with httpx.Client(base_url=srv.base, timeout=30, follow_redirects=False) as client:
        page = client.get(f"/?token={TOKEN}&session=abc")
        assert page.status_code == 303 and page.headers["location"] == "/?session=abc"
        assert f"dragwalk_token={TOKEN}" in page.headers["set-cookie"]
        followed = client.get(page.headers["location"])            # the cookie, no token in the URL
        assert followed.status_code == 200 and "<html" in followed.text.lower()
        for response in (followed, client.get("/api/health"), client.get("/js/main.js")):
            csp = response.headers["content-security-policy"]
            assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
            assert response.headers["x-content-type-options"] == "nosniff"
            assert response.headers["referrer-policy"] == "no-referrer"
        assert httpx.get(srv.url("/api/health")).status_code == 401

