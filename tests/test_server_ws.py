"""The websocket editor over a real uvicorn subprocess and real websocket clients (default model).

Drag steps on a shared 2-core CPU take up to a second, so every drag here is a few steps long.
"""

from __future__ import annotations

import asyncio
import io
import json

import httpx
import numpy as np
import pytest
from PIL import Image

from server_harness import PageClient, running_server

HANDLE, TARGET = [30.0, 34.0], [36.0, 34.0]
#: why a drag ends, in the run's own words (the server adds stopped / cancelled / error)
RUN_REASONS = {"converged", "nothing_to_move", "tracking_lost", "max_steps"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with running_server(tmp_path_factory.mktemp("ws")) as srv:
        yield srv


def run(coro):
    return asyncio.run(coro)


def is_type(kind):
    return lambda e: e.get("type") == kind


def _png_b64(array: np.ndarray) -> str:
    import base64
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def png_array(content: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(content)).convert("RGB")).astype(np.float32)


def test_full_drag_streams_frames_and_progress(server):
    sid = server.create_session(seed=3)["id"]

    async def scenario():
        async with PageClient(server.ws_url(sid)) as page:
            first = await page.until(is_type("state"))
            assert first["session"]["id"] == sid
            await page.send(type="set_points", handles=[HANDLE], targets=[TARGET])
            await page.send(type="start_drag", params={"max_steps": 3}, rid="d1")
            done = await page.until(is_type("done"))
            state = await page.until(is_type("state"))
            return page, done, state

    page, done, state = run(scenario())
    assert done["op"] == "drag" and done["reason"] in RUN_REASONS and done["steps"] >= 1
    progress = [e for e in page.events if e["type"] == "progress"]
    assert progress and all(e["op"] == "drag" for e in progress)
    assert all({"step", "handles", "targets", "remaining", "max_remaining", "distances", "idle"} <= set(e)
               for e in progress)
    assert all(len(e["distances"]) == len(e["idle"]) == 1 for e in progress)
    drag_frames = [f for f in page.frames if f[0] == 1]
    assert drag_frames, "no drag frames arrived"
    seqs = [f[1] for f in page.frames]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    # a frame and the progress with the same step describe the same latent
    assert {f[2] for f in drag_frames} <= {e["step"] for e in progress}
    image = Image.open(io.BytesIO(drag_frames[-1][3]))
    assert image.format == "JPEG" and image.size == (64, 64)
    history = state["session"]["history"]
    assert [h["kind"] for h in history] == ["start", "drag"] and state["session"]["busy"] is None

    with server.client() as client:
        before = client.get(f"/api/sessions/{sid}/image.png")
        log = client.get(f"/api/sessions/{sid}/log.json").json()
        gif = client.get(f"/api/sessions/{sid}/animation.gif")
        npz = client.get(f"/api/sessions/{sid}/latent.npz")
        latent_json = client.get(f"/api/sessions/{sid}/latent.json").json()
        mp4 = client.get(f"/api/sessions/{sid}/animation.mp4")
        fresh = client.post("/api/sessions", json={"seed": 1}).json()["id"]
        no_drag = client.get(f"/api/sessions/{fresh}/animation.gif")
        npy = client.get(f"/api/sessions/{sid}/latent.npy")
    assert before.status_code == 200
    assert log["format"] == "dragwalk-log/1" and log["start"]["seed"] == 3
    assert [op["kind"] for op in log["operations"]] == ["drag"]
    assert log["operations"][0]["handles"] == [HANDLE]
    assert gif.status_code == 200 and gif.content[:4] == b"GIF8"
    assert npz.status_code == 200 and npz.content[:2] == b"PK"
    assert latent_json["space"] == "z" and len(latent_json["code"]) == 100
    from dragwalk.server.exports import mp4_available
    if mp4_available():          # imageio-ffmpeg is a dependency: its wheel carries ffmpeg
        import imageio.v3 as iio
        assert mp4.status_code == 200 and mp4.content[4:8] == b"ftyp"
        video = iio.imread(mp4.content, extension=".mp4", index=None)
        assert video.shape[0] >= 2 and video.shape[1:] == (256, 256, 3)
    else:
        assert mp4.status_code == 501 and mp4.json()["error"]["code"] == "unavailable"
    assert no_drag.status_code == 404
    # the default drag mode adds a spatial offset, which a bare .npy cannot hold: a clear refusal
    assert npy.status_code == 200 or "npz" in npy.json()["error"]["message"]


