"""The HTTP API of docs/PROTOCOL.md: health, models, sessions, uploads and exports."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import Field, ValidationError

from ..latent_io import latent_to_dict, latent_to_npz_bytes
from .errors import ApiError
from .hub import Hub
from .limits import parse_json, require_json
from .session import SessionDocument
from .uploads import SeedStart, document_from_upload, parse_upload_json, sniff_suffix, validation_message

router = APIRouter(prefix="/api")


class CreateSession(SeedStart):
    """Body of ``POST /api/sessions``: a seeded start, optionally on another model."""

    model: str | None = Field(default=None, max_length=200)


def hub_of(request: Request) -> Hub:
    return request.app.state.hub


def client_key(request: Request) -> str:
    """The address rate limits count against."""
    return request.client.host if request.client else "unknown"


async def read_json(request: Request, limit: int) -> Any:
    """The request body as JSON (declared ``application/json``), refusing more than ``limit``
    bytes while reading and nesting beyond the depth bound."""
    body = await read_body(request, limit)
    require_json(request.headers.get("content-type"))
    return parse_json(body, "body")


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError("too_large", f"request body larger than {limit} bytes")
    chunks = bytearray()
    async for chunk in request.stream():
        chunks += chunk
        if len(chunks) > limit:
            raise ApiError("too_large", f"request body larger than {limit} bytes")
    return bytes(chunks)


#: bytes handed to the multipart parser at a time
_FORM_CHUNK = 64 * 1024


async def read_form(request: Request, limit: int) -> Any:
    """A multipart form read with a size cap (the body is counted before it is parsed)."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise ApiError("unsupported_media", "expected multipart/form-data with a 'file' field")
    body = await read_body(request, limit)
    pieces = [body[i:i + _FORM_CHUNK] for i in range(0, len(body), _FORM_CHUNK)] or [b""]

    async def receive() -> dict:
        # small pieces: the parser's Python work is split, so the GIL changes hands between them
        if not pieces:
            return {"type": "http.disconnect"}
        return {"type": "http.request", "body": pieces.pop(0), "more_body": bool(pieces)}

    async def parse() -> Any:
        return await Request(request.scope, receive).form(max_files=1, max_fields=8)

    try:    # parsed in a thread with its own loop: 20 MB of multipart is seconds of Python work
        return await asyncio.get_running_loop().run_in_executor(None, asyncio.run, parse())
    except Exception as exc:  # noqa: BLE001 - a malformed multipart body
        raise ApiError("bad_request", f"cannot read the form: {exc}") from None


@router.get("/health")
async def health(request: Request) -> dict[str, Any]:
    return hub_of(request).health()


@router.get("/models")
async def models(request: Request) -> list[dict[str, Any]]:
    return await hub_of(request).models()


@router.post("/sessions", status_code=201)
async def create_session(request: Request) -> JSONResponse:
    hub = hub_of(request)
    data = await read_json(request, 64 * 1024)
    try:
        body = CreateSession.model_validate(data)
    except ValidationError as exc:
        raise ApiError("bad_request", validation_message(exc)) from None
    hub.admit_new_session(client_key(request))
    live = await hub.create(body.model, body.seed, body.truncation, body.space, body.settings)
    return JSONResponse(live.summary(), status_code=201)


@router.post("/sessions/upload", status_code=201)
async def upload_session(request: Request) -> JSONResponse:
    """A session from an uploaded latent (.npz/.json/.npy) or edit log (.json)."""
    hub = hub_of(request)
    form = await read_form(request, hub.settings.limits.upload_bytes)
    upload = form.get("file")
    if upload is None or isinstance(upload, str):
        raise ApiError("bad_request", "the form needs a 'file' field")
    model = form.get("model")
    if model is not None and (not isinstance(model, str) or len(model) > 200):
        raise ApiError("bad_request", "model must be a name of at most 200 characters")
    hub.admit_new_session(client_key(request))
    data = await upload.read()
    suffix = sniff_suffix(upload.filename, data)
    parsed: Any = None
    if suffix == ".json":       # off the event loop: a 20 MB file takes a while to parse
        parsed = await asyncio.get_running_loop().run_in_executor(None, parse_upload_json, data)
    named = parsed.get("model") if isinstance(parsed, dict) and isinstance(parsed.get("model"), str) else None
    model_name = str(model or named or hub.settings.model)
    gen = await hub.generator(model_name)
    session_id = hub.new_id()
    doc = await hub.scheduler.call(
        lambda: document_from_upload(session_id, model_name, gen, data, suffix, parsed, hub.settings.limits),
        name="read-upload")
    live = await hub.adopt(doc, gen)
    return JSONResponse(live.summary(), status_code=201)


