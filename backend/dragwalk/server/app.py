"""The FastAPI application and ``dragwalk serve``.

``create_app(settings)`` builds the app (tests call it directly); ``serve(args)`` merges flags with
``DRAGWALK_*`` environment variables and runs uvicorn. The page is the repository's ``frontend/``
directory (or ``DRAGWALK_FRONTEND``); without one, a tiny built-in page shows a seed's face.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from .config import Settings
from .errors import INTERNAL_MESSAGE, ApiError
from .fallback import PAGE as FALLBACK_PAGE
from .hub import Hub
from .security import Guard, HostPolicy

log = logging.getLogger("dragwalk.server")


def create_app(settings: Settings | None = None, **overrides: Any) -> FastAPI:
    """The app for ``settings`` (fields may also be given as keyword arguments)."""
    settings = settings or Settings()
    for key, value in overrides.items():
        setattr(settings, key, value)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        hub = Hub(settings)
        app.state.hub = hub
        from .editor import Editor
        app.state.editor = Editor(hub)
        try:
            await hub.generator(settings.model)     # load the default model before serving
            await hub.warm_up()                      # and pay torch's one-time costs before the first drag
            _freeze_startup_objects()
            if settings.precompute_directions:
                app.state.precompute = await _start_precompute(hub, app.state.editor)
            yield
        finally:
            precompute = getattr(app.state, "precompute", None)
            if precompute is not None:              # cancelled at its next checkpoint
                await asyncio.get_running_loop().run_in_executor(None, precompute.stop)
            await hub.close()

    app = FastAPI(title="dragwalk", version=__version__, lifespan=lifespan, redirect_slashes=False,
                  description="Drag and walk editing of GAN images (docs/PROTOCOL.md)")
    app.state.settings = settings
    _install_error_handlers(app)

    from .routes import install_openapi, router
    app.include_router(router)
    from .precompute import router as precompute_router
    app.include_router(precompute_router)
    install_openapi(app)
    from .ws import router as ws_router
    app.include_router(ws_router)
    _install_frontend(app, Path(settings.frontend))
    app.add_middleware(Guard, token=settings.token, hosts=HostPolicy(settings.host, settings.allowed_hosts),
                       allowed_origins=settings.allowed_origins)
    return app


async def _start_precompute(hub: Hub, editor: Any) -> Any:
    """The start-up model's expensive direction sets, in the background (server/precompute.py)."""
    from .. import directions
    from .precompute import Precompute

    generator = await hub.generator(hub.settings.model)
    return Precompute([(hub.settings.model, generator)], editor.direction_cache(directions),
                      busy=lambda: bool(hub.scheduler.active())).start()


def _freeze_startup_objects() -> None:
    """Move everything imported and loaded so far (torch, the model) out of the garbage
    collector's reach. A full collection otherwise walks those million objects while holding the
    GIL, and one triggered while an upload is parsed in a thread stalled the event loop for
    seconds (issue 13: /api/health answered after 2 s); after this it is a few milliseconds."""
    import gc
    gc.collect()
    gc.freeze()


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return JSONResponse({"error": {"code": "bad_request", "message": f"{where}: {first.get('msg', 'invalid')}"}},
                            status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "bad_request", 401: "unauthorized", 403: "forbidden",
                413: "too_large"}.get(exc.status_code, "bad_request")
        return JSONResponse({"error": {"code": code, "message": str(exc.detail)}}, status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> JSONResponse:
        # the details go to the log, never to the client (they may name files or addresses)
        log.exception("internal error on %s", request.url.path)
        return JSONResponse({"error": {"code": "internal", "message": INTERNAL_MESSAGE}}, status_code=500)


def _install_frontend(app: FastAPI, frontend: Path) -> None:
    index = frontend / "index.html"

    @app.api_route("/api/{rest:path}", methods=["GET", "POST", "PUT", "DELETE", "PATCH"], include_in_schema=False)
    async def unknown_api(rest: str) -> JSONResponse:
        # an unknown API path is an API 404, never a static-file lookup
        raise ApiError("not_found", "no such API endpoint")

    @app.get("/", include_in_schema=False)
    async def page() -> Any:
        if index.is_file():
            return FileResponse(index, headers={"Cache-Control": "no-cache"})
        return HTMLResponse(FALLBACK_PAGE, headers={"Cache-Control": "no-cache"})

    if frontend.is_dir():
        app.mount("/", StaticFiles(directory=frontend, html=True), name="frontend")


def serve(args: Any = None) -> int:
    """Run the server until interrupted (``dragwalk serve``); 2 when it must not start."""
    import uvicorn

    from .store import StoreError
    from .stores import check_store
    from .transport import with_deadlines

    settings = Settings.from_args(args)
    if not is_loopback(settings.host) and not settings.token and not settings.allow_no_token:
        print(f"dragwalk: error: refusing to serve on {settings.host} without an access token: anyone "
              "who can reach the port could edit. Pass --token (or DRAGWALK_TOKEN), or --allow-no-token "
              "if you really mean it.", file=sys.stderr)
        return 2
    try:
        for warning in check_store(settings.store):
            print(f"dragwalk: WARNING: {warning}", file=sys.stderr, flush=True)
    except StoreError as exc:
        print(f"dragwalk: error: {exc}. Move the file away (or point --store elsewhere) to start "
              "with an empty store.", file=sys.stderr)
        return 2
    # fail early, as one clear line, on a bad device or model (the app reuses the loaded model)
    from ..device import pick_device
    from ..models import load_model
    load_model(settings.model, pick_device(settings.device))
    if not is_loopback(settings.host) and not settings.token:
        log.warning("serving on %s without an access token (--allow-no-token): anyone who can reach "
                    "it can edit", settings.host)
    app = create_app(settings)
    limits = settings.limits
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level="warning",
                            http=with_deadlines(limits.timeout_header, limits.timeout_body),
                            timeout_keep_alive=limits.timeout_keep_alive,  # type: ignore[arg-type]
                            limit_concurrency=limits.max_connections,
                            ws_max_size=16 * 1024 * 1024, timeout_graceful_shutdown=3)
    print(f"dragwalk: serving http://{settings.host}:{settings.port}/ (model {settings.model})", flush=True)
    uvicorn.Server(config).run()
    return 0


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the server on this machine."""
    import ipaddress
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
