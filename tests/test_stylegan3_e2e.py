"""Drags, walks and inversion on a (tiny, random-weight) StyleGAN3 model, through the headless
Python API, loaded from a StyleGAN3 network pickle like a user's file."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import sg3_pickles as s3  # noqa: E402

import dragwalk  # noqa: E402
from dragwalk.drag import DragConfig, drag  # not dragwalk.drag: once imported, that name is the package  # noqa: E402
from dragwalk.inversion.losses import psnr  # noqa: E402


@pytest.fixture(scope="module")
def sg3(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sg3e2e")
    data, _ = s3.network_pickle(s3.kwargs(res=32, num_layers=6, channel_base=256, channel_max=16), tmp / "m", seed=7)
    (tmp / "sg3.pkl").write_bytes(data)
    return dragwalk.load_model(str(tmp / "sg3.pkl"))


def test_drag_moves_the_handle_content(sg3):
    latent = sg3.sample(11)
    handles, targets = [(12.0, 16.0)], [(18.0, 16.0)]
    steps = list(drag(sg3, latent, handles, targets, config=DragConfig(method="draggan", max_steps=6, lr=0.01),
                      render_every=3))
    assert len(steps) >= 2 and steps[-1].done
    first, last = steps[0], steps[-1]
    assert last.image is not None and last.image.shape == (1, 3, 32, 32)
    assert last.remaining < first.remaining - 1.0       # tracked handle walked towards the target
    assert last.handles[0][0] > handles[0][0] + 1.0
    assert (last.image - sg3.render(latent)).abs().mean() > 1e-3


def test_walks_along_sefa_directions_change_the_image(sg3):
    directions = dragwalk.compute_directions(sg3, "sefa", num=4)
    latent = sg3.sample(3)
    walked = dragwalk.apply_walks(sg3, latent, [dragwalk.Walk(directions, 0, 3.0)])
    assert walked.code.shape == latent.code.shape
    assert (sg3.render(walked) - sg3.render(latent)).abs().mean() > 1e-3


def test_inversion_of_a_generated_image_improves(sg3):
    target = sg3.render(sg3.sample(21))
    cfg = dragwalk.InversionConfig(steps=16, init_samples=8, restarts=2, lr=0.05)
    result = dragwalk.invert(sg3, target, cfg)
    start = sg3.render(sg3.sample(0))
    assert psnr(sg3.render(result.latent), target) > psnr(start, target) + 1.0


@pytest.mark.slow
def test_server_drags_a_stylegan3_model(tmp_path):
    """The editor serves a StyleGAN3 pickle: a session, a short drag over the websocket, the image."""
    import asyncio
    import io

    from PIL import Image
    from server_harness import PageClient, running_server

    data, _ = s3.network_pickle(s3.kwargs(res=32, num_layers=6, channel_base=256, channel_max=16), tmp_path / "m", seed=7)
    model = tmp_path / "sg3.pkl"
    model.write_bytes(data)
    with running_server(tmp_path, model=str(model)) as server:
        sid = server.create_session(seed=4)["id"]

        async def scenario():
            async with PageClient(server.ws_url(sid)) as page:
                await page.until(lambda e: e.get("type") == "state")
                await page.send(type="set_points", handles=[[12.0, 16.0]], targets=[[17.0, 16.0]])
                await page.send(type="start_drag", params={"max_steps": 3}, rid="d1")
                done = await page.until(lambda e: e.get("type") == "done")
                state = await page.until(lambda e: e.get("type") == "state")
                return page, done, state

        page, done, state = asyncio.run(scenario())
        with server.client() as client:
            png = client.get(f"/api/sessions/{sid}/image.png")
    assert done["op"] == "drag" and done["steps"] >= 1, done
    assert [h["kind"] for h in state["session"]["history"]] == ["start", "drag"]
    frames = [f for f in page.frames if f[0] == 1]
    assert frames and Image.open(io.BytesIO(frames[-1][3])).size == (32, 32)
    assert png.status_code == 200 and Image.open(io.BytesIO(png.content)).size == (32, 32)