@router.get("/sessions/{session_id}")
async def get_session(session_id: str, request: Request) -> dict[str, Any]:
    return (await hub_of(request).get(session_id)).summary()


@router.delete("/sessions/{session_id}", status_code=204)
async def delete_session(session_id: str, request: Request) -> Response:
    await hub_of(request).delete(session_id)
    return Response(status_code=204)


#: the upscales `image.png?scale=` offers (the model's pixels are few: 64 px for the default)
SCALES = (1, 2, 4, 8)


@router.get("/sessions/{session_id}/image.png")
async def image_png(session_id: str, request: Request, scale: int = 1, smooth: bool = False,
                    entry: int | None = None) -> Response:
    """The current image (or history entry ``entry``'s: the history's thumbnails); ``scale``
    2/4/8 upscales it, nearest (pixels stay sharp) or ``smooth``."""
    if scale not in SCALES:
        raise ApiError("bad_request", f"scale must be one of {', '.join(map(str, SCALES))}")
    hub = hub_of(request)
    live = await hub.get(session_id)
    if entry is not None and not 0 <= entry < len(live.doc.history):
        raise ApiError("bad_request", f"no history entry {entry} (there are {len(live.doc.history)})")
    latent = None if entry is None else live.doc.history[entry].latent
    png = await hub.image(live, "PNG", latent)
    if scale > 1:
        import io

        from PIL import Image
        image = Image.open(io.BytesIO(png))
        image = image.resize((image.width * scale, image.height * scale),
                             Image.Resampling.LANCZOS if smooth else Image.Resampling.NEAREST)
        out = io.BytesIO()
        image.save(out, format="PNG")
        png = out.getvalue()
    return Response(png, media_type="image/png", headers={"Cache-Control": "no-store"})


@router.get("/sessions/{session_id}/strip.jpg")
async def direction_strip(session_id: str, request: Request, set: str, index: int, amount: float = 5.0,
                          count: int = 5) -> Response:
    """A preview strip of one direction of a set in use (docs/PROTOCOL.md)."""
    if not 2 <= count <= 9 or not 0 < amount <= 100 or len(set) > 128:
        raise ApiError("bad_request", "strip: count 2-9, amount in (0, 100], set id up to 128 characters")
    hub = hub_of(request)
    live = await hub.get(session_id)
    jpeg = await request.app.state.editor.strip(live, set, index, amount, count, request.is_disconnected)
    if jpeg is None:
        return Response(status_code=204)        # the page stopped waiting for it
    return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "no-store"})


@router.get("/sessions/{session_id}/latent.{ext}")
async def latent_file(session_id: str, ext: str, request: Request) -> Response:
    live = await hub_of(request).get(session_id)
    latent, model = live.doc.current, live.doc.model
    disposition = {"Content-Disposition": f'attachment; filename="{session_id}.{ext}"'}
    if ext == "npz":
        return Response(latent_to_npz_bytes(latent, model), media_type="application/octet-stream",
                        headers=disposition)
    if ext == "json":
        return JSONResponse(latent_to_dict(latent, model), headers=disposition)
    if ext == "npy":
        if latent.offsets:
            raise ApiError("bad_request", "this latent has spatial offsets a .npy cannot hold; use .npz or .json")
        import io

        import numpy as np
        buffer = io.BytesIO()
        np.save(buffer, latent.code[0].detach().cpu().float().numpy())
        return Response(buffer.getvalue(), media_type="application/octet-stream", headers=disposition)
    raise ApiError("not_found", "latent exports are .npz, .json or .npy")


@router.get("/sessions/{session_id}/log.json")
async def edit_log(session_id: str, request: Request) -> JSONResponse:
    live = await hub_of(request).get(session_id)
    return JSONResponse(live.doc.edit_log(),
                        headers={"Content-Disposition": f'attachment; filename="{session_id}-log.json"'})


@router.get("/sessions/{session_id}/animation.{ext}")
async def animation(session_id: str, ext: str, request: Request) -> Response:
    from .exports import ExportUnavailable, gif_bytes, mp4_bytes
    hub = hub_of(request)
    live = await hub.get(session_id)
    if ext not in ("gif", "mp4"):
        raise ApiError("not_found", "animations are .gif or .mp4")
    frames = list(live.animation)
    if not frames:
        raise ApiError("not_found", "no drag has run in this session since the server started")
    encode = gif_bytes if ext == "gif" else mp4_bytes
    try:
        data = await asyncio.get_running_loop().run_in_executor(None, encode, frames)
    except ExportUnavailable as exc:
        raise ApiError("unavailable", str(exc)) from None
    return Response(data, media_type="image/gif" if ext == "gif" else "video/mp4",
                    headers={"Content-Disposition": f'attachment; filename="{session_id}-drag.{ext}"'})


