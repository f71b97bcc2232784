"""The typed HTTP API (``/openapi.json``) and the websocket protocol's JSON Schema
(``docs/protocol.schema.json``), checked against a real server subprocess on the default model."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from server_harness import PageClient, running_server

ROOT = Path(__file__).resolve().parents[1]
HANDLE, TARGET = [30.0, 40.0], [33.0, 40.0]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with running_server(tmp_path_factory.mktemp("api")) as srv:
        yield srv


@pytest.fixture(scope="module")
def openapi(server) -> dict:
    with server.client() as client:
        return client.get("/openapi.json").json()


@pytest.fixture(scope="module")
def protocol_schema() -> dict:
    return json.loads((ROOT / "docs" / "protocol.schema.json").read_text())


# ---------------------------------------------------------------------------- HTTP API

def test_openapi_validates_and_describes_every_route(openapi):
    from openapi_spec_validator import validate
    validate(openapi)
    routes = [(path, method, op) for path, item in openapi["paths"].items() for method, op in item.items()]
    assert len(routes) >= 13
    for path, method, op in routes:
        ok = [code for code in op["responses"] if code.startswith("2")]
        assert ok, f"{method} {path} documents no success response"
        assert any("content" in op["responses"][code] or code == "204" for code in ok), f"{method} {path}"
        assert "422" not in op["responses"], f"{method} {path}: validation errors are 400s here"
        errors = {code for code in op["responses"] if code[0] in "45"}
        assert {"401", "403", "500"} <= errors, f"{method} {path} lacks the common errors"
        for code in errors:
            ref = op["responses"][code]["content"]["application/json"]["schema"]["$ref"]
            assert ref.endswith("/ErrorResponse")
        if method == "post":
            assert "requestBody" in op, f"{method} {path} has no request body schema"
    schemas = openapi["components"]["schemas"]
    assert len(schemas) > 20
    photo = openapi["paths"]["/api/sessions/photo"]["post"]["requestBody"]["content"]
    form = schemas[photo["multipart/form-data"]["schema"]["$ref"].rsplit("/", 1)[1]]
    assert set(form["properties"]) == {"file", "pti", "model", "steps", "pti_steps"}
    assert form["required"] == ["file"]
    create = openapi["paths"]["/api/sessions"]["post"]
    assert create["responses"]["201"]["content"]["application/json"]["schema"]["$ref"].endswith("/SessionSummary")
    command = openapi["paths"]["/api/sessions/{session_id}/commands"]["post"]["requestBody"]
    assert command["content"]["application/json"]["schema"]["$ref"].endswith("/ClientMessage")


def _documented_codes() -> dict[str, int | None]:
    """The error codes docs/PROTOCOL.md names: its table (code -> HTTP status) and the
    websocket's additions (no status)."""
    text = (ROOT / "docs" / "PROTOCOL.md").read_text()
    table = {code: int(status) for code, status in re.findall(r"^\| `([a-z_]+)` \| (\d{3}) \|", text, re.M)}
    ws = re.search(r"\(codes as for HTTP, plus (.*)\) \|$", text, re.M).group(1)
    return {**table, **{code: None for code in re.findall(r"`([a-z_]+)` \(", ws)}}


def test_every_documented_error_code_is_in_the_schema(openapi):
    from dragwalk.server.errors import HTTP_STATUS
    documented = _documented_codes()
    assert len(documented) >= 17
    enum = set(openapi["components"]["schemas"]["ErrorDetail"]["properties"]["code"]["enum"])
    assert set(documented) == enum == set(HTTP_STATUS)
    for code, status in documented.items():
        assert status is None or HTTP_STATUS[code] == status, (code, status)
    # every code a route can answer is named under its HTTP status on at least one route
    named: dict[str, set[str]] = {}
    for item in openapi["paths"].values():
        for op in item.values():
            for status, response in op["responses"].items():
                for code in re.findall(r"[a-z_]+", response.get("description", "").removeprefix("error codes:")):
                    named.setdefault(code, set()).add(int(status))
    for code in (code for code, status in documented.items() if status is not None):
        assert HTTP_STATUS[code] in named.get(code, set()), f"{code} is not documented on any route"


