"""The HTTP side of ``dragwalk serve``, over a real uvicorn subprocess on the default model."""

from __future__ import annotations

import io

import httpx
import numpy as np
import pytest
from PIL import Image

from server_harness import running_server


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with running_server(tmp_path_factory.mktemp("http")) as srv:
        yield srv


def test_page_and_face_png(server):
    """The README's run command: the page loads and a seed's face comes back as a PNG."""
    with server.client() as client:
        page = client.get("/")
        assert page.status_code == 200 and "<html" in page.text.lower()
        health = client.get("/api/health").json()
        assert health["status"] == "ok" and health["protocol"] == 1
        models = client.get("/api/models").json()
        assert models[0]["name"] == "digiface-dcgan64" and models[0]["resolution"] == 64
        created = client.post("/api/sessions", json={"seed": 7})
        assert created.status_code == 201
        session = created.json()
        png = client.get(f"/api/sessions/{session['id']}/image.png")
        assert png.status_code == 200 and png.headers["content-type"] == "image/png"
        image = np.asarray(Image.open(io.BytesIO(png.content)).convert("RGB"))
        assert image.shape == (64, 64, 3)
        assert image.std() > 10            # a face, not a blank frame
        again = client.get(f"/api/sessions/{session['id']}").json()
        assert again["id"] == session["id"] and again["seed"] == 7
        assert client.get("/docs").status_code == 200


def test_bad_requests_are_clear_errors(server):
    with server.client() as client:
        r = client.get("/api/sessions/../../etc/passwd")
        assert r.status_code == 404
        r = client.get("/api/sessions/short")
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
        r = client.get("/api/sessions/" + "a" * 20)
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
        r = client.post("/api/sessions", json={"seed": "seven"})
        assert r.status_code == 400 and r.json()["error"]["code"] == "bad_request"
        r = client.post("/api/sessions", json={"seed": 1, "model": "/etc/passwd"})
        assert r.status_code == 400 and "unknown model" in r.json()["error"]["message"]
        r = client.post("/api/sessions", content=b"{" * 10, headers={"content-type": "application/json"})
        assert r.status_code == 400
        r = client.post("/api/sessions", content=b"x" * (200 * 1024))
        assert r.status_code == 413 and r.json()["error"]["code"] == "too_large"
        assert client.get("/api/health").status_code == 200    # still serving


def test_delete_and_no_filesystem_paths(server):
    with server.client() as client:
        sid = client.post("/api/sessions", json={"seed": 2}).json()["id"]
        assert client.delete(f"/api/sessions/{sid}").status_code == 204
        assert client.get(f"/api/sessions/{sid}").status_code == 404
        assert client.delete(f"/api/sessions/{sid}").status_code == 404
        for path in ("/%2e%2e/%2e%2e/etc/passwd", "/..%2f..%2fetc/passwd", "/api/sessions/%2e%2e%2f%2e%2e"):
            r = client.get(path)
            assert r.status_code == 404 and b"root:" not in r.content
        r = client.get(f"/api/sessions/{sid}/latent.exe")
        assert r.status_code == 404


@pytest.mark.slow
def test_bench_server_runs_and_reports(tmp_path):
    """`dragwalk bench server` end to end with tiny settings (the figures themselves are not judged)."""
    import json

    from server_harness import run_dragwalk
    out = tmp_path / "figures.json"
    done = run_dragwalk(["bench", "server", "--seconds", "2", "--sessions", "2", "--device", "cpu",
                         "--json", str(out)], timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    figures = json.loads(out.read_text())
    assert figures["one_session"]["steps"] >= 1 and figures["one_session"]["frames"] >= 1
    assert len(figures["concurrent"]["steps"]) == 2 and min(figures["concurrent"]["steps"]) >= 1
    assert "slowest share" in done.stdout


@pytest.mark.slow
def test_bench_asked_at_start_times_a_pages_request_with_and_without_the_search(monkeypatch, capsys):
    """`bench directions --startup --asked` for one method: two real servers (the background search
    on and off), a page's request answered on each, and what it waited beside the search printed."""
    import argparse

    from dragwalk.bench import startup
    from dragwalk.server import precompute

    monkeypatch.setattr(precompute, "ORDER", ("sefa",))
    figures = startup._asked_at_start(argparse.Namespace(device="cpu", model=None), limit=120)
    row = figures["sefa"]
    assert 0 < row["alone"] < 60 and 0 < row["with the background search"] < 60
    assert row["waited_extra"] == pytest.approx(row["with the background search"] - row["alone"])
    assert "sefa" in capsys.readouterr().out
