"""The HTTP/1.1 protocol the proxy runs under uvicorn: uvicorn's httptools protocol, plus
three things uvicorn's settings do not give (checked against uvicorn 0.29-0.5x,
uvicorn/protocols/http/httptools_impl.py):

- **A deadline for the request head** (`proxy.header_timeout`). uvicorn arms no timer when a
  connection opens, and its keep-alive timer (`timeout_keep_alive`) runs only between
  requests and stops at the first byte of the next one: a connection that sends half a head
  stays open forever, holding a file descriptor. Past the deadline it gets a 408 and is closed.
- **OpenAI-shaped 503s past `proxy.max_connections`.** uvicorn's `limit_concurrency` is the
  same cap (connections or running requests, counted when a request head is complete), but
  answers in plain text; this swaps in an app that answers the OpenAI error instead.
- **OpenAI-shaped 400s for requests the parser refuses** (a lower-case or unknown method, a
  broken request line), which uvicorn answers in plain text (`send_400_response`).
- **A call back when the client hangs up** mid-request (relay.HANG_UP): uvicorn only sets a
  flag that the app sees if a task waits on `receive`; the connection's loss calls the
  callback the app stored in the request's scope instead, which costs no task per request.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from stackctl.proxy.errors import OpenAIError
from stackctl.proxy.relay import HANG_UP


def _raw_response(error: OpenAIError) -> bytes:
    """A whole HTTP/1.1 response that closes the connection, for answering outside ASGI."""
    body = error.to_json()
    reason = {400: b"Bad Request", 408: b"Request Timeout"}[error.status]
    return (
        b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
        b"connection: close\r\n\r\n%s" % (error.status, reason, len(body), body)
    )


BAD_REQUEST = _raw_response(
    OpenAIError(
        400,
        "The proxy could not parse this HTTP request: send HTTP/1.1 with an upper-case method "
        "such as GET or POST.",
        code="invalid_http_request",
    )
)


def guarded_protocol(header_timeout: float, max_connections: int) -> type[asyncio.Protocol]:
    """The protocol class to give uvicorn as `http=`, with these limits."""
    too_slow = _raw_response(
        OpenAIError(
            408,
            f"The request head did not arrive within {header_timeout:g} s (proxy.header_timeout).",
            code="request_timeout",
        )
    )
    overloaded = OpenAIError(
        503,
        f"The proxy is serving its maximum of {max_connections} connections "
        "(proxy.max_connections): try again in a moment.",
        code="too_many_connections",
    ).to_json()

    async def refuse(scope: Any, receive: Any, send: Any) -> None:
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(overloaded)).encode()),
            (b"connection", b"close"),
        ]
        await send({"type": "http.response.start", "status": 503, "headers": headers})
        await send({"type": "http.response.body", "body": overloaded})

    class GuardedHttpToolsProtocol(HttpToolsProtocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.served_app = self.app
            self.head_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]  # uvicorn narrows BaseTransport to Transport itself
            super().connection_made(transport)
            self._start_head_timer()

        def connection_lost(self, exc: Exception | None) -> None:
            self._stop_head_timer()
            cycle = self.cycle
            if cycle is not None and not cycle.response_complete:
                hung_up = cycle.scope.get(HANG_UP)
                if callable(hung_up):
                    hung_up()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self.cycle is None or self.cycle.response_complete:
                self._start_head_timer()  # between requests: this is the next one's head
            super().data_received(data)

        def on_headers_complete(self) -> None:
            self._stop_head_timer()
            busy = len(self.connections) > max_connections or len(self.tasks) >= max_connections
            self.app = refuse if busy else self.served_app
            self.scope[HANG_UP] = None  # type: ignore[literal-required]  # our key in uvicorn's typed scope
            super().on_headers_complete()

        def send_400_response(self, msg: str) -> None:
            self.transport.write(BAD_REQUEST)
            self.transport.close()

        def _start_head_timer(self) -> None:
            if self.head_timer is None:
                self.head_timer = self.loop.call_later(header_timeout, self._head_too_slow)

        def _stop_head_timer(self) -> None:
            if self.head_timer is not None:
                self.head_timer.cancel()
                self.head_timer = None

        def _head_too_slow(self) -> None:
            self.head_timer = None
            if not self.transport.is_closing():
                self.transport.write(too_slow)
                self.transport.close()

    return GuardedHttpToolsProtocol