def test_stop_within_one_step_and_undo_redo(server):
    sid = server.create_session(seed=5)["id"]

    async def scenario():
        async with PageClient(server.ws_url(sid)) as page:
            await page.send(type="set_points", handles=[HANDLE], targets=[[50.0, 34.0]])
            await page.send(type="start_drag", method="stable", params={"max_steps": 500})
            await page.until(lambda e: e["type"] == "progress" and e["step"] >= 1)
            # mid-drag: a new learning rate and new points resume the same drag
            await page.send(type="set_lr", lr=0.01, rid="lr")
            await page.send(type="set_points", handles=[HANDLE], targets=[[40.0, 34.0]])
            seen = await page.until(lambda e: e["type"] == "progress" and e["targets"] == [[40.0, 34.0]])
            await page.send(type="stop_drag")
            done = await page.until(is_type("done"))
            after_stop = await page.until(is_type("state"))
            await page.send(type="undo", rid="u")
            undone = await page.until(is_type("state"))
            await page.send(type="redo")
            redone = await page.until(is_type("state"))
            await page.send(type="redo", rid="r2")
            refused = await page.until(is_type("error"))
            await page.send(type="ping", rid=7)
            pong = await page.until(is_type("pong"))
            page_errors.extend(e for e in page.events if e["type"] == "error")
            return seen, done, after_stop, undone, redone, refused, pong

    page_errors: list = []
    seen, done, after_stop, undone, redone, refused, pong = run(scenario())
    assert done["reason"] == "stopped"
    assert not [e for e in page_errors if e.get("rid") == "lr"]
    # the worker finishes the step in flight, then stops before the next one
    assert seen["step"] <= done["steps"] <= seen["step"] + 2
    assert after_stop["session"]["cursor"] == 1 and after_stop["session"]["history"][1]["kind"] == "drag"
    assert undone["session"]["cursor"] == 0 and undone["session"]["can_redo"]
    assert redone["session"]["cursor"] == 1 and not redone["session"]["can_redo"]
    assert refused["code"] == "bad_request" and refused["rid"] == "r2" and "redo" in refused["message"]
    assert pong["rid"] == 7


def test_reseed_undo_changes_image(server):
    sid = server.create_session(seed=1)["id"]
    with server.client() as client:
        first = png_array(client.get(f"/api/sessions/{sid}/image.png").content)
        r = client.post(f"/api/sessions/{sid}/commands", json={"type": "reseed", "seed": 2})
        assert r.status_code == 200 and r.json()["session"]["cursor"] == 1
        second = png_array(client.get(f"/api/sessions/{sid}/image.png").content)
        r = client.post(f"/api/sessions/{sid}/commands", json={"type": "undo"})
        assert r.json()["session"]["cursor"] == 0
        back = png_array(client.get(f"/api/sessions/{sid}/image.png").content)
        r = client.post(f"/api/sessions/{sid}/commands", json={"type": "start_drag"})
        assert r.status_code == 400 and "websocket" in r.json()["error"]["message"]
    assert np.abs(first - second).mean() > 5
    assert np.abs(first - back).max() == 0


def test_disconnect_mid_drag_stops_the_worker(server):
    sid = server.create_session(seed=9)["id"]

    async def scenario():
        async with PageClient(server.ws_url(sid)) as page:
            await page.send(type="set_points", handles=[HANDLE], targets=[[50.0, 34.0]])
            await page.send(type="start_drag", method="stable", params={"max_steps": 500})
            await page.until(lambda e: e["type"] == "progress")
        # the page is gone; the server must notice and stop the drag within a step or two
        with server.client() as client:
            for _ in range(100):
                summary = client.get(f"/api/sessions/{sid}").json()
                health = client.get("/api/health").json()
                if summary["busy"] is None and health["jobs"] == 0:
                    return summary, health
                await asyncio.sleep(0.2)
        raise AssertionError(f"drag still running after disconnect: {summary} {health}")

    summary, health = run(scenario())
    assert health["jobs"] == 0
    kinds = [h["kind"] for h in summary["history"]]
    assert kinds == ["start", "drag"]      # what the drag reached is kept


def test_eight_sessions_drag_at_once(server):
    ids = [server.create_session(seed=20 + i)["id"] for i in range(8)]

    async def one(sid, ready, go):
        async with PageClient(server.ws_url(sid)) as page:
            await page.send(type="set_points", handles=[HANDLE], targets=[TARGET])
            await page.until(lambda e: e["type"] == "state" and e["session"]["points"]["handles"])
            ready.append(sid)
            await go.wait()                       # all eight start together
            await page.send(type="start_drag", params={"max_steps": 2})
            done = await page.until(is_type("done"), timeout=150)
            loop = asyncio.get_running_loop()
            firsts = [e for e in page.events if e["type"] == "progress"]
            return done, firsts, loop.time()

    async def scenario():
        ready, go = [], asyncio.Event()
        tasks = [asyncio.ensure_future(one(sid, ready, go)) for sid in ids]
        while len(ready) < len(ids):
            await asyncio.sleep(0.05)
        go.set()
        return await asyncio.gather(*tasks)

    results = run(scenario())
    for done, progress, _ in results:
        assert done["reason"] in RUN_REASONS and done["steps"] >= 1
        assert progress, "a session got no progress"
    # round robin: between two steps of one session, every session already stepping had its turn,
    # so no session waiting in the queue saw another take both its steps first
    spans = [(p[0]["t"], p[-1]["t"]) for _, p, _ in results]
    for a_first, a_last in spans:
        for b_first, b_last in spans:
            assert not (b_first < a_first and b_last > a_last), spans


