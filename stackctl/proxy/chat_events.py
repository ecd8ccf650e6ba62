"""A backend's streamed chat answer, read as events that a dialect writes in its own shape.

The Anthropic Messages and OpenAI Responses routes run on the proxy's chat path. Whatever the
backend streams, Ollama's /api/chat NDJSON or an OpenAI-compatible server's chat-completion
SSE, a *source* reads it line by line and calls the dialect's *writer*: `thinking(text)`,
`text(text)`, `tool_call(index, id, name, arguments)` (arguments as a JSON text fragment),
then `finish(reason, usage, stop_sequence)` with the chat finish reason (`stop`, `length`,
`tool_calls`), `{"prompt_tokens", "completion_tokens"}` and the stop string that ended the
answer where the backend says (vLLM's `stop_reason`; Ollama does not). Each call returns the
bytes to send at once.
"""

from __future__ import annotations

from typing import Any, Protocol

from stackctl.proxy import codec, shapes
from stackctl.proxy.errors import OpenAIError
from stackctl.proxy.responses import StreamBroken, call_id, finish_reason, ndjson_object, usage


class Writer(Protocol):
    """What a dialect's stream writer answers to (see the module docstring)."""

    def start(self) -> bytes: ...
    def thinking(self, text: str) -> bytes: ...
    def text(self, text: str) -> bytes: ...
    def tool_call(
        self, index: int, call_id: str | None, name: str | None, arguments: str
    ) -> bytes: ...
    def finish(
        self, reason: str, usage: dict[str, int], stop_sequence: str | None = None
    ) -> bytes: ...
    def fail(self, error: OpenAIError) -> bytes: ...
    def ping(self) -> bytes: ...


class OllamaSource:
    """Ollama /api/chat NDJSON lines -> writer calls (a tool call arrives whole, in one line)."""

    def __init__(self, writer: Writer, parallel_tool_calls: bool = True):
        self.writer = writer
        self.parallel_tool_calls = parallel_tool_calls
        self.calls = 0
        self.usage: dict[str, int] = {}
        self.finished = False
        self.last: dict[str, Any] = {}  # the done line, for the context-length check

    def feed(self, line: bytes) -> bytes:
        native = ndjson_object(line)
        if native is None:
            return b""
        if "error" in native:
            raise StreamBroken(f"failed mid-answer: {native['error']}")
        out = b""
        thinking, content, calls = shapes.chat_line(native)
        if thinking:
            out = self.writer.thinking(thinking)
        if content:
            out += self.writer.text(content)
        if calls:
            out += self._calls(calls)
        if native.get("done"):
            shapes.counts(native)
            self.finished, self.last, self.usage = True, native, usage(native)
            out += self.writer.finish(finish_reason(native, self.calls > 0), self.usage)
        return out

    def _calls(self, calls: list[dict[str, Any]]) -> bytes:
        out = b""
        for call in calls:
            if self.calls and not self.parallel_tool_calls:
                break
            function = call.get("function") or {}
            arguments = codec.dumps(function.get("arguments") or {}).decode()
            out += self.writer.tool_call(
                self.calls, call.get("id") or call_id(), function.get("name", ""), arguments
            )
            self.calls += 1
        return out


class ChatChunkSource:
    """An OpenAI-compatible chat-completion SSE stream -> writer calls.

    Tool calls come in pieces keyed by `index` (the id and name with the first piece). The
    finish reason and the usage chunk (asked for with stream_options.include_usage) may come
    in either order, so the writer's `finish` waits for `[DONE]`. A server that sends no
    usage gets its output counted as one token per content chunk, as these servers stream.
    """

    def __init__(self, writer: Writer):
        self.writer = writer
        self.reason: str | None = None
        self.stop_sequence: str | None = None
        self.usage: dict[str, int] = {"prompt_tokens": 0, "completion_tokens": 0}
        self.pieces = 0
        self.finished = False
        self.last: dict[str, Any] = {}

    def feed(self, line: bytes) -> bytes:
        if not line.startswith(b"data:"):
            return b""  # event names, comments and ids carry nothing the chat stream needs
        data = line[5:].strip()
        if data == b"[DONE]":
            self.finished = True
            if not self.usage["completion_tokens"]:
                self.usage["completion_tokens"] = self.pieces
            return self.writer.finish(self.reason or "stop", self.usage, self.stop_sequence)
        try:
            chunk = codec.loads(data)
        except codec.JSONDecodeError:
            raise StreamBroken(f"sent an event that is not JSON: {data[:200]!r}") from None
        if not isinstance(chunk, dict):
            return b""
        if chunk.get("error"):
            error = chunk["error"]
            message = error.get("message") if isinstance(error, dict) else error
            raise StreamBroken(f"failed mid-answer: {message}")
        if isinstance(chunk.get("usage"), dict):
            self.usage = {
                "prompt_tokens": chunk["usage"].get("prompt_tokens") or 0,
                "completion_tokens": chunk["usage"].get("completion_tokens") or 0,
            }
        writer, out = self.writer, b""
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            thinking = delta.get("reasoning_content") or delta.get("reasoning")
            if thinking:
                out += writer.thinking(thinking)
            if delta.get("content"):
                out += writer.text(delta["content"])
            if thinking or delta.get("content"):
                self.pieces += 1
            for call in delta.get("tool_calls") or []:
                function = call.get("function") or {}
                out += writer.tool_call(
                    call.get("index", 0),
                    call.get("id"),
                    function.get("name"),
                    function.get("arguments") or "",
                )
            if choice.get("finish_reason"):
                self.reason = choice["finish_reason"]
                matched = choice.get("stop_reason")
                self.stop_sequence = matched if isinstance(matched, str) else None
        return out
