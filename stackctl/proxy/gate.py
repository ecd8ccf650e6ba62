"""The door of the proxy: API keys and CORS, before any route runs (a plain ASGI middleware).

With keys configured, every route but /health needs `Authorization: Bearer <key>` (or, as
Anthropic's clients send it, `x-api-key: <key>`; /health answers anyone, with its details
only for a key), compared
in constant time (hmac.compare_digest on SHA-256 digests, so neither the content nor the
length of a key leaks through timing). Without keys any bearer, or none, is accepted, as
local servers do. CORS answers preflights itself (so they need no key) and adds the
allow-origin header for the origins in `proxy.cors_origins`.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from stackctl.proxy import messages_api
from stackctl.proxy.errors import OpenAIError
from stackctl.proxy.relay import send_bytes

OPEN_PATHS = ("/health",)
AUTHORIZED = "stackctl.authorized"  # scope key: did an open path's request carry a valid key
ALLOW_METHODS = b"GET, POST, OPTIONS"


def _digest(key: str | bytes) -> bytes:
    return hashlib.sha256(key.encode() if isinstance(key, str) else key).digest()


class Gate:
    """Auth and CORS in front of the app."""

    def __init__(self, app: Any, api_keys: list[str], cors_origins: list[str]):
        self.app = app
        self.digests = [_digest(k) for k in api_keys]
        self.origins = {o.rstrip("/").encode() for o in cors_origins}
        self.any_origin = b"*" in self.origins

    def authorized(self, header: bytes | None, api_key: bytes | None = None) -> bool:
        if not self.digests:
            return True
        if header and header[:7].lower() == b"bearer ":
            presented = _digest(header[7:].strip())
        elif api_key:
            presented = _digest(api_key.strip())
        else:
            return False
        matched = False
        for digest in self.digests:  # no early exit: every key is compared every time
            matched |= hmac.compare_digest(presented, digest)
        return matched

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
        presented = headers.get(b"authorization"), headers.get(b"x-api-key")
        if scope["path"] in OPEN_PATHS:
            # open to anyone; the route shows details only to a key holder (AUTHORIZED)
            scope[AUTHORIZED] = self.authorized(*presented)
        elif not self.authorized(*presented):
            no_key = presented == (None, None)
            await self.refuse(send, no_key, cors, scope["path"])
            return
        if cors:

            async def send_with_cors(message: dict) -> None:
                if message["type"] == "http.response.start":
                    message = {**message, "headers": [*message.get("headers", []), *cors]}
                await send(message)

            await self.app(scope, receive, send_with_cors)
            return
        await self.app(scope, receive, send)

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
        anthropic = path.removeprefix("/v1").startswith("/messages")
        body = messages_api.error_json(error) if anthropic else error.to_json()
        await send_bytes(send, 401, body, extra=[*cors, (b"www-authenticate", b"Bearer")])
