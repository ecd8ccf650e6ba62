"""The HTTP/1.1 protocol the proxy runs under uvicorn: uvicorn's httptools protocol, plus
three things uvicorn's settings do not give (checked against uvicorn 0.29-0.5x,
uvicorn/protocols/http/httptools_impl.py):

- **A deadline for the request head, and for each pause in its body**
  (`proxy.header_timeout`). uvicorn arms no timer when a connection opens, and its keep-alive
  timer (`timeout_keep_alive`) runs only between requests and stops at the first byte of the
  next one: a connection that sends half a head, or a body that stops short of its
  Content-Length, stays open forever, holding a file descriptor (and a request). Past the
  deadline it gets a 408 and is closed. A body may take as long as it likes in all, as long
  as no pause is longer than the deadline (a 32 MiB body on a slow link is not cut).
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
    stalled = _raw_response(
        OpenAIError(
            408,
            f"The request body stopped arriving: nothing came for {header_timeout:g} s "
            "(proxy.header_timeout).",
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
            # When the head being read began (None between requests), and the connection's
            # one deadline check: it re-arms itself, so a request costs a clock reading, not
            # a timer armed and cancelled (call_later + cancel: ~2 us each under uvloop).
            self.head_started: float | None = None
            self.body_moved = 0.0  # when the body being read last moved (cycle.more_body)
            self.head_check: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]  # uvicorn narrows BaseTransport to Transport itself
            super().connection_made(transport)
            self.head_started = self.loop.time()
            self.head_check = self.loop.call_later(header_timeout, self._check_head)

        def connection_lost(self, exc: Exception | None) -> None:
            if self.head_check is not None:
                self.head_check.cancel()
                self.head_check = None
            cycle = self.cycle
            if cycle is not None and not cycle.response_complete:
                hung_up = cycle.scope.get(HANG_UP)
                if callable(hung_up):
                    hung_up()
            super().connection_lost(exc)

        def on_message_begin(self) -> None:  # the parser saw a request's first byte
            super().on_message_begin()
            if self.head_started is None:  # not the connection's first request
                self.head_started = self.loop.time()

        def on_headers_complete(self) -> None:
            self.head_started = None
            self.body_moved = self.loop.time()  # a body may follow, while cycle.more_body
            busy = len(self.connections) > max_connections or len(self.tasks) >= max_connections
            self.app = refuse if busy else self.served_app
            self.scope[HANG_UP] = None  # type: ignore[literal-required]  # our key in uvicorn's typed scope
            super().on_headers_complete()

        def on_body(self, body: bytes) -> None:
            self.body_moved = self.loop.time()
            super().on_body(body)

        def send_400_response(self, msg: str) -> None:
            self.transport.write(BAD_REQUEST)
            self.transport.close()

        def _check_head(self) -> None:
            """The deadline check: a head begun `header_timeout` ago, or a body with nothing
            new for as long, gets a 408 and the connection closes; otherwise check again when
            the current head's or pause's time is up."""
            self.head_check = None
            if self.transport.is_closing():
                return
            now, started, answer = self.loop.time(), self.head_started, too_slow
            cycle = self.cycle
            if started is None and cycle is not None and cycle.more_body:  # a body is coming
                if self.flow.read_paused:  # the proxy holds the body back, not the client
                    self.body_moved = now
                started, answer = self.body_moved, stalled
            if started is not None and now - started >= header_timeout:
                # a stalled body's request may have answered already (a 413 reads no body)
                if answer is too_slow or cycle is None or not cycle.response_started:
                    self.transport.write(answer)
                self.transport.close()
                return
            # between requests, look again a quarter of the timeout later: a head that begins
            # meanwhile gets between 1 and 1.25 times header_timeout
            wait = header_timeout / 4 if started is None else started + header_timeout - now
            self.head_check = self.loop.call_later(wait, self._check_head)

    return GuardedHttpToolsProtocol
