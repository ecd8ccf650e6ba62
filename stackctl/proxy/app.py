"""The proxy's ASGI app: `create_app(settings, backends=…, keyring=…)` returns a Starlette app.

Routes: POST /v1/chat/completions, /v1/completions, /v1/embeddings; for coding agents,
POST /v1/messages (+ /count_tokens) and /v1/responses (dialects.py); GET /v1/models,
/v1/models/{id}; GET /health (the status for anyone, the details for a key); GET /metrics.
The same routes answer without the /v1 prefix, for clients configured with a base URL that
lacks it.

The request handlers are plain ASGI callables (no Request objects on the hot path): each
reads the body (413 past the limit), parses it, routes the model, and either forwards the
request unaltered to an OpenAI-compatible backend or translates it for Ollama.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from stackctl.proxy import codec, dialects, relay, responses, schemas, translate
from stackctl.proxy.context_limit import HEADER as CONTEXT_HEADER
from stackctl.proxy.context_limit import ContextWatch
from stackctl.proxy.errors import OpenAIError
from stackctl.proxy.gate import AUTHORIZED, Gate
from stackctl.proxy.keyring import CURRENT as CURRENT_KEY
from stackctl.proxy.keyring import Keyring
from stackctl.proxy.metrics import Metrics
from stackctl.proxy.metrics import labels as metrics_labels
from stackctl.proxy.models import LIST_TIMEOUT, Destination, ModelRegistry
from stackctl.proxy.shapes import WrongShape
from stackctl.proxy.upstream import Backend, Upstream
from stackctl.proxy.validate import parse_body, require_model

if TYPE_CHECKING:
    from stackctl.config.model import ProxySection

log = logging.getLogger("stackctl.proxy")


@dataclass(frozen=True)
class RouteSpec:
    """How one OpenAI route maps onto Ollama and onto an OpenAI-compatible backend."""

    path: str  # the route's path, as the metrics label it
    check: Callable[[dict], None]
    to_ollama: Callable[[dict, str, dict], dict]
    ollama_path: str
    openai_path: str
    # (Ollama's reply, the model the client named, the request) -> the OpenAI answer
    answer: Callable[[dict, str, dict], dict]
    # (the model the client named, include_usage, the request) -> a stream translator
    translator: Callable[[str, bool, dict], Any] | None = None

    @property
    def streams(self) -> bool:
        return self.translator is not None


def _counts_tokens() -> bool:
    """Does the request's key have a tokens-a-day limit (so its tokens must be counted)?"""
    key = CURRENT_KEY.get()
    return key is not None and bool(key.record.tokens_per_day)


def _asked_for_usage(body: dict) -> bool:
    """True also for a `stream_options` that is not an object: the backend answers that."""
    options = body.get("stream_options")
    if options is None:
        return False
    return not isinstance(options, dict) or options.get("include_usage") is True


def _parallel_tool_calls(body: dict) -> bool:
    return body.get("parallel_tool_calls") is not False


def _echo(body: dict) -> str | None:
    if not body.get("echo"):
        return None
    prompt = body["prompt"]
    return prompt[0] if isinstance(prompt, list) else prompt


CHAT_ROUTE = RouteSpec(
    "/v1/chat/completions",
    schemas.check_chat,
    translate.chat_to_ollama,
    "/api/chat",
    "/chat/completions",
    lambda native, model, body: responses.chat_completion(
        native, model, parallel_tool_calls=_parallel_tool_calls(body)
    ),
    lambda model, usage, body: responses.ChatStream(model, usage, _parallel_tool_calls(body)),
)
COMPLETION_ROUTE = RouteSpec(
    "/v1/completions",
    schemas.check_completion,
    translate.completion_to_ollama,
    "/api/generate",
    "/completions",
    lambda native, model, body: responses.text_completion(native, model, _echo(body)),
    lambda model, usage, body: responses.CompletionStream(model, usage, _echo(body)),
)
EMBEDDING_ROUTE = RouteSpec(
    "/v1/embeddings",
    schemas.check_embedding,
    translate.embedding_to_ollama,
    "/api/embed",
    "/embeddings",
    lambda native, model, body: responses.embeddings(
        native, model, body.get("encoding_format"), translate.dimensions(body)
    ),
)


def _internal_error() -> OpenAIError:
    """What a client sees when the proxy itself fails (the traceback goes to the log)."""
    return OpenAIError(
        500, "The proxy failed while answering; its log has the details.", type="server_error"
    )


def _content_length(scope: dict) -> bytes | None:
    for name, value in scope["headers"]:  # ASGI gives header names in lower case
        if name == b"content-length":
            return value
    return None


