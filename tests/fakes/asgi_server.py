"""Serve an ASGI app with uvicorn in a background thread on a loopback port, for tests.

    with ServerThread(app) as server:
        httpx.get(server.url + "/")

The socket is bound before the thread starts (port 0 picks a free one), so there is no race
for the port, and `stop()` waits for uvicorn's lifespan shutdown before closing it.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any, TypeVar

Served = TypeVar("Served", bound="ServedFake")


class ServerThread:
    """uvicorn in a thread; `url` is where it listens once `start()` returned."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0, **uvicorn_options: Any):
        self.app = app
        self.host = host
        self.port = port
        self.options = uvicorn_options
        self.server: Any = None
        self.thread: threading.Thread | None = None
        self.sock: socket.socket | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self, timeout: float = 15.0) -> ServerThread:
        import uvicorn

        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((self.host, self.port))
        self.port = self.sock.getsockname()[1]
        options = {"log_level": "warning", "timeout_graceful_shutdown": 3, **self.options}
        self.server = uvicorn.Server(uvicorn.Config(self.app, **options))
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the test server on {self.url} did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(timeout=15)
            self.thread = None
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ServedFake:
    """A fake server in this process: subclasses set `self.server` to a ServerThread."""

    server: ServerThread

    @property
    def url(self) -> str:
        return self.server.url

    def start(self: Served) -> Served:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    def __enter__(self: Served) -> Served:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


async def answer_lifespan(receive: Any, send: Any) -> None:
    """Answer uvicorn's lifespan messages: nothing to set up, nothing to tear down."""
    while (await receive())["type"] != "lifespan.shutdown":
        await send({"type": "lifespan.startup.complete"})
    await send({"type": "lifespan.shutdown.complete"})


async def read_body(receive: Any) -> bytes:
    """The whole request body, however many messages it came in."""
    raw = b""
    while True:
        message = await receive()
        raw += message.get("body", b"")
        if not message.get("more_body"):
            return raw


async def stream_body(receive: Any, send: Any, content_type: bytes, chunks: Any) -> str:
    """Send a 200 streamed body chunk by chunk, and stop at once when the client hangs up.

    Returns "completed" or "cancelled" (the client disconnected before the end), which the
    fakes log so tests can see that a proxy closed its upstream request.
    """
    import asyncio

    headers = [(b"content-type", content_type), (b"cache-control", b"no-cache")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})

    async def pump() -> None:
        async for chunk in chunks:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    async def hang_up() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    pumping, watching = asyncio.ensure_future(pump()), asyncio.ensure_future(hang_up())
    await asyncio.wait({pumping, watching}, return_when=asyncio.FIRST_COMPLETED)
    cancelled = not pumping.done()
    for task in (pumping, watching):
        task.cancel()
    await asyncio.gather(pumping, watching, return_exceptions=True)
    return "cancelled" if cancelled else "completed"


def proxy_thread(app: Any, settings: Any) -> ServerThread:
    """The proxy's app under its own HTTP protocol (stackctl.proxy.protocol), as
    `stackctl proxy serve` runs it; the event loop is asyncio's (uvloop's policy is global)."""
    from stackctl.proxy.server import uvicorn_options

    return ServerThread(app, http=uvicorn_options(settings)["http"])
