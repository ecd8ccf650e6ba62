"""The HTTP client the proxy uses to reach its backends (aiohttp: see bench/README.md).

One pooled session for all backends: connections are kept alive and reused. Each request
carries the proxy's own Host header (aiohttp derives it from the backend URL; Ollama answers
403 to a foreign Host on loopback), times out on connect (`proxy.connect_timeout`) and on
silence (`proxy.read_timeout`, the longest pause between two reads of an answer), and a
stream that is abandoned closes its connection, which makes Ollama stop generating.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from stackctl import __version__
from stackctl.proxy import codec
from stackctl.proxy.errors import OpenAIError

if TYPE_CHECKING:
    from stackctl.config.model import Connection


@dataclass
class Backend:
    """A connection from the config, ready to use (its key read from the environment)."""

    name: str
    mode: str  # "ollama" | "openai_compatible"
    base_url: str
    api_key: str | None = None
    params: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_connection(cls, connection: Connection) -> Backend:
        return cls(
            name=connection.name,
            mode=connection.mode,
            base_url=connection.base_url.rstrip("/"),
            api_key=connection.key(os.environ),
            params=dict(connection.params or {}),
        )

    def __repr__(self) -> str:  # never show the key
        return f"Backend({self.name!r}, {self.mode!r}, {self.base_url!r})"


class Unreachable(OpenAIError):
    """The backend took no connection (refused, or none within `connect_timeout`): nothing
    was sent to it, so another connection serving the model may take the request."""


@dataclass
class Reply:
    status: int
    body: bytes
    content_type: str


class Upstream:
    """Pooled HTTP to the backends; `open()` inside the event loop, `close()` at shutdown."""

    def __init__(self, connect_timeout: float, read_timeout: float, max_answer: int):
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.max_answer = max_answer  # bytes of a whole answer, or of one streamed line
        self.session: Any = None

    async def open(self) -> None:
        import aiohttp

        self._aiohttp = aiohttp
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=30, ttl_dns_cache=300),
            timeout=aiohttp.ClientTimeout(
                total=None, sock_connect=self.connect_timeout, sock_read=self.read_timeout
            ),
            headers={"User-Agent": f"stackctl-proxy/{__version__}"},
        )

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
            self.session = None

    def _headers(self, backend: Backend, has_body: bool) -> dict[str, str]:
        headers = {"Content-Type": "application/json"} if has_body else {}
        if backend.api_key:
            headers["Authorization"] = f"Bearer {backend.api_key}"
        return headers

    def failure(self, backend: Backend, exc: BaseException) -> OpenAIError:
        """What a transport error means to the client: 502 (refused, broken) or 504 (silent)."""
        aiohttp = self._aiohttp
        where = f"The backend '{backend.name}' ({backend.base_url})"
        if isinstance(exc, aiohttp.ConnectionTimeoutError):
            return Unreachable(
                504,
                f"{where} did not accept a connection within {self.connect_timeout:g} s "
                "(proxy.connect_timeout).",
                code="backend_timeout",
            )
        if isinstance(exc, asyncio.TimeoutError | aiohttp.ServerTimeoutError):
            return OpenAIError(
                504,
                f"{where} sent nothing for {self.read_timeout:g} s (proxy.read_timeout).",
                code="backend_timeout",
            )
        if isinstance(exc, aiohttp.ClientConnectorError):
            return Unreachable(
                502,
                f"{where} refused the connection: is it running? `stackctl status` shows why.",
                code="backend_unreachable",
            )
        return OpenAIError(502, f"{where} broke off the answer: {exc}", code="backend_error")

    async def call(
        self,
        backend: Backend,
        method: str,
        path: str,
        body: codec.Raw | None = None,
        timeout: float | None = None,
    ) -> Reply:
        """One whole request and its whole answer."""
        aiohttp = self._aiohttp
        options: dict[str, Any] = {}
        if timeout is not None:
            options["timeout"] = aiohttp.ClientTimeout(
                total=timeout, sock_connect=min(timeout, self.connect_timeout)
            )
        try:
            async with self.session.request(
                method,
                backend.base_url + path,
                data=body,
                headers=self._headers(backend, body is not None),
                **options,
            ) as response:
                data = await self._read(backend, response)
                return Reply(response.status, data, response.headers.get("Content-Type", ""))
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise self.failure(backend, exc) from None

    def too_large(self, backend: Backend, what: str) -> OpenAIError:
        return OpenAIError(
            502,
            f"The backend '{backend.name}' {what} {self.max_answer // 1048576} MiB "
            "(proxy.max_answer_mb).",
            code="backend_error",
        )

    async def _read(self, backend: Backend, response: Any) -> bytes:
        """The whole body, or a 502 as soon as it is past `max_answer` (never read whole)."""
        declared = response.content_length
        if declared is not None:
            if declared > self.max_answer:
                raise self.too_large(backend, "answered more than")
            return await response.read()
        content = response.content
        body = await content.readany()  # a small chunked answer: all of it, in one read
        if content.at_eof() and len(body) <= self.max_answer:
            return body
        gathered = bytearray(body)
        while len(gathered) <= self.max_answer:
            chunk = await content.readany()
            if not chunk:
                return bytes(gathered)
            gathered += chunk
        raise self.too_large(backend, "answered more than")

    @asynccontextmanager
    async def stream(self, backend: Backend, path: str, body: codec.Raw) -> AsyncIterator[Any]:
        """A POST whose answer is read as it comes: yields the aiohttp response.

        Leaving the block before the end (the client hung up, an error) closes the
        connection instead of returning it to the pool, so the backend sees the cancel.
        """
        aiohttp = self._aiohttp
        try:
            response = await self.session.post(
                backend.base_url + path, data=body, headers=self._headers(backend, True)
            )
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise self.failure(backend, exc) from None
        try:
            yield response
        finally:
            if response.content.at_eof():
                response.release()
            else:
                response.close()

    async def chunks(self, backend: Backend, response: Any) -> AsyncIterator[bytes]:
        """The body's bytes as they arrive (for relaying a stream unaltered)."""
        try:
            async for chunk in response.content.iter_any():
                yield chunk
        except (self._aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise self.failure(backend, exc) from None

    async def lines(self, backend: Backend, response: Any) -> AsyncIterator[list[bytes]]:
        """NDJSON: for each read, the complete lines it finished (none is split or held back)."""
        pending = b""
        async for chunk in self.chunks(backend, response):
            pending += chunk
            if len(pending) > self.max_answer and (
                max(map(len, pending.split(b"\n"))) > self.max_answer
            ):
                raise self.too_large(backend, "sent a line of more than")
            if b"\n" not in chunk:
                continue
            *complete, pending = pending.split(b"\n")
            yield [line for line in complete if line.strip()]
        if pending.strip():
            yield [pending]
