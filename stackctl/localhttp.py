"""Small JSON GETs to the stack's own services, on the standard library.

`stackctl status` asks every service at once and must feel instant; httpx costs 50-150 ms
just to import (httpcore pulls in anyio, and trio when present), more than the checks
themselves. These are plain HTTP/1.1 requests to loopback, so http.client is all we need.
The proxy and `pull` (streams) keep their async clients.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
from typing import Any
from urllib.parse import urlsplit


class Unreachable(Exception):
    """The service did not answer; `reason` says how, in words for a status table."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class _LoopbackHTTPS(http.client.HTTPSConnection):
    """HTTPS to an address, asking for `server_name` (SNI, Host) without verifying the
    certificate: how stackctl checks its own HTTPS front on loopback, whoever issued it."""

    def __init__(self, address: str, port: int | None, server_name: str, timeout: float):
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        super().__init__(server_name, port, timeout=timeout, context=context)
        self.address = address
        self.context = context

    def connect(self) -> None:
        raw = socket.create_connection((self.address, self.port), self.timeout)
        self.sock = self.context.wrap_socket(raw, server_hostname=self.host)


def get_json(
    url: str,
    *,
    headers: dict[str, str] | None = None,
    timeout: float = 2.0,
    server_name: str | None = None,
    text: bool = False,
) -> tuple[int, Any]:
    """GET a URL: (status, parsed JSON body or None; with `text`, the body as text). Raises
    Unreachable when it cannot. An https URL is asked for `server_name` and its certificate
    is not verified."""
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    connection: http.client.HTTPConnection
    if parts.scheme == "https":
        connection = _LoopbackHTTPS(host, parts.port, server_name or host, timeout)
    else:
        connection = http.client.HTTPConnection(host, parts.port, timeout=timeout)
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
    if text:
        return 200, raw.decode("utf-8", "replace")
    try:
        return 200, json.loads(raw)
    except ValueError:
        raise Unreachable("answered with something that is not JSON") from None