def test_live_answers_match_their_schema_and_limits_hold(server, openapi):
    from jsonschema import Draft202012Validator
    schemas = openapi["components"]["schemas"]

    def check(name: str, value) -> None:
        root = {"$ref": f"#/components/schemas/{name}", "components": {"schemas": schemas}}
        Draft202012Validator(root).validate(value)

    with server.client() as client:
        created = client.post("/api/sessions", json={"seed": 4, "truncation": 0.7})
        assert created.status_code == 201
        check("SessionSummary", created.json())
        assert created.json()["history"][0].keys() == {"index", "kind", "label"}   # nothing added
        check("Health", client.get("/api/health").json())
        check("Methods", client.get("/api/methods").json())
        assert "model" not in client.get("/api/methods").json()
        sid = created.json()["id"]
        reply = client.post(f"/api/sessions/{sid}/commands", json={"type": "ping"})
        check("CommandReply", reply.json())
        assert reply.json()["reply"] == {"type": "pong"}
        # errors carry their code, with the status the schema gives it
        for response, code, status in (
                (client.post("/api/sessions", json={"seed": -1}), "bad_request", 400),
                (client.post("/api/sessions", content=b'{"seed": NaN}',
                             headers={"content-type": "application/json"}), "bad_request", 400),
                (client.post("/api/sessions", content=b'{"seed": 1}', headers={"content-type": "text/plain"}),
                 "unsupported_media", 415),
                (client.post("/api/sessions", content=b"[" * 5000 + b"]" * 5000,
                             headers={"content-type": "application/json"}), "bad_request", 400),
                (client.post("/api/sessions", json={"seed": 1, "pad": "x" * 70_000}), "too_large", 413),
                (client.post(f"/api/sessions/{sid}/commands", json={"type": "walk", "set": "x" * (2 << 20),
                                                                  "walks": []}), "too_large", 413),
                (client.post("/api/sessions/photo", data={"pti": "false"},
                             files={"nofile": ("a.txt", b"x", "text/plain")}), "bad_request", 400),
                (client.post("/api/sessions/photo", files={"file": ("a.png", b"x", "image/png")},
                             data={"steps": "0"}), "bad_request", 400),
                (client.post("/api/sessions/upload", content=b"x", headers={"content-type": "text/plain"}),
                 "unsupported_media", 415)):
            assert response.status_code == status, (code, response.text)
            check("ErrorResponse", response.json())
            assert response.json()["error"]["code"] == code

        # an upload over the cap is refused by its declared length and, without one, while streaming
        big = b"0" * (21 * 1024 * 1024)
        r = client.post("/api/sessions/upload", files={"file": ("big.npy", big, "application/octet-stream")})
        assert r.status_code == 413 and r.json()["error"]["code"] == "too_large"

        def chunks():
            boundary = b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.npy\"\r\n\r\n"
            yield boundary
            for _ in range(21):
                yield b"0" * (1024 * 1024)
            yield b"\r\n--b--\r\n"
        r = client.post("/api/sessions/upload", content=chunks(),
                        headers={"content-type": "multipart/form-data; boundary=b"})
        assert r.status_code == 413 and r.json()["error"]["code"] == "too_large"
        assert client.get("/api/health").status_code == 200


# ---------------------------------------------------------------------------- websocket schema

def test_protocol_schema_file_matches_the_models(tmp_path):
    from dragwalk.server.protocol_schema import check, render
    assert check() is None
    stale = tmp_path / "schema.json"
    stale.write_text(render().replace('"maximum": 8', '"maximum": 9', 1))
    assert "differs" in check(stale)
    assert "protocol.schema.json" in (ROOT / "docs" / "PROTOCOL.md").read_text()