class Endpoint:
    """A plain ASGI endpoint (Starlette wraps functions in Request/Response; this it leaves be).

    `answers_errors`: the function turns every failure into a response itself, so it may be
    called directly (DirectRoutes), past Starlette's exception layer and router.
    """

    def __init__(self, function: Callable, *, answers_errors: bool = False):
        self.function = function
        self.answers_errors = answers_errors

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        await self.function(scope, receive, send)


class DirectRoutes:
    """Calls the routes whose endpoint answers its own errors straight from a dict lookup.

    This is the proxy's hot path (the POST routes): Starlette's exception layer and its
    router, which tries each route's regex in turn, are skipped. The routes are the app's
    one route list; everything else goes on to Starlette's router.
    """

    def __init__(self, app: Any, routes: list[Any]):
        self.app = app
        self.direct = {
            (method, route.path): route.endpoint.function  # past Endpoint's own __call__
            for route in routes
            if isinstance(route.endpoint, Endpoint)
            and route.endpoint.answers_errors
            and not route.param_convertors
            for method in route.methods
        }

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            endpoint = self.direct.get((scope["method"], scope["path"]))
            if endpoint is not None:
                await endpoint(scope, receive, send)
                return
        await self.app(scope, receive, send)


class Proxy:
    """The state behind the routes: backends, model registry, metrics, limits."""

    def __init__(self, settings: ProxySection, backends: list[Backend], keyring: Keyring):
        self.keyring = keyring
        self.upstream = Upstream(
            settings.connect_timeout, settings.read_timeout, settings.max_answer_mb * 1024 * 1024
        )
        self.registry = ModelRegistry(
            backends,
            settings.aliases,
            self.upstream,
            settings.models_cache_seconds,
            list_timeout=min(LIST_TIMEOUT, settings.read_timeout),
        )
        self.metrics = Metrics()
        self.context = ContextWatch(self.upstream)
        self.pins: dict[str, dict[str, Any]] = {
            k.lower(): v for k, v in settings.model_options.items()
        }
        self.limit = int(settings.max_body_mb) * 1024 * 1024

    @asynccontextmanager
    async def lifespan(self, app: Any):
        await self.upstream.open()
        await self.registry.ensure(wait=False)  # warm the model list in the background
        usage = asyncio.ensure_future(self.keyring.keep_usage())
        self.keyring.reload_on_hangup()
        try:
            yield
        finally:
            usage.cancel()
            self.keyring.flush()
            await self.registry.close()
            await self.upstream.close()

    def pinned(self, destination: Destination) -> dict[str, Any]:
        """proxy.model_options for the model (`gemma3` finds `gemma3:latest` and back)."""
        name = destination.model.lower()
        plain = name[: -len(":latest")] if name.endswith(":latest") else name
        return self.pins.get(name) or self.pins.get(plain) or self.pins.get(plain + ":latest") or {}

    def handler(self, spec: RouteSpec) -> Endpoint:
        return Endpoint(functools.partial(self.handle, spec), answers_errors=True)

    def dialect(self, dialect: dialects.Dialect) -> Endpoint:
        return Endpoint(functools.partial(dialects.serve, self, dialect), answers_errors=True)

    async def count_tokens(self, scope: dict, receive: Any, send: Any) -> None:
        await dialects.count_tokens(self, scope, receive, send)

    async def handle(self, spec: RouteSpec, scope: dict, receive: Any, send: Any) -> None:
        started = time.perf_counter()
        status, label, backend_name = 500, "", "-"
        raw: codec.Raw = b""
        requested = ""
        body: dict[str, Any] = {}

        # plain functions returning the coroutine: a request awaits through fewer frames
        def forward(send: Any) -> Awaitable[int]:
            def attempt(destination: Destination) -> Awaitable[int]:
                nonlocal label, backend_name
                label, backend_name = destination.label, destination.backend.name
                return self.forward(spec, destination, body, raw, requested, send)

            return self.registry.failover(requested, attempt)

        try:
            raw = await relay.read_body(receive, _content_length(scope), self.limit)
            body = parse_body(raw)
            requested = require_model(body)
            status = await relay.until_hang_up(scope, receive, send, forward)
        except relay.ClientGone:
            status = 499  # nginx's "client closed request", for the metrics only
        except OpenAIError as error:
            status = error.status
            if error.status >= 502:
                self.metrics.backend_error(backend_name, error.status)
            await relay.send_bytes(
                send, error.status, error.to_json(), extra=list(error.headers.items()) or None
            )
        except Exception:
            log.exception("internal error while answering %s", spec.path)
            await relay.send_bytes(send, 500, _internal_error().to_json())
        finally:
            self.metrics.observe(spec.path, label, status, time.perf_counter() - started)

    async def forward(
        self,
        spec: RouteSpec,
        destination: Destination,
        body: dict,
        raw: codec.Raw,
        requested: str,
        send: Any,
    ) -> int:
        """The request to one destination, with the connection's default params applied."""
        backend = destination.backend
        if backend.params and any(body.get(k) is None for k in backend.params):
            body = {**backend.params, **{k: v for k, v in body.items() if v is not None}}
            raw = b""
        if backend.mode == "openai_compatible":
            return await self.passthrough(spec, destination, body, raw, requested, send)
        return await self.translated(spec, destination, body, requested, send)

    async def passthrough(
        self,
        spec: RouteSpec,
        destination: Destination,
        body: dict,
        raw: codec.Raw,
        requested: str,
        send: Any,
    ) -> int:
        """Forward unaltered (only the alias and the connection's default params applied)."""
        backend = destination.backend
        if destination.model != requested or not raw:
            body = {**body, "model": destination.model}
            raw = codec.dumps(body)
        if spec.streams and body.get("stream") is True:
            hide_usage = False
            if _counts_tokens() and not _asked_for_usage(body):
                # a key's tokens a day are counted from the usage the client did not ask for
                options = body.get("stream_options") or {}
                body = {**body, "stream_options": {**options, "include_usage": True}}
                raw, hide_usage = codec.dumps(body), True
            return await self.stream(
                backend, spec.openai_path, raw, send, label=destination.label, hide_usage=hide_usage
            )
        reply = await self.upstream.call(backend, "POST", spec.openai_path, raw)
        if not 200 <= reply.status < 300:
            raise relay.backend_error(backend, reply.status, reply.body)
        data = self._answered(
            reply.body, destination.label, requested, rename=destination.model != requested
        )
        await relay.send_bytes(send, reply.status, data, reply.content_type.encode() or relay.JSON)
        return reply.status

    async def stream(
        self,
        backend: Backend,
        path: str,
        body: codec.Raw,
        send: Any,
        translator: Any = None,
        *,
        label: str = "",
        hide_usage: bool = False,
    ) -> int:
        """Relay a streamed answer (relay.stream), counted in streams_in_flight; the tokens
        of one passed through are counted when it ends with a usage."""
        self.metrics.streams_in_flight += 1
        try:
            usage = await relay.stream(
                self.upstream, backend, path, body, send, translator, hide_usage
            )
        finally:
            self.metrics.streams_in_flight -= 1
        if usage is not None:
            self.metrics.count_tokens(label, usage)
        return 200

    def _answered(self, data: bytes, label: str, requested: str, *, rename: bool) -> bytes:
        """Count the tokens of a passed-through answer; give it the alias the client used."""
        try:
            reply = codec.loads(data)
        except codec.JSONDecodeError:
            return data
        if not isinstance(reply, dict):
            return data
        self.metrics.count_tokens(label, reply.get("usage"))
        if rename and "model" in reply:
            reply["model"] = requested
            return codec.dumps(reply)
        return data

    async def translated(
        self,
        spec: RouteSpec,
        destination: Destination,
        body: dict,
        requested: str,
        send: Any,
    ) -> int:
        """Check, translate to Ollama's native API, and translate the answer back."""
        spec.check(body)
        pinned = self.pinned(destination)
        native = codec.dumps(spec.to_ollama(body, destination.model, pinned))
        backend = destination.backend
        if spec.translator and body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            translator = spec.translator(requested, include_usage, body)
            await self.stream(backend, spec.ollama_path, native, send, translator)
            if translator.done_line:
                self.metrics.count_tokens(destination.label, responses.usage(translator.done_line))
                await self.context.check(backend, destination.model, translator.done_line, pinned)
            return 200
        reply = await self.upstream.call(backend, "POST", spec.ollama_path, native)
        if reply.status != 200:
            raise relay.backend_error(backend, reply.status, reply.body)
        result = relay.backend_json(backend, reply.body)
        try:
            answer = spec.answer(result, requested, body)
        except WrongShape as exc:
            raise relay.wrong_shape(backend, exc) from None
        self.metrics.count_tokens(destination.label, answer.get("usage"))
        full = await self.context.check(backend, destination.model, result, pinned)
        extra = [(CONTEXT_HEADER, full)] if full else None
        await relay.send_bytes(send, 200, codec.dumps(answer), extra=extra)
        return 200

    # -- GET routes ------------------------------------------------------------------------

    async def models(self, scope: dict, receive: Any, send: Any) -> None:
        started = time.perf_counter()
        params = scope.get("path_params") or {}
        status = 200
        try:
            if "model" in params:
                payload: dict[str, Any] = await self.registry.card(params["model"])
            else:
                payload = {"object": "list", "data": await self.registry.cards()}
            await relay.send_bytes(send, 200, codec.dumps(payload))
        except OpenAIError as error:
            status = error.status
            await relay.send_bytes(send, error.status, error.to_json())
        finally:
            route = "/v1/models/{model}" if "model" in params else "/v1/models"
            self.metrics.observe(route, "", status, time.perf_counter() - started)

    async def health(self, scope: dict, receive: Any, send: Any) -> None:
        """The status for anyone; the connections (names, URLs, errors) only for a key holder,
        or for anyone when the proxy has no keys (it then listens on loopback only)."""
        connections = await self.registry.health()
        healthy = all(c["reachable"] for c in connections)
        payload: dict[str, Any] = {"status": "ok" if healthy else "degraded"}
        if scope.get(AUTHORIZED, True):
            payload["connections"] = connections
        await relay.send_bytes(send, 200, codec.dumps(payload))

    async def prometheus(self, scope: dict, receive: Any, send: Any) -> None:
        text = self.metrics.render() + self.context.render()
        body = (text + self.keyring.render(metrics_labels)).encode()
        await relay.send_bytes(send, 200, body, b"text/plain; version=0.0.4; charset=utf-8")