def test_hostile_messages_get_errors_and_the_connection_lives(server):
    sid = server.create_session(seed=4)["id"]

    async def scenario():
        async with PageClient(server.ws_url(sid)) as page:
            await page.until(is_type("state"))
            answers = {}
            for name, raw in {
                "not_json": "{nope",
                "not_object": "[1, 2]",
                "unknown_type": json.dumps({"type": "rm -rf"}),
                "wrong_types": json.dumps({"type": "set_points", "handles": "x", "targets": [], "rid": "w"}),
                "outside": json.dumps({"type": "set_points", "handles": [[1e9, 0]], "targets": [[1, 1]]}),
                "nan": '{"type": "set_points", "handles": [[NaN, 0]], "targets": [[1, 1]]}',
                "unequal": json.dumps({"type": "set_points", "handles": [[1, 1]], "targets": []}),
                "huge": json.dumps({"type": "ping", "pad": "x" * (2 * 1024 * 1024)}),
                "bad_mask": json.dumps({"type": "set_mask", "mask": "not base64!!"}),
                "bad_version": json.dumps({"type": "hello", "version": 99}),
                "unknown_set": json.dumps({"type": "walk", "set": "nope", "walks": [{"index": 0, "amount": 1}]}),
                "stop_idle": json.dumps({"type": "stop_drag"}),
                "bad_method": json.dumps({"type": "start_drag", "method": "../../etc"}),
                "goto_far": json.dumps({"type": "goto", "index": 50}),
                "too_many_points": json.dumps({"type": "set_points", "handles": [[1, 1]] * 129,
                                               "targets": [[2, 2]] * 129}),
                "mask_size": json.dumps({"type": "set_mask", "mask": _png_b64(np.zeros((8, 8), np.uint8))}),
                "lr_idle": json.dumps({"type": "set_lr", "lr": 0.1}),
                "bad_drag_param": json.dumps({"type": "start_drag", "params": {"max_steps": "many"}}),
            }.items():
                await page.send_raw(raw)
                answers[name] = await page.until(lambda e: e["type"] == "error", timeout=30)
            await page.send_raw(b"\x00binary")
            answers["binary"] = await page.until(is_type("error"))
            await page.send(type="ping", rid="alive")
            pong = await page.until(is_type("pong"))
            return answers, pong

    answers, pong = run(scenario())
    assert pong["rid"] == "alive"
    codes = {name: e["code"] for name, e in answers.items()}
    assert codes["not_json"] == codes["not_object"] == codes["unknown_type"] == "invalid_message"
    assert codes["wrong_types"] == "invalid_message" and answers["wrong_types"]["rid"] == "w"
    assert "handles" in answers["wrong_types"]["message"]
    assert codes["outside"] == codes["nan"] == codes["unequal"] == "invalid_points"
    assert codes["huge"] == "too_large"
    assert codes["bad_version"] == "version"
    assert codes["bad_mask"] == "bad_request"
    assert codes["unknown_set"] in ("not_found", "unavailable")
    assert codes["stop_idle"] == "bad_request"
    assert codes["bad_method"] in ("bad_request", "invalid_points")
    assert codes["goto_far"] == "bad_request"
    assert codes["binary"] == "invalid_message"
    assert codes["too_many_points"] == "invalid_message"
    assert codes["mask_size"] == "bad_request" and "64x64" in answers["mask_size"]["message"]
    assert codes["lr_idle"] == "bad_request"
    assert codes["bad_drag_param"] in ("bad_request", "invalid_points")
    with server.client() as client:
        assert client.get("/api/health").json()["status"] == "ok"


def test_unknown_session_and_bad_origin_are_closed_with_codes(server):
    import websockets
    sid = server.create_session(seed=4)["id"]

    async def closed_with(url, **kwargs):
        async with websockets.connect(url, **kwargs) as ws:
            event = json.loads(await asyncio.wait_for(ws.recv(), 30))
            with pytest.raises(websockets.ConnectionClosed) as info:
                await asyncio.wait_for(ws.recv(), 30)
            return event, info.value.rcvd.code

    event, code = run(closed_with(server.ws_url("A" * 16)))
    assert code == 4404 and event["code"] == "not_found"
    event, code = run(closed_with(server.ws_url("abc.def")))
    assert code == 4404 and event["code"] == "not_found"
    with pytest.raises(websockets.InvalidStatus):        # no such route at all: refused at handshake
        run(closed_with(server.ws_url("..%2F..%2Fetc")))
    event, code = run(closed_with(server.ws_url(sid), origin="http://evil.example"))
    assert code == 4403 and event["code"] == "forbidden"

    async def same_origin():
        async with PageClient(server.ws_url(sid), origin=server.origin) as page:
            return await page.until(is_type("state"))

    assert run(same_origin())["session"]["id"] == sid


