"""The door of the proxy: API keys, their limits, and CORS, before any route runs (a plain
ASGI middleware).

With keys configured, every route but /health needs `Authorization: Bearer <key>` (or, as
Anthropic's clients send it, `x-api-key: <key>`; /health answers anyone, with its details
only for a key). The key is looked up by its SHA-256 digest (keyring.py says why that is
safe, and the final match is compared with hmac.compare_digest); an unknown key gets 401, a
key past its limits 429 with `Retry-After`, in the route's dialect (OpenAI's error JSON, or
Anthropic's on /v1/messages). Without keys any bearer, or none, is accepted, as local
servers do. CORS answers preflights itself (so they need no key) and adds the allow-origin
header for the origins in `proxy.cors_origins`.
"""

from __future__ import annotations

import time
from typing import Any

from stackctl.proxy import messages_api
from stackctl.proxy.errors import OpenAIError
from stackctl.proxy.keyring import CURRENT, Keyring, Refusal
from stackctl.proxy.relay import send_bytes

OPEN_PATHS = ("/health",)
AUTHORIZED = "stackctl.authorized"  # scope key: did an open path's request carry a valid key
ALLOW_METHODS = b"GET, POST, OPTIONS"


def presented_key(header: bytes | None, api_key: bytes | None) -> bytes | None:
    """The key a request carries: its bearer token, else its x-api-key."""
    if header and header[:7].lower() == b"bearer ":
        return header[7:].strip()
    if api_key:
        return api_key.strip()
    return None


def _dialect_json(error: OpenAIError, path: str) -> bytes:
    if path.removeprefix("/v1").startswith("/messages"):
        return messages_api.error_json(error)
    return error.to_json()


class Gate:
    """Auth and CORS in front of the app."""

    def __init__(self, app: Any, keyring: Keyring, cors_origins: list[str]):
        self.app = app
        self.keyring = keyring
        self.origins = {o.rstrip("/").encode() for o in cors_origins}
        self.any_origin = b"*" in self.origins

    def allowed_origin(self, origin: bytes) -> bool:
        return self.any_origin or origin.rstrip(b"/") in self.origins

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        origin = headers.get(b"origin") if self.origins else None
        cors: list[tuple[bytes, bytes]] = []
        if origin is not None and self.allowed_origin(origin):
            cors = [
                (b"access-control-allow-origin", b"*" if self.any_origin else origin),
                (b"vary", b"Origin"),
            ]
        if (
            scope["method"] == "OPTIONS"
            and origin is not None
            and b"access-control-request-method" in headers
        ):
            await self.preflight(send, headers, cors)
            return
        if self.keyring.required:
            authorization, api_key = headers.get(b"authorization"), headers.get(b"x-api-key")
            presented = presented_key(authorization, api_key)
            now = time.monotonic()
            key = None if presented is None else self.keyring.find(presented, now)
            if scope["path"] in OPEN_PATHS:
                # open to anyone; the route shows details only to a key holder (AUTHORIZED)
                scope[AUTHORIZED] = key is not None
            elif key is None:
                no_key = authorization is None and api_key is None
                await self.refuse(send, no_key, cors, scope["path"])
                return
            else:
                refusal = key.admit(now, time.time())
                if refusal is not None:
                    await self.too_many(send, refusal, cors, scope["path"])
                    return
                token = CURRENT.set(key)
                try:
                    await self.app(scope, receive, with_cors(send, cors) if cors else send)
                finally:
                    CURRENT.reset(token)
                return
        await self.app(scope, receive, with_cors(send, cors) if cors else send)

    async def preflight(self, send: Any, headers: dict[bytes, bytes], cors: list) -> None:
        if not cors:
            error = OpenAIError(
                403,
                "This origin may not call the proxy: add it to proxy.cors_origins in stack.yaml.",
                code="origin_not_allowed",
            )
            await send_bytes(send, 403, error.to_json())
            return
        requested = headers.get(b"access-control-request-headers", b"authorization, content-type")
        extra = [
            *cors,
            (b"access-control-allow-methods", ALLOW_METHODS),
            (b"access-control-allow-headers", requested),
            (b"access-control-max-age", b"600"),
        ]
        await send_bytes(send, 204, b"", None, extra)

    async def refuse(self, send: Any, no_header: bool, cors: list, path: str = "") -> None:
        if no_header:
            message = (
                "You didn't provide an API key. Send it as `Authorization: Bearer <key>` "
                "or `x-api-key: <key>` (the proxy's keys are in proxy.api_keys or "
                "proxy.api_keys_file)."
            )
        else:
            message = "Incorrect API key provided. The proxy's keys are in proxy.api_keys or proxy.api_keys_file."
        error = OpenAIError(401, message, code="invalid_api_key")
        body = _dialect_json(error, path)
        await send_bytes(send, 401, body, extra=[*cors, (b"www-authenticate", b"Bearer")])

    async def too_many(self, send: Any, refusal: Refusal, cors: list, path: str) -> None:
        """429 as OpenAI answers past a rate limit: `type` names the limit ("requests" or
        "tokens"), `code` is "rate_limit_exceeded", and Retry-After says when to come back."""
        error = OpenAIError(429, refusal.message, type=refusal.kind, code="rate_limit_exceeded")
        retry = (b"retry-after", str(refusal.retry_after).encode())
        await send_bytes(send, 429, _dialect_json(error, path), extra=[*cors, retry])


def with_cors(send: Any, cors: list) -> Any:
    """`send` that adds the CORS headers to the response's start."""

    async def send_with_cors(message: dict) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), *cors]}
        await send(message)

    return send_with_cors