def _mask_b64() -> str:
    mask = np.zeros((64, 64), np.uint8)
    mask[20:50, 15:50] = 255
    buffer = io.BytesIO()
    Image.fromarray(mask).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def _photo() -> bytes:
    from dragwalk.imaging import to_pil
    from dragwalk.models import load_model
    import torch
    gen = load_model("digiface-dcgan64", "cpu")
    with torch.no_grad():
        image = to_pil(gen.render(gen.sample(42))).resize((128, 128))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_every_message_type_through_the_server_validates(server, protocol_schema):
    from jsonschema import Draft202012Validator
    defs = {"$defs": protocol_schema["$defs"]}
    client_schema = Draft202012Validator({**defs, "$ref": "#/$defs/ClientMessage"})
    event_schema = Draft202012Validator({**defs, "$ref": "#/$defs/ServerEvent"})
    sid = server.create_session(seed=6)["id"]
    with server.client() as client:
        photo = client.post("/api/sessions/photo", files={"file": ("p.png", _photo(), "image/png")},
                            data={"steps": "3"})
        assert photo.status_code == 201, photo.text
    sent: list[dict] = []

    async def scenario():
        async with PageClient(server.ws_url(photo.json()["id"]), hello=False) as watcher:
            await watcher.until(lambda e: e["type"] == "done" and e["op"] == "invert", timeout=240)
        async with PageClient(server.ws_url(sid), hello=False) as page:
            async def send(**message):
                sent.append(message)
                await page.send(**message)

            async def ask(until, **message):
                await send(**message)
                return await page.until(until)

            await ask(lambda e: e["type"] == "state", type="hello", version=1, credits=2, rid="h")
            await ask(lambda e: e["type"] == "error", type="hello", version=7)
            await ask(lambda e: e["type"] == "pong", type="ping", rid=1)
            await ask(lambda e: e["type"] == "state", type="set_mask", mask=_mask_b64())
            await ask(lambda e: e["type"] == "state", type="set_mask", mask=None)
            await ask(lambda e: e["type"] == "state", type="set_points", handles=[HANDLE], targets=[TARGET])
            await ask(lambda e: e["type"] == "preview", type="preview_drag", rid="p")
            await send(type="start_drag", params={"max_steps": 30})
            await page.until(lambda e: e["type"] == "progress")
            await send(type="set_lr", lr=0.01)
            await send(type="stop_drag")
            await page.until(lambda e: e["type"] == "done")
            await send(type="start_drag", params={"max_steps": 30})
            await page.until(lambda e: e["type"] == "progress")
            await ask(lambda e: e["type"] == "done", type="cancel", op="drag")
            sets = await ask(lambda e: e["type"] == "directions", type="compute_directions", method="sefa",
                             params={"num": 4})
            await send(type="walk", set=sets["set"], walks=[{"index": 0, "amount": 2.0}], commit=True)
            await page.until(lambda e: e["type"] == "state")
            await ask(lambda e: e["type"] == "state", type="reseed", seed=8, truncation=0.8)
            await ask(lambda e: e["type"] == "state", type="set_noise", noise_mode="const")
            for kind in ("undo", "redo"):
                await ask(lambda e: e["type"] == "state", type=kind)
            await ask(lambda e: e["type"] == "state", type="goto", index=0)
            await send(type="frame")
            while not any(f[0] == 0 for f in page.frames[-1:]):
                await page.receive()
            await send(type="compute_directions", method="ganspace", params={"num": 4, "samples": 10000, "seed": 3})
            # a second passes before the first progress event: cancel once it says it runs
            await page.until(lambda e: e["type"] == "progress" and e["op"] == "directions", timeout=120)
            await ask(lambda e: e["type"] == "done" and e["op"] == "directions", type="cancel", op="directions")
            await ask(lambda e: e["type"] == "error", type="nope")
            await ask(lambda e: e["type"] == "error", type="set_points", handles=[[1e9, 0]], targets=[[0, 0]])
            await ask(lambda e: e["type"] == "pong", type="ping")
            for frame in page.frames:
                sent.append({"type": "ack", "seq": frame[1]})      # PageClient acked each one
            return watcher.events + page.events

    events = asyncio.run(scenario())
    from dragwalk.server.messages import TYPES
    assert {m["type"] for m in sent} == set(TYPES) | {"nope"}
    for message in sent:
        if message["type"] != "nope":
            client_schema.validate(message)
    assert not client_schema.is_valid({"type": "nope"})
    for event in events:
        event_schema.validate(event)
    seen = {(e["type"], e.get("op")) for e in events}
    assert seen >= {("state", None), ("progress", "drag"), ("progress", "invert"), ("done", "drag"),
                    ("done", "invert"), ("preview", "drag"), ("directions", None), ("error", None),
                    ("pong", None), ("done", "directions"), ("progress", "directions")}, seen
    # the schema is not vacuous: a broken event is refused
    assert not event_schema.is_valid({"type": "progress", "op": "drag", "step": "one"})
    assert not event_schema.is_valid({"type": "done", "op": "drag", "reason": "finished", "steps": 1})
    assert not event_schema.is_valid({"type": "pong", "extra": 1})