def _error_handlers() -> dict:
    from starlette.exceptions import HTTPException
    from starlette.responses import Response

    async def http_error(request: Any, exc: Any) -> Response:
        if exc.status_code == 404:
            message = (
                f"Unknown request URL: {request.method} {request.url.path}. The proxy serves "
                "/v1/chat/completions, /v1/completions, /v1/embeddings, /v1/messages, "
                "/v1/responses, /v1/models, /health and /metrics."
            )
            error = OpenAIError(404, message, code="unknown_url")
        elif exc.status_code == 405:
            error = OpenAIError(
                405,
                f"{request.method} is not allowed on {request.url.path}.",
                code="method_not_allowed",
            )
        else:
            error = OpenAIError(exc.status_code, str(exc.detail))
        return Response(
            error.to_json(),
            status_code=error.status,
            media_type="application/json",
            headers=exc.headers,
        )

    async def internal_error(request: Any, exc: Exception) -> Response:
        log.error("internal error on %s %s", request.method, request.url.path, exc_info=exc)
        return Response(_internal_error().to_json(), status_code=500, media_type="application/json")

    return {HTTPException: http_error, Exception: internal_error}


def create_app(
    settings: ProxySection,
    *,
    backends: list[Backend],
    api_keys: list[str] | None = None,
    keyring: Keyring | None = None,
) -> Any:
    """The proxy app for stack.yaml's `proxy:` section, in front of `backends`, open to the
    keys of `keyring` (reloaded as they change), or to the fixed `api_keys` (none: any)."""
    from starlette import routing
    from starlette.applications import Starlette
    from starlette.middleware import Middleware

    keyring = keyring or Keyring.fixed(api_keys or [])
    proxy = Proxy(settings, backends, keyring)
    routes = [
        routing.Route("/health", Endpoint(proxy.health), methods=["GET", "HEAD"]),
        routing.Route("/metrics", Endpoint(proxy.prometheus), methods=["GET"]),
    ]
    for prefix in ("/v1", ""):
        for spec in (CHAT_ROUTE, COMPLETION_ROUTE, EMBEDDING_ROUTE):
            path = prefix + spec.openai_path
            routes.append(routing.Route(path, proxy.handler(spec), methods=["POST"]))
        agent_routes = {  # the coding agents' dialects (dialects.py)
            "/messages": proxy.dialect(dialects.MESSAGES),
            "/messages/count_tokens": Endpoint(proxy.count_tokens, answers_errors=True),
            "/responses": proxy.dialect(dialects.RESPONSES),
        }
        for path, endpoint in agent_routes.items():
            routes.append(routing.Route(prefix + path, endpoint, methods=["POST"]))
        routes += [
            routing.Route(f"{prefix}/models", Endpoint(proxy.models), methods=["GET"]),
            routing.Route(
                f"{prefix}/models/{{model:path}}", Endpoint(proxy.models), methods=["GET"]
            ),
        ]
    middleware = [
        Middleware(Gate, keyring=keyring, cors_origins=list(settings.cors_origins)),
        Middleware(DirectRoutes, routes=routes),
    ]
    return Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers=_error_handlers(),
        lifespan=proxy.lifespan,
    )
