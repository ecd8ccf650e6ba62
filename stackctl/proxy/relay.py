"""Moving bytes between the client and a backend: whole answers, streams, backend errors.

Streams are sent the moment each backend read arrives (never buffered), while a second task
waits for the client to hang up; if it does, the relay is cancelled at once, which closes the
backend connection (Ollama then stops generating).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

from stackctl.proxy import codec
from stackctl.proxy.errors import OpenAIError
from stackctl.proxy.responses import StreamBroken
from stackctl.proxy.upstream import Backend, Upstream

SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),  # tells nginx and friends not to buffer the stream
]
JSON = b"application/json"


class ClientGone(Exception):
    """The client hung up before its request body arrived: nothing left to answer."""


def _too_large(limit: int) -> OpenAIError:
    return OpenAIError(
        413,
        f"The request body is larger than the proxy's limit of {limit // 1048576} MiB "
        "(proxy.max_body_mb).",
        code="request_too_large",
    )


async def read_body(receive: Any, declared: bytes | None, limit: int) -> bytes:
    """The whole request body, or a 413 as soon as it (or its Content-Length) is past the limit."""
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


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


async def until_hang_up(receive: Any, work: Awaitable[None]) -> None:
    """Run `work` while watching for the client to disconnect; a hang-up cancels it."""
    working = asyncio.ensure_future(work)

    async def hang_up() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    watching = asyncio.ensure_future(hang_up())
    try:
        await asyncio.wait({working, watching}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        working.cancel()
        watching.cancel()
        raise
    if working.done():
        watching.cancel()
        await asyncio.gather(watching, return_exceptions=True)
        working.result()
        return
    working.cancel()
    await asyncio.gather(working, return_exceptions=True)


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
                try:
                    native = codec.loads(line)
                except codec.JSONDecodeError:
                    raise StreamBroken(f"sent a line that is not JSON: {line[:200]!r}") from None
                out += translator.feed(native if isinstance(native, dict) else {})
            if out:
                await send({"type": "http.response.body", "body": out, "more_body": True})
            if translator.finished:
                break
        if not translator.finished:
            raise StreamBroken("ended the stream before the answer was complete (no done line)")
    except StreamBroken as exc:
        error = OpenAIError(502, f"The backend '{backend.name}' {exc}", code="backend_error")
        await send({"type": "http.response.body", "body": error.to_event(), "more_body": True})
    except OpenAIError as error:
        await send({"type": "http.response.body", "body": error.to_event(), "more_body": True})
    await send({"type": "http.response.body", "body": b""})


async def relay_raw(upstream: Upstream, backend: Backend, response: Any, send: Any) -> None:
    """An OpenAI-compatible backend's SSE stream, passed through as it comes."""
    await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
    try:
        async for chunk in upstream.chunks(backend, response):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
    except OpenAIError as error:
        await send({"type": "http.response.body", "body": error.to_event(), "more_body": True})
    await send({"type": "http.response.body", "body": b""})


async def stream(
    upstream: Upstream,
    backend: Backend,
    path: str,
    body: bytes,
    receive: Any,
    send: Any,
    translator: Any = None,
) -> None:
    """POST to the backend; on 200 relay its stream until done or the client hangs up.

    The stream passes through as it comes, or, given a `translator`, is translated from
    Ollama's NDJSON. A non-200 answer becomes an ordinary error response (nothing was sent yet).
    """
    async with upstream.stream(backend, path, body) as response:
        if response.status != 200:
            raise backend_error(backend, response.status, await response.read())
        if translator is None:
            relayed = relay_raw(upstream, backend, response, send)
        else:
            relayed = relay_ndjson(upstream, backend, response, send, translator)
        await until_hang_up(receive, relayed)
