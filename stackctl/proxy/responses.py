"""Ollama's native replies -> OpenAI's exact response shapes (pure functions, no I/O).

Streams are translated by small stateful objects: each NDJSON object from Ollama becomes
the SSE bytes to send at once (`data: {chunk}\\n\\n` … `data: [DONE]\\n\\n`), all chunks of
one answer share one id, and an `{"error"}` line raises `StreamBroken`.
"""

from __future__ import annotations

import base64
import json
import math
import os
import secrets
import time
from array import array
from typing import Any

from stackctl.proxy import codec, shapes

DONE_EVENT = b"data: [DONE]\n\n"


class StreamBroken(Exception):
    """The backend's stream carried an error line, or ended before its `done: true` line."""


def ndjson_object(line: bytes) -> dict[str, Any] | None:
    """One line of Ollama's NDJSON stream: its object, None for JSON that is not an object,
    StreamBroken for a line that is not JSON."""
    try:
        native = codec.loads(line)
    except codec.JSONDecodeError:
        raise StreamBroken(f"sent a line that is not JSON: {line[:200]!r}") from None
    return native if type(native) is dict else None


def new_id(prefix: str) -> str:
    return f"{prefix}-{os.urandom(16).hex()}"


def call_id() -> str:
    """An id for a tool call Ollama sent without one (servers before v0.12.10)."""
    return "call_" + secrets.token_hex(12)


def usage(native: dict[str, Any]) -> dict[str, int]:
    """Token counts; Ollama omits a count that is 0 (omitempty)."""
    prompt = native.get("prompt_eval_count") or 0
    completion = native.get("eval_count") or 0
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def finish_reason(native: dict[str, Any], has_tool_calls: bool) -> str:
    if has_tool_calls:
        return "tool_calls"  # Ollama says "stop" when it called a tool
    return "length" if native.get("done_reason") == "length" else "stop"


def tool_calls(
    native_calls: list[dict[str, Any]], first_index: int = 0, *, delta: bool
) -> list[dict[str, Any]]:
    """Ollama tool calls (object arguments, maybe no id) -> OpenAI's (JSON-string arguments)."""
    calls = []
    for offset, call in enumerate(native_calls):
        function = call.get("function") or {}
        openai_call: dict[str, Any] = {
            "id": call.get("id") or call_id(),
            "type": "function",
            "function": {
                "name": function.get("name", ""),
                "arguments": json.dumps(function.get("arguments") or {}),
            },
        }
        if delta:
            openai_call = {"index": first_index + offset, **openai_call}
        calls.append(openai_call)
    return calls


def chat_completion(
    native: dict[str, Any], model: str, *, parallel_tool_calls: bool = True
) -> dict[str, Any]:
    """A whole /api/chat reply -> a `chat.completion` (shapes.WrongShape if it is not one)."""
    shapes.chat(native)
    message = native.get("message") or {}
    calls = message.get("tool_calls") or []
    if not parallel_tool_calls:
        calls = calls[:1]
    content = message.get("content") or ""
    reply: dict[str, Any] = {
        "role": "assistant",
        "content": content if content or not calls else None,
    }
    if message.get("thinking"):
        reply["reasoning_content"] = message["thinking"]
    if calls:
        reply["tool_calls"] = tool_calls(calls, delta=False)
    return {
        "id": new_id("chatcmpl"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": reply,
                "logprobs": None,
                "finish_reason": finish_reason(native, bool(calls)),
            }
        ],
        "usage": usage(native),
    }


def text_completion(
    native: dict[str, Any], model: str, echo_prompt: str | None = None
) -> dict[str, Any]:
    """A whole /api/generate reply -> a `text_completion` (shapes.WrongShape if it is not one)."""
    shapes.generate(native)
    choice: dict[str, Any] = {
        "text": (echo_prompt or "") + (native.get("response") or ""),
        "index": 0,
        "logprobs": None,
        "finish_reason": finish_reason(native, False),
    }
    if native.get("thinking"):
        choice["reasoning_content"] = native["thinking"]
    return {
        "id": new_id("cmpl"),
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [choice],
        "usage": usage(native),
    }


def _fit(vector: list[float], dimensions: int | None) -> list[float]:
    """Shorten a vector to `dimensions` and re-normalise it (for servers that ignore it)."""
    if not dimensions or len(vector) <= dimensions:
        return vector
    short = vector[:dimensions]
    norm = math.sqrt(sum(v * v for v in short)) or 1.0
    return [v / norm for v in short]


