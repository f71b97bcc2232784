"""The blocking client: the asyncio client (``aio.py``) run on a private event loop in a
background thread, so scripts and notebooks call plain methods. Callbacks (``on_frame``,
``on_progress``) run on that thread."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any, Callable, Coroutine, Mapping, Sequence

from .aio import AsyncClient, AsyncSession, EditResult, Frame, Points


class _Loop:
    """An event loop on a daemon thread; ``run`` blocks until a coroutine finishes there."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="dragwalk-client", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        if not self.thread.is_alive():
            self.loop.close()


class Client:
    """``Client(url, token)``: a dragwalk server, blocking calls. ``with Client(...) as c:`` closes it."""

    def __init__(self, url: str, token: str | None = None, timeout: float = 300.0) -> None:
        self._loop = _Loop()

        async def make() -> AsyncClient:
            return AsyncClient(url, token, timeout)
        self.aio: AsyncClient = self._loop.run(make())

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        if self._loop.loop.is_running():
            self._loop.run(self.aio.close())
            self._loop.stop()

    def health(self) -> dict[str, Any]:
        return self._loop.run(self.aio.health())

    def models(self) -> list[dict[str, Any]]:
        return self._loop.run(self.aio.models())

    def methods(self, model: str | None = None) -> dict[str, Any]:
        return self._loop.run(self.aio.methods(model))

    def open_session(self, model: str | None = None, seed: int = 0, truncation: float = 1.0,
                     space: str | None = None) -> "Session":
        return Session(self, self._loop.run(self.aio.open_session(model, seed, truncation, space)))

    def attach(self, session_id: str) -> "Session":
        return Session(self, self._loop.run(self.aio.attach(session_id)))

    def upload_latent(self, path: str | Path, model: str | None = None) -> "Session":
        return Session(self, self._loop.run(self.aio.upload_latent(path, model)))

    def upload_photo(self, path: str | Path, pti: bool = True, model: str | None = None, steps: int | None = None,
                     pti_steps: int | None = None, on_progress: Callable[[dict], Any] | None = None,
                     on_frame: Callable[[Frame], Any] | None = None) -> "Session":
        return Session(self, self._loop.run(self.aio.upload_photo(path, pti, model, steps, pti_steps,
                                                                  on_progress, on_frame)))


class Session:
    """One session, blocking calls (see :class:`dragwalk.client.AsyncSession` for each)."""

    def __init__(self, client: Client, aio: AsyncSession) -> None:
        self.client = client
        self.aio = aio
        self._run = client._loop.run

    @property
    def id(self) -> str:
        return self.aio.id

    @property
    def summary(self) -> dict[str, Any]:
        return self.aio.summary

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self._run(self.aio.close())

    def delete(self) -> None:
        self._run(self.aio.delete())

    def drag(self, points: Points, method: str | None = None, params: Mapping[str, Any] | None = None,
             on_frame: Callable[[Frame], Any] | None = None, on_progress: Callable[[dict], Any] | None = None,
             **settings: Any) -> EditResult:
        return self._run(self.aio.drag(points, method, params, on_frame=on_frame, on_progress=on_progress,
                                       **settings))

    def stop(self) -> None:
        self._run(self.aio.stop())

    def directions(self, method: str, **params: Any) -> dict[str, Any]:
        return self._run(self.aio.directions(method, **params))

    def walk(self, set: str | Mapping[str, Any], amounts: Mapping[int, float] | Sequence[float],
             kind: str = "linear", commit: bool = True) -> Any:
        return self._run(self.aio.walk(set, amounts, kind, commit))

    def reseed(self, seed: int, truncation: float = 1.0, space: str | None = None) -> dict[str, Any]:
        return self._run(self.aio.reseed(seed, truncation, space))

    def undo(self) -> dict[str, Any]:
        return self._run(self.aio.undo())

    def redo(self) -> dict[str, Any]:
        return self._run(self.aio.redo())

    def goto(self, index: int) -> dict[str, Any]:
        return self._run(self.aio.goto(index))

    def result(self) -> EditResult:
        return self._run(self.aio.result())

    def image(self) -> Any:
        return self._run(self.aio.image())

    def latent(self) -> Any:
        return self._run(self.aio.latent())

    def export(self, kind: str, path: str | Path) -> Path:
        return self._run(self.aio.export(kind, path))

    def command(self, **message: Any) -> dict[str, Any]:
        return self._run(self.aio.command(**message))

    def ping(self) -> float:
        return self._run(self.aio.ping())
