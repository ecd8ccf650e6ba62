"""Serving the agents' dialects (Anthropic Messages, OpenAI Responses) on the chat path.

A dialect turns its request into a chat-completion request (its `to_chat`), and the chat
answer back into its own (`answer`, or a stream `writer` fed by chat_events). Between the
two, the request goes where a chat completion goes, with the same guarantees: aliases and
keys, the connection's default params, `proxy.model_options` pinned for Ollama, metrics
under the dialect's route, a client hang-up cancelling the backend request, and errors in
the dialect's own shape (never a 500 page).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

from stackctl.proxy import (
    chat_events,
    codec,
    messages_api,
    relay,
    responses,
    responses_api,
    schemas,
    translate,
)
from stackctl.proxy.context_limit import HEADER
from stackctl.proxy.errors import OpenAIError
from stackctl.proxy.responses import StreamBroken
from stackctl.proxy.shapes import WrongShape
from stackctl.proxy.validate import parse_body, require_model

log = logging.getLogger("stackctl.proxy")

PING_SECONDS = 10.0  # a silent backend (a model loading) still shows the client a live stream


@dataclass(frozen=True)
class Dialect:
    """How one agent-facing route maps onto the chat path."""

    route: str
    to_chat: Callable[[dict], dict]
    # (chat completion, the request, the model the client named) -> the dialect's answer
    answer: Callable[[dict, dict, str], dict]
    # (the request, the model the client named) -> a chat_events.Writer
    writer: Callable[[dict, str], Any]
    error_json: Callable[[OpenAIError], bytes]


MESSAGES = Dialect(
    "/v1/messages",
    messages_api.to_chat,
    lambda completion, body, model: messages_api.message(completion, model),
    lambda body, model: messages_api.MessagesStream(model),
    messages_api.error_json,
)
RESPONSES = Dialect(
    "/v1/responses",
    responses_api.to_chat,
    responses_api.response,
    responses_api.ResponsesStream,
    lambda error: error.to_json(),
)


def _content_length(scope: dict) -> bytes | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return value
    return None


@dataclass
class Call:
    """One translated request, ready for its backend."""

    path: str
    payload: bytes
    native: bool  # Ollama's /api/chat (else an OpenAI-compatible /chat/completions)
    pinned: dict[str, Any]
    parallel_tool_calls: bool = True


def prepare(proxy: Any, route: Any, chat: dict[str, Any]) -> Call:
    """The chat request for the routed backend: checked and translated for Ollama, as is else."""
    backend = route.backend
    parallel = chat.get("parallel_tool_calls") is not False
    if backend.params:
        chat = {**backend.params, **chat}
    if backend.mode != "ollama":
        chat = {**chat, "model": route.model}
        think = chat.pop("think", None)
        if think is not None:  # vLLM's and llama.cpp's switch for thinking chat templates
            chat["chat_template_kwargs"] = {"enable_thinking": bool(think)}
        if chat.get("stream"):
            chat["stream_options"] = {"include_usage": True}
        return Call("/chat/completions", codec.dumps(chat), False, {}, parallel)
    schemas.check_chat(chat)
    pinned = proxy.pinned(route)
    native = translate.chat_to_ollama(chat, route.model, pinned)
    return Call("/api/chat", codec.dumps(native), True, pinned, parallel)


async def serve(proxy: Any, dialect: Dialect, scope: dict, receive: Any, send: Any) -> None:
    """Answer one request of `dialect` (the ASGI endpoint's body). From the routing on, a
    client that hangs up cancels the work (relay.until_hang_up), as on the chat routes."""
    started = time.perf_counter()
    status, label, backend_name = 500, "", "-"
    requested = ""
    body: dict[str, Any] = {}
    chat: dict[str, Any] = {}

    def forward(send: Any) -> Awaitable[int]:  # returns the coroutine: one frame fewer
        async def attempt(route: Any) -> int:
            nonlocal label, backend_name
            label, backend_name = route.label, route.backend.name
            call = prepare(proxy, route, chat)
            if chat.get("stream"):
                writer = dialect.writer(body, requested)
                return await stream(proxy, route, call, writer, chat, send)
            return await whole(proxy, dialect, route, call, body, requested, send)

        return proxy.registry.failover(requested, attempt)

    try:
        raw = await relay.read_body(receive, _content_length(scope), proxy.limit)
        body = parse_body(raw)
        requested = require_model(body)
        chat = dialect.to_chat(body)
        status = await relay.until_hang_up(scope, receive, send, forward)
    except relay.ClientGone:
        status = 499
    except OpenAIError as error:
        status = error.status
        if error.status >= 502:
            proxy.metrics.backend_error(backend_name, error.status)
        await relay.send_bytes(send, error.status, dialect.error_json(error))
    except Exception:
        log.exception("internal error while answering %s", dialect.route)
        failure = OpenAIError(500, "The proxy failed while answering; its log has the details.")
        await relay.send_bytes(send, 500, dialect.error_json(failure))
    finally:
        proxy.metrics.observe(dialect.route, label, status, time.perf_counter() - started)


async def whole(
    proxy: Any,
    dialect: Dialect,
    route: Any,
    call: Call,
    body: dict,
    requested: str,
    send: Any,
) -> int:
    """A whole answer, translated into the dialect."""
    backend = route.backend
    reply = await proxy.upstream.call(backend, "POST", call.path, call.payload)
    if not 200 <= reply.status < 300:
        raise relay.backend_error(backend, reply.status, reply.body)
    result, extra = relay.backend_json(backend, reply.body), None
    completion = result
    if call.native:
        try:
            completion = responses.chat_completion(
                result, requested, parallel_tool_calls=call.parallel_tool_calls
            )
        except WrongShape as exc:
            raise relay.wrong_shape(backend, exc) from None
        full = await proxy.context.check(backend, route.model, result, call.pinned)
        extra = [(HEADER, full)] if full else None
    proxy.metrics.count_tokens(route.label, completion.get("usage"))
    answer = dialect.answer(completion, body, requested)
    await relay.send_bytes(send, 200, codec.dumps(answer), extra=extra)
    return 200


async def stream(
    proxy: Any,
    route: Any,
    call: Call,
    writer: Any,
    chat: dict,
    send: Any,
) -> int:
    """A streamed answer in the dialect's events, a ping while the backend is silent."""
    backend = route.backend
    if call.native:
        source: Any = chat_events.OllamaSource(writer, call.parallel_tool_calls)
    else:
        source = chat_events.ChatChunkSource(writer)
    proxy.metrics.streams_in_flight += 1
    try:
        async with proxy.upstream.stream(backend, call.path, call.payload) as response:
            if response.status != 200:
                raise relay.backend_error(backend, response.status, await response.read())
            await _relay(proxy, backend, response, source, writer, send)
        if call.native and source.finished:
            await proxy.context.check(backend, route.model, source.last, call.pinned)
        proxy.metrics.count_tokens(route.label, source.usage)
    finally:
        proxy.metrics.streams_in_flight -= 1
    return 200


async def _relay(
    proxy: Any, backend: Any, response: Any, source: Any, writer: Any, send: Any
) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": relay.SSE_HEADERS})
    await send({"type": "http.response.body", "body": writer.start(), "more_body": True})
    last_sent = time.monotonic()

    async def keep_alive() -> None:
        while True:
            await asyncio.sleep(PING_SECONDS - (time.monotonic() - last_sent))
            if time.monotonic() - last_sent >= PING_SECONDS:
                await send({"type": "http.response.body", "body": writer.ping(), "more_body": True})

    pinger = asyncio.ensure_future(keep_alive())
    try:
        async for lines in proxy.upstream.lines(backend, response):
            out = b""
            for line in lines:
                out += source.feed(line)
            if out:
                last_sent = time.monotonic()
                await send({"type": "http.response.body", "body": out, "more_body": True})
            if source.finished:
                break
        if not source.finished:
            raise StreamBroken("ended the stream before the answer was complete")
    except Exception as exc:  # the answer started: end it with an error event, never cut it off
        await _send_failure(pinger, writer, relay.stream_failure(backend, exc), send)
        return
    pinger.cancel()
    await asyncio.gather(pinger, return_exceptions=True)
    await send({"type": "http.response.body", "body": b""})


async def _send_failure(pinger: Any, writer: Any, error: OpenAIError, send: Any) -> None:
    pinger.cancel()
    await asyncio.gather(pinger, return_exceptions=True)
    await send({"type": "http.response.body", "body": writer.fail(error), "more_body": True})
    await send({"type": "http.response.body", "body": b""})


async def _tokenized(proxy: Any, route: Any, chat: dict[str, Any]) -> int | None:
    """The prompt's tokens by the backend's own tokenizer: vLLM's POST /tokenize (at the
    server's root, with the chat messages and tools). None where there is none (Ollama)."""
    backend = route.backend
    if backend.mode == "ollama":
        return None
    payload = {"model": route.model, "messages": chat["messages"], "add_generation_prompt": True}
    if chat.get("tools"):
        payload["tools"] = chat["tools"]
    root = backend.base_url.removesuffix("/v1")
    try:
        reply = await proxy.upstream.call(
            replace(backend, base_url=root), "POST", "/tokenize", codec.dumps(payload)
        )
        count = codec.loads(reply.body).get("count") if reply.status == 200 else None
    except (OpenAIError, ValueError, AttributeError):
        return None
    return count if isinstance(count, int) else None


async def count_tokens(proxy: Any, scope: dict, receive: Any, send: Any) -> None:
    """POST /v1/messages/count_tokens: `{"input_tokens": n}`, by the backend's tokenizer where
    it has one, else estimated (messages_api.count_estimate)."""
    started = time.perf_counter()
    status, label = 500, ""
    try:
        raw = await relay.read_body(receive, _content_length(scope), proxy.limit)
        body = parse_body(raw)
        requested = require_model(body)
        chat = messages_api.to_chat({**body, "max_tokens": body.get("max_tokens") or 1})
        route = await proxy.registry.route(requested)
        label = requested
        count = await _tokenized(proxy, route, chat)
        if count is None:
            count = messages_api.count_estimate(chat)
        await relay.send_bytes(send, 200, codec.dumps({"input_tokens": count}))
        status = 200
    except relay.ClientGone:
        status = 499
    except OpenAIError as error:
        status = error.status
        await relay.send_bytes(send, error.status, messages_api.error_json(error))
    except Exception:
        log.exception("internal error while counting tokens")
        failure = OpenAIError(500, "The proxy failed while answering; its log has the details.")
        await relay.send_bytes(send, 500, messages_api.error_json(failure))
    finally:
        proxy.metrics.observe(
            "/v1/messages/count_tokens", label, status, time.perf_counter() - started
        )