def embeddings(
    native: dict[str, Any], model: str, encoding_format: str | None, dimensions: int | None
) -> dict[str, Any]:
    """An /api/embed reply -> a `list` of `embedding` objects (float lists or base64 float32)."""
    shapes.embed(native)
    data = []
    for index, vector in enumerate(native.get("embeddings") or []):
        vector = _fit(vector, dimensions)
        value: Any = vector
        if encoding_format == "base64":
            value = base64.b64encode(array("f", vector).tobytes()).decode()
        data.append({"object": "embedding", "embedding": value, "index": index})
    tokens = native.get("prompt_eval_count") or 0
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


class _Stream:
    """What the chat and completion stream translators share: one id, the SSE framing."""

    object_name = ""

    def __init__(self, model: str, prefix: str, include_usage: bool):
        self.id = new_id(prefix)
        head = {
            "id": self.id,
            "object": self.object_name,
            "created": int(time.time()),
            "model": model,
        }
        self._head = b"data: " + codec.dumps(head)[:-1] + b',"choices":['
        self._tail = b',"usage":null}\n\n' if include_usage else b"}\n\n"
        self.include_usage = include_usage
        self.finished = False
        self.done_line: dict[str, Any] = {}  # Ollama's last line, with its token counts

    def _event(self, choice: bytes) -> bytes:
        return self._head + choice + b"]" + self._tail

    def _usage_event(self, native: dict[str, Any]) -> bytes:
        return self._head + b'],"usage":' + codec.dumps(usage(native)) + b"}\n\n"

    def _end(self, native: dict[str, Any], final_choice: bytes) -> bytes:
        self.finished, self.done_line = True, native
        out = self._event(final_choice)
        if self.include_usage:
            out += self._usage_event(native)
        return out + DONE_EVENT

    def check(self, native: dict[str, Any]) -> None:
        if "error" in native:
            raise StreamBroken(f"failed mid-answer: {native['error']}")


class ChatStream(_Stream):
    """Ollama /api/chat NDJSON objects -> `chat.completion.chunk` SSE events."""

    object_name = "chat.completion.chunk"

    def __init__(self, model: str, include_usage: bool = False, parallel_tool_calls: bool = True):
        super().__init__(model, "chatcmpl", include_usage)
        self.parallel_tool_calls = parallel_tool_calls
        self.calls_sent = 0

    def _choice(self, delta: dict[str, Any], reason: str | None = None) -> bytes:
        finish = b"null" if reason is None else b'"' + reason.encode() + b'"'
        return (
            b'{"index":0,"delta":'
            + codec.dumps(delta)
            + b',"logprobs":null,"finish_reason":'
            + finish
            + b"}"
        )

    def start(self) -> bytes:
        """The first chunk: it carries the role."""
        return self._event(self._choice({"role": "assistant", "content": ""}))

    def feed(self, native: dict[str, Any]) -> bytes:
        self.check(native)
        thinking, content, calls = shapes.chat_line(native)
        delta: dict[str, Any] = {}
        if thinking:
            delta["reasoning_content"] = thinking
        if content:
            delta["content"] = content
        calls = calls or []
        if not self.parallel_tool_calls:
            calls = calls[: max(0, 1 - self.calls_sent)]
        if calls:
            delta["tool_calls"] = tool_calls(calls, self.calls_sent, delta=True)
            self.calls_sent += len(calls)
        out = self._event(self._choice(delta)) if delta else b""
        if native.get("done"):
            shapes.counts(native)
            reason = finish_reason(native, self.calls_sent > 0)
            out += self._end(native, self._choice({}, reason))
        return out


class CompletionStream(_Stream):
    """Ollama /api/generate NDJSON objects -> `text_completion` SSE events."""

    object_name = "text_completion"

    def __init__(self, model: str, include_usage: bool = False, echo_prompt: str | None = None):
        super().__init__(model, "cmpl", include_usage)
        self.echo_prompt = echo_prompt

    def _choice(self, text: str, reason: str | None = None, thinking: str | None = None) -> bytes:
        choice: dict[str, Any] = {
            "text": text,
            "index": 0,
            "logprobs": None,
            "finish_reason": reason,
        }
        if thinking:
            choice["reasoning_content"] = thinking
        return codec.dumps(choice)

    def start(self) -> bytes:
        return self._event(self._choice(self.echo_prompt)) if self.echo_prompt else b""

    def feed(self, native: dict[str, Any]) -> bytes:
        self.check(native)
        text, thinking = native.get("response") or "", native.get("thinking")
        if type(text) is not str:
            raise shapes.WrongShape("response", "a string", text)
        if thinking is not None and type(thinking) is not str:
            raise shapes.WrongShape("thinking", "a string", thinking)
        out = self._event(self._choice(text, thinking=thinking)) if text or thinking else b""
        if native.get("done"):
            shapes.counts(native)
            out += self._end(native, self._choice("", finish_reason(native, False)))
        return out
