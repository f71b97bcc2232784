"""The HTTP API of docs/PROTOCOL.md: health, models, sessions, uploads and exports.

Every route declares its body and response with pydantic models (``schemas.py``) and the error
codes it can answer, so ``/openapi.json`` describes the whole API. Bodies are read under their
size caps by :class:`bodies.BoundedRoute` before FastAPI validates them.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Optional

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse, Response
from pydantic import Field

from ..latent_io import latent_to_dict, latent_to_npz_bytes
from .bodies import BoundedRoute, body
from .errors import ApiError
from .events import ServerEvent
from .hub import Hub
from .schemas import ClosedModel, Health, Methods, ModelInfo, SessionSummary, error_responses
from .session import SessionDocument
from .uploads import SeedStart, document_from_upload, parse_upload_json, sniff_suffix

router = APIRouter(prefix="/api", route_class=BoundedRoute)
#: errors of every route that reads a session (a session's record may be gone, expired or unreadable)
SESSION_ERRORS = ("not_found", "expired", "damaged", "store_unavailable")
#: errors of every route that stores a new session
NEW_SESSION_ERRORS = ("bad_request", "rate_limited", "store_full", "store_unavailable", "too_large")


class CreateSession(SeedStart):
    """Body of ``POST /api/sessions``: a seeded start, optionally on another model."""

    model: str | None = Field(default=None, max_length=200)


class CommandReply(ClosedModel):
    """What ``POST /api/sessions/{id}/commands`` answers: the command's direct reply (the event a
    websocket would get, or null) and the session afterwards."""

    reply: Optional[ServerEvent]
    session: SessionSummary


def binary(media: str, what: str) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entry of a route answering a file."""
    return {200: {"description": what, "content": {media: {"schema": {"type": "string", "format": "binary"}}}}}


def hub_of(request: Request) -> Hub:
    return request.app.state.hub


def client_key(request: Request) -> str:
    """The address rate limits count against."""
    return request.client.host if request.client else "unknown"


@router.get("/health", response_model=Health, response_model_exclude_unset=True, responses=error_responses())
async def health(request: Request) -> Any:
    """Whether the server serves, and what it offers."""
    return hub_of(request).health()


@router.get("/models", response_model=list[ModelInfo], response_model_exclude_unset=True,
            responses=error_responses())
async def models(request: Request) -> Any:
    """The models a session can be opened on."""
    return await hub_of(request).models()


#: bytes a JSON body of ``POST /api/sessions`` may have
CREATE_BYTES = 64 * 1024


@router.post("/sessions", status_code=201, response_model=SessionSummary, response_model_exclude_unset=True,
             responses=error_responses(*NEW_SESSION_ERRORS, "unsupported_media", "unavailable"))
@body("json", lambda limits: CREATE_BYTES)
async def create_session(request: Request, start: CreateSession) -> Any:
    """A new session on a seed (JSON, ``Content-Type: application/json``)."""
    hub = hub_of(request)
    hub.admit_new_session(client_key(request))
    live = await hub.create(start.model, start.seed, start.truncation, start.space, start.settings)
    return live.summary()


ModelField = Annotated[Optional[str], Form(max_length=200, description="a name from /api/models")]


@router.post("/sessions/upload", status_code=201, response_model=SessionSummary,
             response_model_exclude_unset=True, responses=error_responses(*NEW_SESSION_ERRORS, "unsupported_media"))
@body("form", lambda limits: limits.upload_bytes)
async def upload_session(request: Request,
                         file: Annotated[UploadFile, File(description="a latent (.npz/.json/.npy) or an "
                                                          "edit log (.json, format dragwalk-log/1)")],
                         model: ModelField = None) -> Any:
    """A session from an uploaded latent (.npz/.json/.npy) or edit log (.json)."""
    hub = hub_of(request)
    hub.admit_new_session(client_key(request))
    data = await file.read()
    suffix = sniff_suffix(file.filename, data)
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
    return live.summary()


@router.get("/sessions/{session_id}", response_model=SessionSummary, response_model_exclude_unset=True,
            responses=error_responses(*SESSION_ERRORS))
async def get_session(session_id: str, request: Request) -> Any:
    """The session summary."""
    return (await hub_of(request).get(session_id)).summary()


@router.delete("/sessions/{session_id}", status_code=204, response_class=Response,
               responses=error_responses(*SESSION_ERRORS))
async def delete_session(session_id: str, request: Request) -> Response:
    await hub_of(request).delete(session_id)
    return Response(status_code=204)


#: the upscales `image.png?scale=` offers (the model's pixels are few: 64 px for the default)
SCALES = (1, 2, 4, 8)


@router.get("/sessions/{session_id}/image.png", response_class=Response,
            responses={**binary("image/png", "the image"), **error_responses("bad_request", *SESSION_ERRORS)})
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


@router.get("/sessions/{session_id}/strip.jpg", response_class=Response,
            responses={**binary("image/jpeg", "the strip"), 204: {"description": "the client stopped waiting"},
                       **error_responses("bad_request", *SESSION_ERRORS)})
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