def replay_headless(log: dict, tmp_path, capsys, tolerance: str = "1e-3") -> tuple[np.ndarray, object, str]:
    """Write ``log`` to a file, replay it with `dragwalk replay` (the command's entry point, in
    this process: no second Python and torch start-up): the image, the file, the output."""
    from dragwalk.cli import main

    path = tmp_path / "log.json"
    path.write_text(json.dumps(log))
    out = tmp_path / "replayed.png"
    capsys.readouterr()
    code = main(["replay", str(path), "-o", str(out), "--device", "cpu", "--tolerance", tolerance])
    printed, errors = capsys.readouterr()
    assert code == 0, printed + errors
    assert "recomputed" in printed
    return np.asarray(Image.open(out).convert("RGB")).astype(np.float32), path, printed


def test_a_warp_drag_replays_and_round_trips(server, tmp_path, capsys):
    """The default drag keeps its edit in the latent's offsets: the edit log replays it headless
    to the same image, and the exported latent uploads to the same image."""
    sid = server.create_session(seed=6)["id"]

    async def scenario():
        async with PageClient(server.ws_url(sid)) as page:
            await page.send(type="set_points", handles=[HANDLE], targets=[TARGET])
            await page.send(type="start_drag")
            return await page.until(is_type("done"))

    done = run(scenario())
    assert done["reason"] == "converged", done
    with server.client() as client:
        log = client.get(f"/api/sessions/{sid}/log.json").json()
        served = png_array(client.get(f"/api/sessions/{sid}/image.png").content)
        npz = client.get(f"/api/sessions/{sid}/latent.npz").content
        r = client.post("/api/sessions/upload", files={"file": ("x.npz", npz, "application/octet-stream")})
        assert r.status_code == 201, r.text
        uploaded = png_array(client.get(f"/api/sessions/{r.json()['id']}/image.png").content)
    assert log["operations"][-1]["kind"] == "drag" and log["operations"][-1]["method"] == "warp"
    assert np.abs(uploaded - served).max() <= 1
    replayed, _, _ = replay_headless(log, tmp_path, capsys)
    assert np.abs(replayed - served).max() <= 2


def test_edit_log_replays_headless(server, tmp_path, capsys):
    """log.json from a session with a drag and a reseed replays with `dragwalk replay` to the same image."""
    sid = server.create_session(seed=6)["id"]

    async def scenario():
        async with PageClient(server.ws_url(sid)) as page:
            await page.send(type="reseed", seed=8)
            await page.until(lambda e: e["type"] == "state" and e["session"]["cursor"] == 1)
            await page.send(type="set_points", handles=[HANDLE], targets=[TARGET])
            await page.send(type="start_drag", method="stable", params={"max_steps": 300})
            await page.until(is_type("progress"))
            # changed while the drag runs: recorded in the log, repeated by the replay
            await page.send(type="set_lr", lr=0.004)
            await page.send(type="set_points", handles=[HANDLE], targets=[[34.0, 38.0]])
            await page.until(lambda e: e["type"] == "progress" and e["targets"] == [[34.0, 38.0]])
            await page.send(type="stop_drag")
            await page.until(is_type("done"))

    run(scenario())
    with server.client() as client:
        log = client.get(f"/api/sessions/{sid}/log.json").json()
        served = png_array(client.get(f"/api/sessions/{sid}/image.png").content)
    assert [op["kind"] for op in log["operations"]] == ["reseed", "drag"]
    changes = log["operations"][1].get("changes", [])
    assert {"lr", "handles"} <= {k for c in changes for k in c}, log["operations"][1]
    replayed, path, _ = replay_headless(log, tmp_path, capsys)
    assert np.abs(replayed - served).max() <= 2

    # the same log uploaded makes a new session with the same history and image
    with server.client() as client:
        r = client.post("/api/sessions/upload", files={"file": ("log.json", path.read_bytes(), "application/json")})
        assert r.status_code == 201, r.text
        copy = r.json()
        assert [h["kind"] for h in copy["history"]] == ["start", "reseed", "drag"]
        again = png_array(client.get(f"/api/sessions/{copy['id']}/image.png").content)
        npz = client.get(f"/api/sessions/{sid}/latent.npz").content
        r = client.post("/api/sessions/upload", files={"file": ("x.npz", npz, "application/octet-stream")})
        assert r.status_code == 201 and r.json()["history"][0]["kind"] == "upload"
        r = client.post("/api/sessions/upload", files={"file": ("x.npy", b"garbage", "application/octet-stream")})
        assert r.status_code == 400 and r.json()["error"]["code"] == "bad_request"
        r = client.post("/api/sessions/upload", files={"file": ("big.npz", b"0" * (21 * 1024 * 1024), "x/y")})
        assert r.status_code == 413
    assert np.abs(again - served).max() == 0


