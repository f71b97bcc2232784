"""A Python client for a running ``dragwalk serve``: script a remote editor from a laptop or a
notebook (README, "Scripting a remote editor").

    from dragwalk.client import Client

    with Client("http://gpu-box:8000", token="...") as client:
        session = client.open_session(seed=3)
        result = session.drag([((30, 40), (34, 40))], max_steps=50, on_frame=lambda f: print(f.step))
        result.save("out.png", "out.npz")

``Client``/``Session`` block; ``AsyncClient``/``AsyncSession`` are the same API for asyncio.
Every refusal raises :class:`ClientError` with the server's error code.
"""

from .aio import AsyncClient, AsyncSession, EditResult, Frame
from .errors import ClientError
from .sync import Client, Session

__all__ = ["AsyncClient", "AsyncSession", "Client", "ClientError", "EditResult", "Frame", "Session"]