@router.get("/methods")
async def methods(request: Request, model: str | None = None) -> dict[str, Any]:
    """Drag and direction methods of this build, with their parameters.

    With ``?model=NAME`` the drag defaults are the ones tuned for that model (the model is loaded if
    it is not yet); without, the methods' own (papers') defaults.
    """
    out: dict[str, Any] = {"drag": [], "directions": []}
    if model is not None:
        if len(model) > 200:
            raise ApiError("bad_request", "model name too long")
        out["model"] = model
    generator = await hub_of(request).generator(model) if model is not None else None
    from .. import directions as dirs
    from ..directions.ranges import describe_ranges
    from ..drag import DEFAULT_METHOD
    from ..drag import METHODS as DRAG_METHODS
    for name, cls in DRAG_METHODS.items():
        info = cls.describe(generator)
        out["drag"].append({"name": name, "label": info["label"], "warps": cls.warps,
                            "default": name == DEFAULT_METHOD,
                            "params": {**info["defaults"], **{k: v["default"] for k, v in info["params"].items()}},
                            "details": info})
    for name, entry in dirs.METHODS.items():
        out["directions"].append({"name": name, "label": entry["label"], "description": entry["description"],
                                  "needs_mask": bool(entry["needs_mask"]),
                                  "needs_labels": bool(entry["needs_labels"]), "params": entry["params"],
                                  "ranges": describe_ranges(name)})
    return out


@router.post("/sessions/{session_id}/commands")
async def command(session_id: str, request: Request) -> JSONResponse:
    """One websocket command over HTTP (no drags: they stream, use the websocket)."""
    from .messages import MessageError, parse_message
    hub = hub_of(request)
    live = await hub.get(session_id)
    body = await read_body(request, hub.settings.limits.message_bytes)
    require_json(request.headers.get("content-type"))
    try:
        msg = parse_message(body, hub.settings.limits.message_bytes)
    except MessageError as exc:
        raise ApiError(exc.code if exc.code != "invalid_message" else "bad_request", exc.message) from None
    reply = await request.app.state.editor.handle(live, msg, None, http=True)
    return JSONResponse({"reply": reply, "session": live.summary()})


@router.post("/sessions/photo", status_code=201)
async def photo_session(request: Request) -> JSONResponse:
    """A session from a photo: inverted step by step, progress on the websocket."""
    from .ops_base import _engine
    hub = hub_of(request)
    inversion = _engine("inversion")
    form = await read_form(request, hub.settings.limits.upload_bytes)
    upload = form.get("file")
    if upload is None or isinstance(upload, str):
        raise ApiError("bad_request", "the form needs a 'file' field with the photo")
    hub.admit_new_session(client_key(request))
    data = await upload.read()
    pti = str(form.get("pti", "false")).lower() in ("1", "true", "yes", "on")
    model = form.get("model")
    gen = await hub.generator(str(model) if model else None)
    try:
        image = inversion.decode_photo(data, max_bytes=hub.settings.limits.upload_bytes,
                                       max_pixels=hub.settings.limits.photo_pixels)
    except inversion.PhotoError as exc:
        code = "too_large" if "limit" in str(exc) else "unsupported_media" \
            if "PNG, JPEG or WebP" in str(exc) else "bad_request"
        raise ApiError(code, str(exc)) from None
    target = await hub.scheduler.call(lambda: inversion.prepare_photo(image, gen), name="prepare-photo")
    try:
        extra = {name: int(str(form[name])) for name in ("steps", "pti_steps") if form.get(name) not in (None, "")}
    except ValueError:
        raise ApiError("bad_request", "steps and pti_steps must be whole numbers") from None
    if not 1 <= extra.get("steps", 1) <= 5000 or not 0 <= extra.get("pti_steps", 0) <= 5000:
        raise ApiError("bad_request", "steps must be 1..5000 and pti_steps 0..5000")
    try:
        config = inversion.InversionConfig(pti=pti, **extra)
    except ValueError as exc:
        raise ApiError("bad_request", str(exc)) from None
    placeholder = await hub.scheduler.call(lambda: gen.sample(0), name="sample")
    doc = SessionDocument.create(hub.new_id(), str(model or hub.settings.model), gen.image_size, placeholder,
                                 "photo", "photo" + (" (PTI)" if pti else ""), {"photo": True, "pti": pti},
                                 max_history=hub.settings.limits.history)
    live = await hub.adopt(doc, gen)
    request.app.state.editor.start_inversion(live, target, config)
    return JSONResponse(live.summary(), status_code=201)