def test_directions_walk_preview_and_commit(server, tmp_path, capsys):
    import base64
    sid = server.create_session(seed=2)["id"]
    mask = np.zeros((64, 64), np.uint8)
    mask[36:52, 20:44] = 255                      # the mouth region
    buffer = io.BytesIO()
    Image.fromarray(mask).save(buffer, format="PNG")
    mask_b64 = base64.b64encode(buffer.getvalue()).decode()

    async def scenario():
        async with PageClient(server.ws_url(sid)) as page:
            await page.until(is_type("state"))
            await page.send(type="compute_directions", method="sefa", params={"num": 8}, rid="c")
            sefa = await page.until(is_type("directions"))
            frames_before = len(page.frames)
            await page.send(type="walk", set=sefa["set"], walks=[{"index": 0, "amount": 3.0}])
            while not any(f[0] == 2 for f in page.frames[frames_before:]):
                await page.receive()
            await page.send(type="walk", set=sefa["set"], walks=[{"index": 0, "amount": 3.0},
                                                                  {"index": 1, "amount": -2.0}], commit=True)
            committed = await page.until(lambda e: e["type"] == "state" and e["session"]["cursor"] == 1)
            await page.send(type="compute_directions", method="reds", params={"num": 4}, rid="no-mask")
            refused = await page.until(is_type("error"))
            await page.send(type="set_mask", mask=mask_b64)
            masked = await page.until(lambda e: e["type"] == "state" and e["session"]["has_mask"])
            await page.send(type="compute_directions", method="reds", params={"num": 4})
            reds = await page.until(is_type("directions"))
            await page.send(type="walk", set=reds["set"], walks=[{"index": 0, "amount": 2.0}], kind="curved")
            curved_refused = await page.until(is_type("error"))      # the default region set moves offsets
            await page.send(type="walk", set=reds["set"], walks=[{"index": 0, "amount": 2.0}], commit=True)
            curved = await page.until(lambda e: e["type"] == "state" and e["session"]["cursor"] == 2)
            await page.send(type="compute_directions", method="nope")
            unknown = await page.until(is_type("error"))
            return sefa, committed, refused, masked, reds, curved, unknown, curved_refused

    sefa, committed, refused, masked, reds, curved, unknown, curved_refused = run(scenario())
    assert "offsets" in curved_refused["message"]
    assert reds["walk_kinds"] == ["linear"]
    assert sefa["rid"] == "c" and sefa["method"] == "sefa" and sefa["count"] == 8 and len(sefa["scales"]) == 8
    assert [h["kind"] for h in committed["session"]["history"]] == ["start", "walk"]
    assert refused["rid"] == "no-mask" and "mask" in refused["message"]
    assert reds["count"] >= 1
    assert [h["kind"] for h in curved["session"]["history"]] == ["start", "walk", "walk"]
    assert unknown["code"] == "bad_request" and "nope" in unknown["message"]
    with server.client() as client:
        log = client.get(f"/api/sessions/{sid}/log.json").json()
        image = png_array(client.get(f"/api/sessions/{sid}/image.png").content)
        methods = client.get("/api/methods").json()
        client.post(f"/api/sessions/{sid}/commands", json={"type": "goto", "index": 1})
        start = png_array(client.get(f"/api/sessions/{sid}/image.png").content)
    assert {m["name"] for m in methods["directions"]} >= {"sefa", "reds"}
    assert any(m["name"] == "draggan" for m in methods["drag"])
    # the region edit (compared with the image before it) changed mostly the painted region
    change = np.abs(image - start).mean(axis=2)
    inside = change[mask > 0].mean()
    outside = change[mask == 0].mean()
    assert inside > 1.0 and inside > 3 * outside
    # both walks replay headless: the region walk recomputes its set from the mask in the log
    assert "region" in log["operations"][1] and "region" not in log["operations"][0]
    walked, _, printed = replay_headless(log, tmp_path, capsys, tolerance="1e-4")
    assert printed.count("walk    recomputed") == 2 and "walk    recorded" not in printed
    assert np.abs(walked - image).max() <= 2


def test_slow_page_gets_fewer_fresher_frames(server):
    """A page that does not acknowledge gets no backlog: one frame per credit, then only the newest."""
    sid = server.create_session(seed=14)["id"]

    async def scenario():
        async with PageClient(server.ws_url(sid), auto_ack=False, credits=2) as page:
            await page.send(type="set_points", handles=[HANDLE], targets=[[50.0, 34.0]])
            await page.send(type="start_drag", method="stable", params={"max_steps": 4})
            done = await page.until(is_type("done"))
            await page.until(is_type("state"))
            held = list(page.frames)
            await page.send(type="ack", seq=held[-1][1])          # one credit back
            newest = await page.receive(timeout=30)
            while not isinstance(newest, tuple):
                newest = await page.receive(timeout=30)
            return done, held, newest

    done, held, newest = run(scenario())
    assert done["steps"] == 4
    assert len(held) == 2                       # the opening image and one drag frame: two credits
    assert held[1][0] == 1 and held[1][2] < 4
    assert newest[0] == 1 and newest[2] == 4    # the frame waiting was the newest, the last step
    assert newest[1] == held[-1][1] + 1         # and nothing older was queued before it


# ------------------------------------------------------------------ how a drag ended, in the run's words
async def _drag(server, sid, handles, targets, method=None, params=None):
    """Set points, run one drag to its end; returns (page, done event, state after it)."""
    async with PageClient(server.ws_url(sid)) as page:
        await page.until(is_type("state"))
        await page.send(type="set_points", handles=handles, targets=targets)
        await page.until(lambda e: e["type"] == "state" and e["session"]["points"]["handles"] == handles)
        await page.send(type="start_drag", **({"method": method} if method else {}), params=params or {})
        done = await page.until(is_type("done"), timeout=180)
        after = await page.until(is_type("state"))
        return page, done, after


