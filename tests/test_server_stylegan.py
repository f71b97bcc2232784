"""The server on a tiny conditional, non-square StyleGAN2 (32 x 16 px portrait, random weights, own
format): per-session settings, and width and height apart end to end.

Two sessions share one cached model with different classes and noise modes and drag at the same
time; each ends exactly where the same drag, replayed alone from its edit log on a fresh copy of
the model, ends, and each keeps its own settings. Bad settings are refused with a clear error and
change nothing. On the portrait model points, masks, frames, exports, walks and the edit log
all use its 16 x 32 size.
"""

from __future__ import annotations

import asyncio
import io

import numpy as np
import pytest
import torch
from PIL import Image

from server_harness import PageClient, running_server

from dragwalk.models import Settings, load_model, save_model
from dragwalk.models.stylegan2 import StyleGAN2Generator
from dragwalk.server.replay import replay_log

C_DIM = 3


H, W = 32, 16


def tiny_conditional(seed: int = 5) -> StyleGAN2Generator:
    """A 32 x 16 px (height x width) conditional StyleGAN2 whose noise inputs and w_avg matter."""
    torch.manual_seed(seed)
    model = StyleGAN2Generator(z_dim=16, c_dim=C_DIM, w_dim=16, img_resolution=32,
                               mapping_kwargs=dict(num_layers=2),
                               synthesis_kwargs=dict(channel_base=256, channel_max=16, init_res=(4, 2)),
                               name="cond32x16")
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("noise_strength"):
                param.fill_(0.7)
        model.mapping.w_avg.normal_()
    return model.eval().requires_grad_(False)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return save_model(tiny_conditional(), tmp_path_factory.mktemp("cond") / "cond32.safetensors")


@pytest.fixture(scope="module")
def server(tmp_path_factory, model_path):
    with running_server(tmp_path_factory.mktemp("srv"), model=str(model_path)) as srv:
        yield srv


def is_type(kind):
    return lambda e: e.get("type") == kind


A = {"class_index": 1}
B = {"class_index": 2, "noise_mode": "random", "noise_seed": 7}
DRAG = {"max_steps": 4}
HANDLE, TARGET = [12.0, 14.0], [15.0, 14.0]


def test_models_list_classes_and_noise_modes(server):
    with server.client() as client:
        models = client.get("/api/models").json()
    ours = [m for m in models if m["c_dim"] == C_DIM]
    assert ours and ours[0]["noise_modes"] == ["const", "random", "none"]
    assert (ours[0]["height"], ours[0]["width"], ours[0]["resolution"]) == (H, W, 32)


def test_bad_settings_are_refused_and_nothing_is_stored(server):
    with server.client() as client:
        before = client.get("/api/health").json()
        for settings, words in (({"class_index": C_DIM}, "class index 3 outside 0..2"),
                                ({"noise_mode": "loud"}, "noise_mode"),
                                ({"truncation_cutoff": 65}, "truncation_cutoff"),
                                ({"class_index": 0, "truncation_cutoff": 64}, "truncation cutoff 64 outside"),
                                ({"noise_seed": -1}, "noise_seed"),
                                ({"colour": 1}, "colour")):
            response = client.post("/api/sessions", json={"seed": 1, "settings": settings})
            assert response.status_code == 400, (settings, response.text)
            assert words in response.json()["error"]["message"], response.text
        assert client.get("/api/health").json().get("sessions") == before.get("sessions")


def test_two_sessions_drag_at_once_without_leaking_settings(server, model_path):
    sa = server.create_session(seed=3, settings=A)
    sb = server.create_session(seed=3, settings=B)
    assert sa["settings"] == {**Settings().to_dict(), **A}
    assert sb["settings"] == {**Settings().to_dict(), **B}

    async def drag(sid, rid):
        async with PageClient(server.ws_url(sid)) as page:
            await page.until(is_type("state"))
            await page.send(type="set_points", handles=[HANDLE], targets=[TARGET])
            await page.until(is_type("state"))
            await page.send(type="start_drag", method="draggan", params=DRAG, rid=rid)
            done = await page.until(lambda e: e.get("type") in ("done", "error"), timeout=120)
            assert done["type"] == "done", done
            state = await page.until(is_type("state"))
            return done, state

    async def both():
        return await asyncio.gather(drag(sa["id"], "a"), drag(sb["id"], "b"))

    (done_a, state_a), (done_b, state_b) = asyncio.run(both())
    assert done_a["steps"] >= 1 and done_b["steps"] >= 1
    assert state_a["session"]["settings"]["class_index"] == 1
    assert state_b["session"]["settings"] == {**Settings().to_dict(), **B}

    alone = load_model(str(model_path))              # a fresh copy: nothing another session set
    with server.client() as client:
        for sid, settings in ((sa["id"], A), (sb["id"], B)):
            log = client.get(f"/api/sessions/{sid}/log.json").json()
            assert log["start"]["settings"] == {**Settings().to_dict(), **settings}
            final, reports = replay_log(alone, log)
            assert [r.kind for r in reports] == ["drag"] and reports[0].how == "recomputed"
            assert reports[0].deviation is not None and reports[0].deviation <= 1e-5, reports
            assert final.settings == Settings.from_dict({**Settings().to_dict(), **settings})
            # the server's image is the one its latent (with its own settings) renders alone
            png = client.get(f"/api/sessions/{sid}/image.png").content
            served = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(np.float32)
            with torch.no_grad():
                mine = ((alone.render(final)[0].permute(1, 2, 0) + 1) * 127.5).clamp(0, 255).numpy()
            assert np.abs(served - mine).max() <= 1.0
    # the two sessions really differ: same seed, other class and noise -> other image
    assert (final.code - replay_log(alone, {**log, "start": {"seed": 3, "settings": A},
                                            "operations": []})[0].code).abs().max() > 1e-3


