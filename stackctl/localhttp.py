"""Small JSON GETs to the stack's own services, on the standard library.

`stackctl status` asks every service at once and must feel instant; httpx costs 50-150 ms
just to import (httpcore pulls in anyio, and trio when present), more than the checks
themselves. These are plain HTTP/1.1 requests to loopback, so http.client is all we need.
The proxy and `pull` (streams) keep their async clients.
"""

from __future__ import annotations

import http.client
import json
from typing import Any
from urllib.parse import urlsplit


class Unreachable(Exception):
    """The service did not answer; `reason` says how, in words for a status table."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def get_json(
    url: str, *, headers: dict[str, str] | None = None, timeout: float = 2.0
) -> tuple[int, Any]:
    """GET a URL: (status, parsed JSON body or None). Raises Unreachable when it cannot."""
    parts = urlsplit(url)
    connection_class = (
        http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    )
    connection = connection_class(parts.hostname or "127.0.0.1", parts.port, timeout=timeout)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    try:
        connection.request("GET", path, headers={"Accept": "application/json", **(headers or {})})
        response = connection.getresponse()
        raw = response.read()
    except ConnectionRefusedError:
        raise Unreachable("connection refused") from None
    except TimeoutError:
        raise Unreachable("no answer (timed out)") from None
    except (OSError, http.client.HTTPException) as exc:
        raise Unreachable(f"{type(exc).__name__}: {exc}") from None
    finally:
        connection.close()
    if response.status != 200 or not raw:
        return response.status, None
    try:
        return 200, json.loads(raw)
    except ValueError:
        raise Unreachable("answered with something that is not JSON") from None