def _progress(page):
    return [e for e in page.events if e["type"] == "progress"]


def _log_reason(server, sid):
    with server.client() as client:
        ops = client.get(f"/api/sessions/{sid}/log.json").json()["operations"]
    return [op.get("reason") for op in ops if op["kind"] == "drag"]


def test_handle_already_on_its_target_ends_with_nothing_to_move(server):
    sid = server.create_session(seed=3)["id"]
    page, done, after = run(_drag(server, sid, [HANDLE], [HANDLE], "warp", {"max_steps": 20}))
    assert done["reason"] == "nothing_to_move", done
    assert done["idle"] == [True] and done["distances"] == [0.0] and done["steps"] == 0
    progress = _progress(page)
    assert progress and all(e["idle"] == [True] and len(e["distances"]) == 1 for e in progress)
    # nothing moved, so nothing was added to the history
    assert [h["kind"] for h in after["session"]["history"]] == ["start"]


def test_warp_drag_converges_and_reports_every_pair(server):
    sid = server.create_session(seed=3)["id"]
    handles, targets = [HANDLE, [20.0, 20.0]], [TARGET, [20.0, 20.0]]   # the second pair: nothing to move
    page, done, after = run(_drag(server, sid, handles, targets, "warp", {"max_steps": 40}))
    assert done["reason"] == "converged", done
    progress = _progress(page)
    assert progress and all(len(e["distances"]) == len(e["idle"]) == 2 for e in progress)
    assert all(e["idle"] == [False, True] for e in progress) and done["idle"] == [False, True]
    assert done["distances"][0] <= 1.0                     # the tracked handle sits on its target
    assert [h["kind"] for h in after["session"]["history"]] == ["start", "drag"]
    assert _log_reason(server, sid) == ["converged"]     # the history record keeps the verdict


def test_draggan_drag_the_image_check_rejects_is_not_converged(server):
    """DragGAN's tracker races to the target while the face stays put (seed 5, 6 px to the right):
    the run calls that tracking_lost, and so must the server and the history."""
    sid = server.create_session(seed=5)["id"]
    page, done, _ = run(_drag(server, sid, [HANDLE], [TARGET], "draggan", {"max_steps": 120}))
    assert done["reason"] == "tracking_lost", done
    # the tracker itself believed it had arrived
    assert done["distances"][0] <= 1.0 and done["steps"] < 120
    assert all(len(e["distances"]) == 1 for e in _progress(page))
    assert _log_reason(server, sid) == ["tracking_lost"]


def test_a_drag_out_of_steps_ends_with_max_steps(server):
    sid = server.create_session(seed=5)["id"]
    page, done, _ = run(_drag(server, sid, [HANDLE], [TARGET], "draggan", {"max_steps": 2}))
    assert done["reason"] == "max_steps" and done["steps"] == 2, done
    assert done["distances"][0] > 1.0 and done["idle"] == [False]
    assert _log_reason(server, sid) == ["max_steps"]


def test_methods_describe_warping_and_per_model_defaults(server):
    with server.client() as client:
        plain = client.get("/api/methods").json()
        tuned = client.get("/api/methods", params={"model": "digiface-dcgan64"}).json()
        unknown = client.get("/api/methods", params={"model": "../../etc/passwd"})
    by_name = {m["name"]: m for m in plain["drag"]}
    tuned_by_name = {m["name"]: m for m in tuned["drag"]}
    assert by_name["warp"]["warps"] is True and by_name["draggan"]["warps"] is False
    assert tuned_by_name["warp"]["warps"] is True and tuned["model"] == "digiface-dcgan64"
    # the default model's tuned settings (a feature blur, a larger lr) differ from the papers'
    from dragwalk.drag import METHODS
    from dragwalk.models import load_model
    gen = load_model("digiface-dcgan64", "cpu")
    for name in ("template", "warp", "draggan"):
        want = METHODS[name].describe(gen)
        assert tuned_by_name[name]["params"]["lr"] == want["defaults"]["lr"]
        assert tuned_by_name[name]["params"]["smooth"] == want["params"]["smooth"]["default"] == 1.0
        assert by_name[name]["params"]["smooth"] == METHODS[name].describe()["params"]["smooth"]["default"]
    assert tuned_by_name["template"]["params"] != by_name["template"]["params"]
    assert unknown.status_code == 400 and unknown.json()["error"]["code"] == "bad_request"


