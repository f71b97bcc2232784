"""Photo upload (``POST /api/sessions/photo``): inversion streamed over the websocket, PTI weights
stored with the session, hostile uploads refused. Real server subprocess, default model, few steps."""

from __future__ import annotations

import asyncio
import io
import zlib
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from server_harness import PageClient, running_server


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def face_photo(generator) -> bytes:
    """A 'photo': a face the model made, enlarged to 256 px as a camera picture would be."""
    from dragwalk.imaging import to_pil
    with torch.no_grad():
        image = generator.render(generator.sample(42))
    return png_bytes(to_pil(image).resize((256, 256), Image.BICUBIC))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One server for the module (the first test restarts it: a fresh process on the same store)."""
    with running_server(tmp_path_factory.mktemp("photo")) as srv:
        yield srv


def huge_png_header(width: int, height: int) -> bytes:
    """A tiny file whose header claims a huge image (a decompression bomb's first bytes)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_photo_inversion_with_pti_streams_and_survives_restart(server, face_photo, generator):
    with server.client() as client:
        r = client.post("/api/sessions/photo", files={"file": ("me.png", face_photo, "image/png")},
                        data={"pti": "true", "steps": "4", "pti_steps": "2"})
        assert r.status_code == 201, r.text
        session = r.json()
        assert session["busy"] == "invert" and session["history"][0]["kind"] == "photo"
        sid = session["id"]

        async def watch():
            async with PageClient(server.ws_url(sid)) as page:
                done = await page.until(lambda e: e["type"] == "done" and e["op"] == "invert", timeout=240)
                state = await page.until(lambda e: e["type"] == "state")
                return page, done, state

        page, done, state = asyncio.run(watch())
        # the websocket may connect after a few steps have already run; the rest streams
        stages = {e["stage"] for e in page.events if e["type"] == "progress" and e["op"] == "invert"}
        assert done["reason"] == "converged" and state["session"]["busy"] is None
        assert stages <= {"invert", "pti"}
        before = client.get(f"/api/sessions/{sid}/image.png").content

        # hostile uploads, while the server keeps serving
        r = client.post("/api/sessions/photo", files={"file": ("x.png", b"not an image at all", "image/png")})
        assert r.status_code == 415 and r.json()["error"]["code"] == "unsupported_media"
        r = client.post("/api/sessions/photo", files={"file": ("bomb.png", huge_png_header(20000, 20000), "image/png")})
        assert r.status_code == 413 and "megapixels" in r.json()["error"]["message"]
        r = client.post("/api/sessions/photo", files={"file": ("big.png", b"\x89PNG" + b"0" * (21 * 2**20), "image/png")})
        assert r.status_code == 413
        r = client.post("/api/sessions/photo", content=b"raw", headers={"content-type": "text/plain"})
        assert r.status_code == 415
    server.restart()               # a fresh process: the tuned generator must come from the store
    with server.client() as client:
        again = client.get(f"/api/sessions/{sid}/image.png").content
        summary = client.get(f"/api/sessions/{sid}").json()
        latent_npz = client.get(f"/api/sessions/{sid}/latent.npz").content
    assert summary["history"][0]["kind"] == "photo"
    a = np.asarray(Image.open(io.BytesIO(before)).convert("RGB")).astype(float)
    b = np.asarray(Image.open(io.BytesIO(again)).convert("RGB")).astype(float)
    assert np.abs(a - b).max() == 0
    # and that image is the tuned generator's: the shared model draws the same latent differently
    from dragwalk.imaging import to_uint8
    from dragwalk.latent_io import load_latent
    with torch.no_grad():
        plain = to_uint8(generator.render(load_latent(latent_npz, generator, suffix=".npz"))).astype(float)
    assert np.abs(plain - b).max() > 0


def test_an_inversion_is_cancelled_over_the_protocol_and_keeps_its_fit(server, face_photo):
    with server.client() as client:
        r = client.post("/api/sessions/photo", files={"file": ("me.png", face_photo, "image/png")},
                        data={"steps": "2000"})
        assert r.status_code == 201, r.text
        sid = r.json()["id"]

        async def cancel():
            async with PageClient(server.ws_url(sid)) as page:
                await page.until(lambda e: e["type"] == "progress" and e["op"] == "invert" and e["step"] >= 3,
                                 timeout=120)
                await page.send(type="cancel", op="invert", rid="stop")
                done = await page.until(lambda e: e["type"] == "done" and e["op"] == "invert", timeout=60)
                state = await page.until(lambda e: e["type"] == "state")
                return done, state

        done, state = asyncio.run(cancel())
        summary = client.get(f"/api/sessions/{sid}").json()
    assert done["reason"] == "cancelled" and 3 <= done["steps"] < 2000
    assert state["session"]["busy"] is None and summary["busy"] is None
    assert summary["history"][0]["kind"] == "photo"
