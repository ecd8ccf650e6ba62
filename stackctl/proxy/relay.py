"""Moving bytes between the client and a backend: whole answers, streams, backend errors.

Streams are sent the moment each backend read arrives (never buffered). While a request is
with its backend, from the first byte sent to it to the last byte answered, a client that
hangs up cancels the request at once, which closes the backend connection (Ollama then stops
loading the model or generating): see until_hang_up.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

from stackctl.proxy import codec
from stackctl.proxy.errors import OpenAIError
from stackctl.proxy.responses import StreamBroken, ndjson_object
from stackctl.proxy.shapes import WrongShape
from stackctl.proxy.upstream import Backend, Upstream

log = logging.getLogger("stackctl.proxy")
Answer = TypeVar("Answer")

SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),  # tells nginx and friends not to buffer the stream
]
JSON = b"application/json"


class ClientGone(Exception):
    """The client hung up before its answer was complete: nothing left to answer."""


def _too_large(limit: int) -> OpenAIError:
    return OpenAIError(
        413,
        f"The request body is larger than the proxy's limit of {limit // 1048576} MiB "
        "(proxy.max_body_mb).",
        code="request_too_large",
    )


async def read_body(receive: Any, declared: bytes | None, limit: int) -> codec.Raw:
    """The whole request body, or a 413 as soon as it (or its Content-Length) is past the limit.

    A body that came in pieces is gathered in one bytearray, so it is held once (a list of
    pieces joined at the end is held twice at the peak: 64 MiB for a 32 MiB body).
    """
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    gathered: bytearray | None = None
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        more = message.get("more_body", False)
        if gathered is None:
            if not more:
                if len(chunk) > limit:
                    raise _too_large(limit)
                return chunk  # the whole body in one message: the usual case
            gathered = bytearray()
        gathered += chunk
        if len(gathered) > limit:
            raise _too_large(limit)
        if not more:
            return gathered  # bytes-like: orjson, aiohttp and the bytes methods all take it


async def send_bytes(
    send: Any,
    status: int,
    body: bytes,
    content_type: bytes | None = JSON,
    extra: list | None = None,
) -> None:
    """A whole response; `content_type=None` sends none (a 204 has no body to describe)."""
    headers = [(b"content-length", str(len(body)).encode())]
    if content_type:
        headers.insert(0, (b"content-type", content_type))
    if extra:
        headers += extra
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def backend_error(backend: Backend, status: int, body: bytes) -> OpenAIError:
    """A backend's non-2xx answer as the client should see it (always OpenAI-shaped)."""
    detail: Any = None
    try:
        data = codec.loads(body)
        detail = data.get("error", data) if isinstance(data, dict) else None
    except codec.JSONDecodeError:
        pass
    if isinstance(detail, dict):  # OpenAI-style, nested or vLLM's older flat shape
        message = str(
            detail.get("message") or detail.get("detail") or body[:500].decode("utf-8", "replace")
        )
        kind, param, code = detail.get("type"), detail.get("param"), detail.get("code")
    else:
        message = str(detail) if detail else body[:500].decode("utf-8", "replace").strip()
        kind = param = code = None
    if not isinstance(code, str):
        code = None
    if backend.mode == "ollama" and status == 404:
        return OpenAIError(
            404,
            f"The backend '{backend.name}' says: {message}",
            param="model",
            code="model_not_found",
        )
    if backend.mode == "ollama" and status == 403:
        return OpenAIError(
            502,
            f"The backend '{backend.name}' refused the request (403): Ollama rejects a Host header "
            "it does not know, or an Origin it does not allow.",
            code="backend_error",
        )
    if 400 <= status < 500 or status in (503, 504):
        prefix = "" if backend.mode != "ollama" else f"The backend '{backend.name}' says: "
        return OpenAIError(
            status,
            prefix + message,
            type=kind if isinstance(kind, str) else None,
            param=param if isinstance(param, str) else None,
            code=code,
        )
    return OpenAIError(
        502, f"The backend '{backend.name}' failed ({status}): {message}", code="backend_error"
    )


