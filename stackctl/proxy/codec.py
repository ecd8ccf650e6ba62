"""JSON in and out of the proxy, with orjson: the proxy's main work per request and per
stream chunk is JSON, and orjson does it several times faster than the standard library
(about 15% more requests/s end to end; bench/README.md).

orjson refuses what JSON does not allow (NaN, Infinity, invalid UTF-8, numbers that overflow
a double) and nesting deeper than it can encode: a request that cannot be forwarded is the
client's 400, never the proxy's 500.
"""

from __future__ import annotations

from typing import Any

import orjson

from stackctl.proxy.errors import OpenAIError

# A body as read: bytes, or a bytearray when it came in pieces (relay.read_body); orjson,
# aiohttp and the bytes methods take either.
Raw = bytes | bytearray
JSONDecodeError = orjson.JSONDecodeError
loads = orjson.loads


def dumps(value: Any) -> bytes:
    """Encode for the wire; what orjson cannot encode was the client's doing."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError as exc:
        raise OpenAIError(
            400, f"The request cannot be forwarded as JSON: {exc}.", code="invalid_json"
        ) from None
