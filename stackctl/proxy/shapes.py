"""Checks that a backend's reply has the shape the translation reads: a wrong shape is the
backend's failure (a 502 naming the connection, or an SSE error event), never the proxy's 500.

The shapes are Ollama's ChatResponse, GenerateResponse and EmbedResponse (api/types.go in
github.com/ollama/ollama). Only the fields the translation reads are checked; a field that
is absent or null is fine, as Ollama omits empty ones.
"""

from __future__ import annotations

from typing import Any

from stackctl.proxy.errors import describe


class WrongShape(Exception):
    """A field of a backend's reply is not of the type the translation reads."""

    def __init__(self, path: str, expected: str, value: Any):
        super().__init__(f"'{path}' is {describe(value)}, expected {expected}")


def _text(native: dict[str, Any], key: str, prefix: str = "") -> None:
    value = native.get(key)
    if value is not None and not isinstance(value, str):
        raise WrongShape(prefix + key, "a string", value)


def counts(native: dict[str, Any]) -> None:
    """The token counts and the reason a reply (or a stream's last line) carries.

    It runs for every answer, so it is unrolled (`type(x) is int` also refuses a bool)."""
    value = native.get("prompt_eval_count")
    if value is not None and type(value) is not int:
        raise WrongShape("prompt_eval_count", "an integer", value)
    value = native.get("eval_count")
    if value is not None and type(value) is not int:
        raise WrongShape("eval_count", "an integer", value)
    value = native.get("done_reason")
    if value is not None and type(value) is not str:
        raise WrongShape("done_reason", "a string", value)
    value = native.get("thinking")
    if value is not None and type(value) is not str:
        raise WrongShape("thinking", "a string", value)


def tool_calls(calls: Any) -> None:
    """A message's tool calls: an array of objects with a string id and function name."""
    if not isinstance(calls, list):
        raise WrongShape("message.tool_calls", "an array", calls)
    for i, call in enumerate(calls):
        where = f"message.tool_calls[{i}]"
        if not isinstance(call, dict):
            raise WrongShape(where, "an object", call)
        _text(call, "id", where + ".")
        function = call.get("function")
        if function is None:
            continue
        if not isinstance(function, dict):
            raise WrongShape(where + ".function", "an object", function)
        _text(function, "name", where + ".function.")


def chat(native: dict[str, Any]) -> None:
    """A whole /api/chat reply (a stream's lines are checked as read: responses.ChatStream)."""
    counts(native)
    chat_line(native)
    role = (native.get("message") or {}).get("role")
    if role is not None and type(role) is not str:
        raise WrongShape("message.role", "a string", role)


NOTHING: tuple[None, None, None] = (None, None, None)


def chat_line(native: dict[str, Any]) -> tuple[str | None, str | None, list | None]:
    """One line of an /api/chat stream: its message's thinking, content and tool calls, checked.

    It runs for every token relayed, so it is unrolled: a few dict lookups in the common case.
    The counts of the last line are checked apart (`counts`, once the line says it is done).
    """
    message = native.get("message")
    if message is None:
        return NOTHING
    if type(message) is not dict:
        raise WrongShape("message", "an object", message)
    thinking = message.get("thinking")
    if thinking is not None and type(thinking) is not str:
        raise WrongShape("message.thinking", "a string", thinking)
    content = message.get("content")
    if content is not None and type(content) is not str:
        raise WrongShape("message.content", "a string", content)
    calls = message.get("tool_calls")
    if calls:
        tool_calls(calls)
    return thinking, content, calls


def generate(native: dict[str, Any]) -> None:
    """A whole /api/generate reply."""
    counts(native)
    _text(native, "response")


def embed(native: dict[str, Any]) -> None:
    """An /api/embed reply: a list of vectors of numbers."""
    counts(native)
    vectors = native.get("embeddings")
    if vectors is None:
        return
    if not isinstance(vectors, list):
        raise WrongShape("embeddings", "an array", vectors)
    for i, vector in enumerate(vectors):
        if not isinstance(vector, list):
            raise WrongShape(f"embeddings[{i}]", "an array of numbers", vector)
        for j, number in enumerate(vector):
            if isinstance(number, bool) or not isinstance(number, int | float):
                raise WrongShape(f"embeddings[{i}][{j}]", "a number", number)