def wrong_shape(backend: Backend, exc: WrongShape) -> OpenAIError:
    return OpenAIError(
        502,
        f"The backend '{backend.name}' answered with a reply of the wrong shape: {exc}.",
        code="backend_error",
    )


def backend_json(backend: Backend, body: bytes) -> dict[str, Any]:
    """A backend's whole answer as a JSON object, or the 502 saying it is not one."""
    try:
        result = codec.loads(body)
    except codec.JSONDecodeError:
        result = None
    if not isinstance(result, dict):
        raise OpenAIError(
            502,
            f"The backend '{backend.name}' answered with something that is not JSON.",
            code="backend_error",
        )
    return result


HANG_UP = "stackctl.hang_up"
"""Scope key of the proxy's own HTTP protocol (protocol.py): it sets it to None for each
request, and calls what the app stores there once, if the client hangs up before the answer
is complete. The plain ASGI way to hear of a hang-up, a second task waiting on `receive`,
cost a task per request: about an eighth of a non-streamed request's CPU time."""


async def until_hang_up(
    scope: dict, receive: Any, send: Any, work: Callable[[Any], Awaitable[Answer]]
) -> Answer:
    """`await work(send)`, cancelled at once if the client hangs up before it is answered.

    Under the proxy's protocol, the protocol calls back on the hang-up (HANG_UP); under any
    other ASGI server, one small task waits on `receive` (the body was read already, so the
    next message is the disconnect). A hang-up cancels the work, and so the backend request
    it is waiting on, and raises ClientGone.
    """
    task = asyncio.current_task()
    assert task is not None  # an ASGI app always runs in a task
    gone = False

    def hung_up() -> None:
        nonlocal gone
        gone = True
        task.cancel()

    watcher = None
    if HANG_UP in scope:
        scope[HANG_UP] = hung_up  # the protocol calls it only before the answer is complete
    else:
        send, watcher = _watch_receive(receive, send, hung_up)
    try:
        return await work(send)
    except asyncio.CancelledError:
        if not gone:
            raise
        uncancel = getattr(task, "uncancel", None)  # Python 3.11+: the cancel was handled
        if uncancel is not None:
            uncancel()
        raise ClientGone from None
    finally:
        if watcher is None:
            scope[HANG_UP] = None
        else:
            watcher.cancel()


def _watch_receive(
    receive: Any, send: Any, hung_up: Callable[[], None]
) -> tuple[Callable[[dict], Awaitable[None]], asyncio.Future]:
    """For an ASGI server without HANG_UP: a task that calls `hung_up` when `receive` says
    the client left before the answer was complete, and the `send` that notes completion."""
    answered = False

    async def send_and_note(message: dict) -> None:
        nonlocal answered
        if message["type"] == "http.response.body" and not message.get("more_body"):
            answered = True  # the disconnect that follows a whole answer is no hang-up
        await send(message)

    async def watch() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        if not answered:
            hung_up()

    return send_and_note, asyncio.ensure_future(watch())


async def relay_ndjson(
    upstream: Upstream,
    backend: Backend,
    response: Any,
    send: Any,
    translator: Any,
) -> None:
    """Ollama's NDJSON stream -> SSE, one send per backend read, an error event if it breaks."""
    await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
    first = translator.start()
    if first:
        await send({"type": "http.response.body", "body": first, "more_body": True})
    try:
        async for lines in upstream.lines(backend, response):
            out = b""
            for line in lines:
                out += translator.feed(ndjson_object(line) or {})
            if out:
                await send({"type": "http.response.body", "body": out, "more_body": True})
            if translator.finished:
                break
        if not translator.finished:
            raise StreamBroken("ended the stream before the answer was complete (no done line)")
    except Exception as exc:  # the answer started: end it with an error event, never cut it off
        error = stream_failure(backend, exc)
        await send({"type": "http.response.body", "body": error.to_event(), "more_body": True})
    await send({"type": "http.response.body", "body": b""})


