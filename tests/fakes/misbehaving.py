"""A backend that misbehaves on purpose, on a raw socket (asyncio streams, no HTTP library).

It answers its model list properly (Ollama's `GET /api/tags`, an OpenAI-compatible server's
`GET /v1/models`), so the proxy routes to it, and does to every POST what `behaviour` says:

- `silent`: reads the request, never answers (a hung model load);
- `slow-headers`: answers a whole reply after `delay` seconds;
- `reply`: answers `status`, `content_type` and `body` at once (HTML, wrong shapes...);
- `chunked`: the same reply with chunked transfer encoding, in 4 KiB chunks, the first sent
  alone (as Go's net/http, so Ollama, sends an answer past 2 KiB: no content-length);
- `stream`: sends 200 headers, then `lines` one by one, then ends the body cleanly;
- `killed`: sends 200 headers and `lines`, then resets the connection (the process died).

A raw socket is used because an HTTP framework would not let a reply be this wrong. Every
request is logged in `events` with when its connection was accepted and closed, so a test
can see how soon the proxy closed a backend request its client abandoned.

    with MisbehavingBackend("ollama") as backend:
        backend.behave("silent")
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Any

MODEL = "gemma3:1b"


@dataclass
class Event:
    """One request the backend received."""

    method: str
    path: str
    body: bytes
    accepted_at: float
    closed_at: float | None = None


@dataclass
class Behaviour:
    kind: str = "reply"
    delay: float = 0.0
    status: int = 200
    content_type: str = "application/json"
    body: bytes = b"{}"
    lines: list[bytes] = field(default_factory=list)


class MisbehavingBackend:
    """The fake, served by an asyncio loop in a thread on a free loopback port."""

    def __init__(self, mode: str = "ollama"):
        self.mode = mode  # "ollama" or "openai_compatible": which model list it serves
        self.behaviour = Behaviour()
        self.events: list[Event] = []
        self.loop = asyncio.new_event_loop()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.server: Any = None

    @property
    def url(self) -> str:
        base = f"http://127.0.0.1:{self.port}"
        return base if self.mode == "ollama" else base + "/v1"

    def behave(self, kind: str, **settings: Any) -> None:
        self.behaviour = Behaviour(kind, **settings)
        self.events.clear()

    def posts(self) -> list[Event]:
        return [e for e in self.events if e.method == "POST"]

    def __enter__(self) -> MisbehavingBackend:
        self.thread.start()
        self.server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, sock=self.sock), self.loop
        ).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        async def shut() -> None:
            self.server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(shut(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        event: Event | None = None
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                request_line, *header_lines = head.decode("latin-1").split("\r\n")
                method, path, _ = request_line.split(" ", 2)
                headers = {
                    k.strip().lower(): v.strip()
                    for k, v in (h.split(":", 1) for h in header_lines if ":" in h)
                }
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                event = Event(method, path, body, time.monotonic())
                self.events.append(event)
                if method == "GET":
                    await self._model_list(writer)
                    continue
                if not await self._misbehave(reader, writer):
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            if event is not None and event.method == "POST":
                event.closed_at = time.monotonic()
            writer.close()

    async def _model_list(self, writer: asyncio.StreamWriter) -> None:
        if self.mode == "ollama":
            data = {"models": [{"name": MODEL, "model": MODEL, "modified_at": None}]}
        else:
            data = {"object": "list", "data": [{"id": MODEL, "object": "model"}]}
        await self._reply(writer, 200, "application/json", json.dumps(data).encode())

    async def _reply(
        self, writer: asyncio.StreamWriter, status: int, content_type: str, body: bytes
    ) -> None:
        writer.write(
            f"HTTP/1.1 {status} X\r\ncontent-type: {content_type}\r\n"
            f"content-length: {len(body)}\r\n\r\n".encode()
            + body
        )
        await writer.drain()

    async def _misbehave(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Answer one POST as told; True when the connection may carry another request."""
        b = self.behaviour
        if b.kind == "silent":
            await reader.read()  # until the proxy closes its end
            return False
        if b.kind == "slow-headers":
            try:
                await asyncio.wait_for(reader.read(), b.delay)
                return False  # the proxy hung up first
            except asyncio.TimeoutError:
                pass
        if b.kind in ("reply", "slow-headers"):
            await self._reply(writer, b.status, b.content_type, b.body)
            return True
        if b.kind == "chunked":
            writer.write(
                f"HTTP/1.1 {b.status} X\r\ncontent-type: {b.content_type}\r\n"
                "transfer-encoding: chunked\r\n\r\n".encode()
            )
            pieces = [b.body[i : i + 4096] for i in range(0, len(b.body), 4096)]
            for index, piece in enumerate(pieces):
                writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                if index == 0:
                    await writer.drain()
                    await asyncio.sleep(0.01)  # the proxy reads the first chunk alone
            writer.write(b"0\r\n\r\n")
            await writer.drain()
            return True
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/x-ndjson\r\n"
            b"transfer-encoding: chunked\r\n\r\n"
        )
        for line in b.lines:
            writer.write(b"%x\r\n%s\r\n" % (len(line), line))
            await writer.drain()
            await asyncio.sleep(0.01)
        if b.kind == "killed":
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()  # an RST, as when the process dies
            return False
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return True


def ndjson(*objects: dict[str, Any]) -> list[bytes]:
    return [json.dumps(o).encode() + b"\n" for o in objects]