@router.get("/sessions/{session_id}/latent.{ext}", response_class=Response,
            responses={200: {"description": "the current latent (see dragwalk.latent_io)", "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                "application/json": {"schema": {"type": "object"}}}},
                       **error_responses("bad_request", *SESSION_ERRORS)})
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


@router.get("/sessions/{session_id}/log.json", response_class=JSONResponse,
            responses={200: {"description": "the edit log (format dragwalk-log/1)",
                             "content": {"application/json": {"schema": {"type": "object"}}}},
                       **error_responses(*SESSION_ERRORS)})
async def edit_log(session_id: str, request: Request) -> JSONResponse:
    live = await hub_of(request).get(session_id)
    return JSONResponse(live.doc.edit_log(),
                        headers={"Content-Disposition": f'attachment; filename="{session_id}-log.json"'})


@router.get("/sessions/{session_id}/animation.{ext}", response_class=Response,
            responses={200: {"description": "the frames of the last drag", "content": {
                "image/gif": {"schema": {"type": "string", "format": "binary"}},
                "video/mp4": {"schema": {"type": "string", "format": "binary"}}}},
                       **error_responses("unavailable", *SESSION_ERRORS)})
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


@router.get("/methods", response_model=Methods, response_model_exclude_unset=True,
            responses=error_responses("bad_request"))
async def methods(request: Request, model: str | None = None) -> Any:
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


#: the body of ``/commands``: one client message of docs/protocol.schema.json (parsed by
#: ``messages.parse_message`` itself, so its errors read as on the websocket)
COMMAND_BODY = {"requestBody": {"required": True, "content": {"application/json": {
    "schema": {"$ref": "#/components/schemas/ClientMessage"}}}}}


@router.post("/sessions/{session_id}/commands", response_model=CommandReply, response_model_exclude_unset=True,
             openapi_extra=COMMAND_BODY,
             responses=error_responses("bad_request", "invalid_points", "busy", "too_large", "unsupported_media",
                                       "unavailable", "store_full", *SESSION_ERRORS))
@body("raw-json", lambda limits: limits.message_bytes)
async def command(session_id: str, request: Request) -> Any:
    """One websocket command over HTTP (no drags: they stream, use the websocket)."""
    from .messages import MessageError, parse_message
    hub = hub_of(request)
    live = await hub.get(session_id)
    try:
        msg = parse_message(await request.body(), hub.settings.limits.message_bytes)
    except MessageError as exc:
        raise ApiError(exc.code if exc.code != "invalid_message" else "bad_request", exc.message) from None
    reply = await request.app.state.editor.handle(live, msg, None, http=True)
    return {"reply": reply, "session": live.summary()}


@router.post("/sessions/photo", status_code=201, response_model=SessionSummary, response_model_exclude_unset=True,
             responses=error_responses(*NEW_SESSION_ERRORS, "unsupported_media", "unavailable"))
@body("form", lambda limits: limits.upload_bytes)
async def photo_session(request: Request,
                        file: Annotated[UploadFile, File(description="the photo: PNG, JPEG or WebP")],
                        pti: Annotated[bool, Form(description="pivotal tuning after the projection")] = False,
                        model: ModelField = None,
                        steps: Annotated[Optional[int], Form(ge=1, le=5000, description="projection steps")] = None,
                        pti_steps: Annotated[Optional[int], Form(ge=0, le=5000, description="tuning steps")] = None,
                        ) -> Any:
    """A session from a photo: inverted step by step, progress on the websocket."""
    from .ops_base import _engine
    hub = hub_of(request)
    inversion = _engine("inversion")
    hub.admit_new_session(client_key(request))
    data = await file.read()
    gen = await hub.generator(model or None)
    try:
        image = inversion.decode_photo(data, max_bytes=hub.settings.limits.upload_bytes,
                                       max_pixels=hub.settings.limits.photo_pixels)
    except inversion.PhotoError as exc:
        code = "too_large" if "limit" in str(exc) else "unsupported_media" \
            if "PNG, JPEG or WebP" in str(exc) else "bad_request"
        raise ApiError(code, str(exc)) from None
    target = await hub.scheduler.call(lambda: inversion.prepare_photo(image, gen), name="prepare-photo")
    extra = {name: value for name, value in (("steps", steps), ("pti_steps", pti_steps)) if value is not None}
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
    return live.summary()


def _canonical(schema: Any) -> Any:
    """A JSON schema as FastAPI and pydantic may each spell it: bounds as numbers (FastAPI writes
    ``0.0`` where pydantic writes ``0``) and without ``"default": null``, which says nothing."""
    if isinstance(schema, dict):
        return {k: _canonical(v) for k, v in schema.items() if not (k == "default" and v is None)}
    if isinstance(schema, list):
        return [_canonical(v) for v in schema]
    if isinstance(schema, float) and schema.is_integer():
        return int(schema)
    return schema


def install_openapi(app: Any) -> None:
    """Finish ``app``'s OpenAPI document: add the websocket message schemas ``/commands`` refers
    to, and drop FastAPI's automatic 422 answers (a validation failure here is a 400
    ``bad_request`` with the error shape, which each route documents)."""
    from pydantic import TypeAdapter

    from .messages import Message

    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = generate()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        messages = TypeAdapter(Message).json_schema(ref_template="#/components/schemas/{model}")
        for name, value in {**messages.pop("$defs", {}), "ClientMessage": messages}.items():
            if _canonical(components.setdefault(name, value)) != _canonical(value):
                raise ValueError(f"two different schemas are both called {name}")
        for path in schema.get("paths", {}).values():
            for operation in path.values():
                operation.get("responses", {}).pop("422", None)
        for name in ("HTTPValidationError", "ValidationError"):
            components.pop(name, None)
        return schema

    app.openapi = openapi