def test_set_noise_and_reseed_with_a_class_over_the_socket(server):
    sid = server.create_session(seed=4, settings=A)["id"]

    async def scenario():
        async with PageClient(server.ws_url(sid)) as page:
            await page.until(is_type("state"))
            await page.send(type="set_noise", noise_mode="random", noise_seed=11, rid="n1")
            noisy = await page.until(lambda e: is_type("state")(e) and len(e["session"]["history"]) == 2)
            await page.send(type="set_noise", noise_mode="random", noise_seed=-3, rid="n2")
            bad = await page.until(is_type("error"))
            await page.send(type="reseed", seed=4, settings={"class_index": 2}, rid="r1")
            reseeded = await page.until(lambda e: is_type("state")(e) and len(e["session"]["history"]) == 3)
            await page.send(type="reseed", seed=4, settings={"class_index": 9}, rid="r2")
            bad_class = await page.until(is_type("error"))
            await page.send(type="undo", rid="u")
            undone = await page.until(lambda e: is_type("state")(e) and e["session"]["cursor"] == 1)
            return noisy, bad, reseeded, bad_class, undone

    noisy, bad, reseeded, bad_class, undone = asyncio.run(scenario())
    assert noisy["session"]["settings"]["noise_mode"] == "random" and noisy["session"]["settings"]["noise_seed"] == 11
    assert [h["kind"] for h in noisy["session"]["history"]] == ["start", "noise"]
    assert bad["rid"] == "n2" and "noise_seed" in bad["message"]
    # a reseed keeps the session's noise, changes the class it names
    assert reseeded["session"]["settings"] == {"class_index": 2, "noise_mode": "random", "noise_seed": 11,
                                               "truncation_cutoff": None}
    assert bad_class["rid"] == "r2" and "class index 9 outside 0..2" in bad_class["message"]
    assert len(reseeded["session"]["history"]) == 3
    assert undone["session"]["settings"]["class_index"] == 1
    with server.client() as client:
        log = client.get(f"/api/sessions/{sid}/log.json").json()
    assert [op["kind"] for op in log["operations"]] == ["noise"]
    assert log["operations"][0]["noise_seed"] == 11


def _png_b64(array: np.ndarray) -> str:
    import base64
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def test_portrait_points_masks_frames_walks_and_exports(server, model_path):
    summary = server.create_session(seed=6)
    sid = summary["id"]
    assert (summary["height"], summary["width"]) == (H, W)
    mask = np.zeros((H, W), dtype=np.uint8)
    mask[8:28, 2:14] = 255

    async def scenario():
        async with PageClient(server.ws_url(sid)) as page:
            await page.until(is_type("state"))
            await page.send(type="set_points", handles=[[16.0, 10.0]], targets=[[12.0, 10.0]], rid="wide")
            wide = await page.until(is_type("error"))
            await page.send(type="set_mask", mask=_png_b64(mask.T.copy()), rid="turned")
            turned = await page.until(is_type("error"))
            await page.send(type="set_mask", mask=_png_b64(mask), rid="m")
            await page.until(lambda e: is_type("state")(e) and e["session"]["has_mask"])
            await page.send(type="set_points", handles=[[8.0, 20.0]], targets=[[10.0, 24.0]], rid="p")
            await page.until(lambda e: is_type("state")(e) and e["session"]["points"]["handles"])
            await page.send(type="start_drag", params={"max_steps": 2}, rid="d")
            done = await page.until(lambda e: e.get("type") in ("done", "error"), timeout=120)
            await page.send(type="compute_directions", method="sefa", params={"num": 3}, rid="s")
            dirs = await page.until(lambda e: e.get("type") in ("directions", "error"), timeout=120)
            await page.send(type="walk", set=dirs.get("set", ""), walks=[{"index": 0, "amount": 2.0}],
                            commit=True, rid="w")
            walked = await page.until(lambda e: is_type("state")(e) and len(e["session"]["history"]) == 3)
            return page, wide, turned, done, dirs, walked

    page, wide, turned, done, dirs, walked = asyncio.run(scenario())
    assert wide["rid"] == "wide" and "x must be within 0..15" in wide["message"]
    assert turned["rid"] == "turned" and "mask must be 16x32" in turned["message"]
    assert done["type"] == "done" and done["op"] == "drag", done
    assert dirs["type"] == "directions", dirs
    assert [h["kind"] for h in walked["session"]["history"]] == ["start", "drag", "walk"]
    frames = [Image.open(io.BytesIO(f[3])) for f in page.frames]
    assert frames and all(f.size == (W, H) for f in frames)
    with server.client() as client:
        png = Image.open(io.BytesIO(client.get(f"/api/sessions/{sid}/image.png?scale=2").content))
        assert png.size == (2 * W, 2 * H)
        gif = client.get(f"/api/sessions/{sid}/animation.gif")
        assert gif.status_code == 200 and Image.open(io.BytesIO(gif.content)).size == (128, 256)   # aspect kept
        latent = client.get(f"/api/sessions/{sid}/latent.npz")
        assert latent.status_code == 200
        log = client.get(f"/api/sessions/{sid}/log.json").json()
    final, reports = replay_log(load_model(str(model_path)), log)
    assert [r.kind for r in reports] == ["drag", "walk"]
    assert all(r.deviation is not None and r.deviation <= 1e-5 for r in reports), reports