@pytest.mark.serial
def test_preview_drag_sends_the_warped_image_quickly_and_stores_nothing(server):
    """preview_drag renders what the warp method does to the current points as one frame (kind 4):
    no history entry, nothing stored; its latency (request to frame) is printed and checked."""
    import statistics
    import time as _time

    sid = server.create_session(seed=3)["id"]
    with server.client() as client:
        shown = png_array(client.get(f"/api/sessions/{sid}/image.png").content)

    async def scenario():
        async with PageClient(server.ws_url(sid)) as page:
            await page.until(is_type("state"))
            errors = {}
            await page.send(type="preview_drag", method="warp", rid="none")
            errors["no_points"] = await page.until(is_type("error"))
            await page.send(type="set_points", handles=[HANDLE], targets=[TARGET])
            await page.until(lambda e: e["type"] == "state" and e["session"]["points"]["handles"])
            await page.send(type="preview_drag", method="draggan", rid="nowarp")
            errors["no_warp"] = await page.until(is_type("error"))
            await page.send(type="preview_drag", method="warp", params={"max_steps": 99999}, rid="limit")
            errors["limit"] = await page.until(is_type("error"))
            latencies, frames, events = [], [], []
            for i in range(11):
                sent = _time.perf_counter()
                await page.send(type="preview_drag", method="warp", rid=f"p{i}")
                item = await page.receive()
                while not (isinstance(item, tuple) and item[0] == 4):
                    item = await page.receive()
                latencies.append(_time.perf_counter() - sent)
                frames.append(item)
                events.append(await page.until(is_type("preview")))
            opening = next(f for f in page.frames if f[0] == 0)
            return errors, latencies, frames, events, opening

    errors, latencies, frames, events, opening = run(scenario())
    assert errors["no_points"]["code"] == "invalid_points" and errors["no_points"]["rid"] == "none"
    assert errors["no_warp"]["code"] == "bad_request" and "warp" in errors["no_warp"]["message"]
    assert errors["limit"]["code"] == "bad_request" and "max_steps" in errors["limit"]["message"]
    assert all(e["idle"] == [False] and e["method"] == "warp" for e in events)
    assert {e["rid"] for e in events} == {f"p{i}" for i in range(11)}
    preview = np.asarray(Image.open(io.BytesIO(frames[-1][3])).convert("RGB")).astype(np.float32)
    assert frames[-1][2] == 0 and preview.shape == (64, 64, 3)
    # the content moved: the preview is the warped face, not the image the session shows (both JPEG
    # frames of the same quality, so an unchanged image would differ by ~0), and most near the handle
    before = np.asarray(Image.open(io.BytesIO(opening[3])).convert("RGB")).astype(np.float32)
    change = np.abs(preview - before).mean(axis=2)
    near = change[26:42, 24:42].mean()
    print(f"preview change near the drag {near:.2f}, elsewhere {change.mean():.2f}")
    assert near > 4.0 and near > 2 * change.mean()
    steady = latencies[1:]                                  # the first one warms the warp up
    median = statistics.median(steady)
    compute = statistics.median(e["seconds"] for e in events[1:])
    print(f"preview_drag latency over the real server: median {median * 1000:.1f} ms "
          f"(worker compute {compute * 1000:.1f} ms), all {[round(x * 1000, 1) for x in steady]} ms")
    # target: 100 ms on this machine. The worker's part (building the DragRun: 4 forwards of the
    # DCGAN, then JPEG) dominates and grows with other load on the shared CPU; the server's own part
    # (queue, thread hop, websocket) must stay small whatever the load.
    assert median < 0.1 or median - compute < 0.025, (
        f"preview took {median * 1000:.0f} ms (median), {(median - compute) * 1000:.0f} ms outside the worker")
    assert median < 0.5
    with server.client() as client:
        summary = client.get(f"/api/sessions/{sid}").json()
        still = png_array(client.get(f"/api/sessions/{sid}/image.png").content)
        over_http = client.post(f"/api/sessions/{sid}/commands", json={"type": "preview_drag", "method": "warp"})
    assert [h["kind"] for h in summary["history"]] == ["start"] and summary["busy"] is None
    assert np.abs(still - shown).max() == 0                # the session's image did not change
    assert over_http.status_code == 400 and "websocket" in over_http.json()["error"]["message"]


def test_a_drag_supersedes_a_preview_in_flight(server):
    """start_drag right behind preview_drag wins: the preview rendered for the old state is dropped,
    so the page never gets a preview frame in the middle of (or after) the drag's frames."""
    sid = server.create_session(seed=1)["id"]

    async def scenario():
        async with PageClient(server.ws_url(sid)) as page:
            await page.until(is_type("state"))
            await page.send(type="set_points", handles=[HANDLE], targets=[TARGET])
            await page.until(lambda e: e["type"] == "state" and e["session"]["points"]["handles"])
            await page.send(type="preview_drag", method="warp", rid="stale")
            await page.send(type="start_drag", method="warp", params={"max_steps": 40})
            done = await page.until(is_type("done"), timeout=180)
            await page.send(type="ping", rid="end")
            await page.until(is_type("pong"))
            return page, done

    page, done = run(scenario())
    assert done["reason"] in RUN_REASONS
    assert [f[0] for f in page.frames if f[0] == 4] == [], [f[0] for f in page.frames]
    assert not [e for e in page.events if e["type"] == "preview"]