def stream_failure(backend: Backend, exc: Exception) -> OpenAIError:
    """What a stream that broke after its answer started ends with (call it in the `except`:
    a failure of the proxy's own is logged with its traceback)."""
    if isinstance(exc, StreamBroken):
        return OpenAIError(502, f"The backend '{backend.name}' {exc}", code="backend_error")
    if isinstance(exc, WrongShape):
        return wrong_shape(backend, exc)
    if isinstance(exc, OpenAIError):
        return exc
    log.exception("internal error while relaying a stream from %s", backend.name)
    return OpenAIError(
        500,
        "The proxy failed while relaying the answer; its log has the details.",
        type="server_error",
    )


def _usage_event(event: bytes) -> dict[str, Any] | None:
    """The `usage` of one SSE event, when it is a chunk that carries one."""
    if not event.startswith(b"data:") or b'"usage"' not in event:
        return None
    try:
        chunk = codec.loads(event[5:].strip())
    except codec.JSONDecodeError:
        return None
    usage = chunk.get("usage") if isinstance(chunk, dict) else None
    return usage if isinstance(usage, dict) else None


def stream_usage(tail: Iterable[bytes]) -> dict[str, Any] | None:
    """The token counts at the end of an OpenAI-style stream (its last reads): the last event
    with a `usage`, which a backend sends when asked with stream_options.include_usage."""
    for event in reversed(b"".join(tail).replace(b"\r\n", b"\n").split(b"\n\n")):
        usage = _usage_event(event.strip())
        if usage is not None:
            return usage
    return None


def _without_usage_chunks(data: bytes) -> bytes:
    """A read without the usage-only chunks (`"choices": []`) the proxy asked for itself."""
    events = data.split(b"\n\n")
    kept = [
        e
        for e in events
        if _usage_event(e.strip()) is None or codec.loads(e.strip()[5:]).get("choices") != []
    ]
    return b"\n\n".join(kept) if len(kept) != len(events) else data


async def relay_raw(
    upstream: Upstream, backend: Backend, response: Any, send: Any, hide_usage: bool = False
) -> dict[str, Any] | None:
    """An OpenAI-compatible backend's SSE stream, passed through as it comes; returns its
    usage when it sent one. `hide_usage`: the client did not ask for the usage chunk (the
    proxy did, to count a key's tokens), so it is left out."""
    await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
    tail: collections.deque[bytes] = collections.deque(maxlen=4)
    try:
        async for chunk in upstream.chunks(backend, response):
            tail.append(chunk)
            if hide_usage and b'"usage"' in chunk:
                chunk = _without_usage_chunks(chunk)
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
    except OpenAIError as error:
        await send({"type": "http.response.body", "body": error.to_event(), "more_body": True})
    await send({"type": "http.response.body", "body": b""})
    return stream_usage(tail)


async def stream(
    upstream: Upstream,
    backend: Backend,
    path: str,
    body: codec.Raw,
    send: Any,
    translator: Any = None,
    hide_usage: bool = False,
) -> dict[str, Any] | None:
    """POST to the backend; on 200 relay its stream until it is done.

    The stream passes through as it comes (its usage returned, when it sent one), or, given
    a `translator`, is translated from Ollama's NDJSON (the translator keeps the counts). A
    non-200 answer becomes an ordinary error response (nothing was sent yet).
    """
    async with upstream.stream(backend, path, body) as response:
        if response.status != 200:
            raise backend_error(backend, response.status, await response.read())
        if translator is None:
            return await relay_raw(upstream, backend, response, send, hide_usage)
        await relay_ndjson(upstream, backend, response, send, translator)
        return None