def test_state_rid_cancel_progress_labels_strip_and_upscale(server):
    """The page's set_points comes back with its rid; finding directions reports progress and can be
    cancelled; labels tell reseeds and walks apart; strips and upscaled PNGs are what they say."""
    sid = server.create_session(seed=4)["id"]

    async def scenario():
        async with PageClient(server.ws_url(sid)) as page:
            await page.until(is_type("state"))
            await page.send(type="set_points", handles=[[10, 10]], targets=[[12, 10]], rid="p1")
            confirmed = await page.until(lambda e: e["type"] == "state" and e.get("rid") == "p1")
            await page.send(type="cancel", rid="nothing")
            nothing = await page.until(lambda e: e["type"] == "error" and e.get("rid") == "nothing")
            # a GANSpace run long enough to report progress, then cancelled
            await page.send(type="compute_directions", method="ganspace", params={"samples": 10_000, "seed": 3},
                            rid="slow")
            progress = await page.until(lambda e: e["type"] == "progress" and e["op"] == "directions")
            await page.send(type="cancel", op="directions")
            cancelled = await page.until(lambda e: e["type"] == "done" and e["op"] == "directions")
            await page.send(type="reseed", seed=9, truncation=0.5)
            await page.until(lambda e: e["type"] == "state" and e["session"]["cursor"] == 1)
            await page.send(type="reseed", seed=9, truncation=0.7)
            await page.until(lambda e: e["type"] == "state" and e["session"]["cursor"] == 2)
            await page.send(type="compute_directions", method="sefa", params={"num": 4})
            sefa = await page.until(is_type("directions"))
            await page.send(type="walk", set=sefa["set"], walks=[{"index": 1, "amount": 1.5}], commit=True)
            walked = await page.until(lambda e: e["type"] == "state" and e["session"]["cursor"] == 3)
            frames = len(page.frames)
            await page.send(type="reseed", seed=9, truncation=0.1, preview=True)
            while not any(f[0] == 2 for f in page.frames[frames:]):
                await page.receive()
            return confirmed, nothing, progress, cancelled, walked, sefa, [f for f in page.frames[frames:] if f[0] == 2][0]

    confirmed, nothing, progress, cancelled, walked, sefa, preview = run(scenario())
    assert confirmed["session"]["points"] == {"handles": [[10.0, 10.0]], "targets": [[12.0, 10.0]]}
    assert nothing["code"] == "bad_request" and "running" in nothing["message"]
    assert progress["method"] == "ganspace" and progress["elapsed"] >= 0.9 and progress["estimate"] is None
    assert cancelled["reason"] == "cancelled" and cancelled.get("rid") == "slow"
    history = walked["session"]["history"]
    assert [h["label"] for h in history[1:]] == ["seed 9 · ψ 0.50", "seed 9 · ψ 0.70", "walk sefa 2 +1.5"]
    assert history[3]["walk"] == {"set": sefa["set"], "walks": [{"index": 1, "amount": 1.5}]}
    assert preview[0] == 2
    with server.client() as client:
        after = client.get(f"/api/sessions/{sid}").json()
        assert after["cursor"] == 3 and len(after["history"]) == 4          # a preview frame, no entry
        strip = client.get(f"/api/sessions/{sid}/strip.jpg", params={"set": sefa["set"], "index": 1, "count": 3})
        shown = png_array(client.get(f"/api/sessions/{sid}/image.png").content)
        big = client.get(f"/api/sessions/{sid}/image.png", params={"scale": 8})
        smooth = client.get(f"/api/sessions/{sid}/image.png", params={"scale": 2, "smooth": "true"})
        bad = [client.get(f"/api/sessions/{sid}/image.png", params={"scale": 3}).status_code,
               client.get(f"/api/sessions/{sid}/strip.jpg", params={"set": sefa["set"], "index": 99}).status_code,
               client.get(f"/api/sessions/{sid}/strip.jpg", params={"set": "nope", "index": 0}).status_code,
               client.get(f"/api/sessions/{sid}/strip.jpg", params={"set": sefa["set"], "index": 0,
                                                                     "count": 50}).status_code]
        health = client.get("/api/health").json()
        thumbs = [png_array(client.get(f"/api/sessions/{sid}/image.png", params={"entry": i}).content)
                  for i in (3, 0)]
        bad.append(client.get(f"/api/sessions/{sid}/image.png", params={"entry": 4}).status_code)
    assert np.array_equal(thumbs[0], shown) and np.abs(thumbs[1] - shown).mean() > 10   # entry 0: seed 4
    image = np.asarray(Image.open(io.BytesIO(strip.content)).convert("RGB"), dtype=np.float32)
    assert strip.headers["content-type"] == "image/jpeg" and image.shape == (64, 192, 3)
    assert np.abs(image[:, 64:128] - shown).mean() < 6            # amount 0 is the image shown
    assert np.abs(image[:, :64] - image[:, 128:]).mean() > 2      # -5 and +5 differ
    up = png_array(big.content)
    assert up.shape == (512, 512, 3) and np.array_equal(up[::8, ::8], shown) and np.array_equal(up[7::8, 7::8], shown)
    assert png_array(smooth.content).shape == (128, 128, 3)
    assert bad == [400, 400, 404, 400, 400]
    assert isinstance(health["exports"]["mp4"], bool)
