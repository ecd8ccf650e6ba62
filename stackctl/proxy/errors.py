"""The one error type of the proxy, and how it looks on the wire (OpenAI's error JSON).

Everything that goes wrong in a request becomes an `OpenAIError`; the app turns it into
`{"error": {"message", "type", "param", "code"}}` with its status, or, once a stream has
started, into an SSE `data: {"error": …}` event (the openai SDK raises on that event).
"""

from __future__ import annotations

import json
from typing import Any

TYPES = {  # other statuses: "invalid_request_error" below 500, "api_error" from 500
    401: "authentication_error",
    403: "permission_error",
    429: "rate_limit_error",
}


class OpenAIError(Exception):
    """A failed request: HTTP status plus OpenAI's error fields."""

    def __init__(
        self,
        status: int,
        message: str,
        type: str | None = None,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type or TYPES.get(
            status, "api_error" if status >= 500 else "invalid_request_error"
        )
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }

    def to_json(self) -> bytes:
        return json.dumps(self.body()).encode()

    def to_event(self) -> bytes:
        """The SSE event that ends a stream that already started."""
        return b"data: " + self.to_json() + b"\n\n"


def describe(value: Any) -> str:
    """How a JSON value reads in an error: `a string`, `an integer`, `null`, …"""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def invalid_type(path: str, expected: str, value: Any) -> OpenAIError:
    return OpenAIError(
        400,
        f"Invalid type for '{clip(path)}': expected {expected}, but got {describe(value)} instead.",
        param=path,
        code="invalid_type",
    )


SHOWN = 80  # characters of a client's value or name an error message shows at most


def clip(text: str, limit: int = SHOWN) -> str:
    """A client's text, cut to `limit` characters for an error message."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _render(value: Any, out: list[str], room: int) -> int:
    """Append `value` as JSON to `out`, stopping once `room` characters are used; returns the
    room left. Depth is bounded by `room` (each level writes a bracket), never by the value."""
    if room <= 0:
        return room
    if isinstance(value, list):
        out.append("[")
        room -= 1
        for i, item in enumerate(value):
            if room <= 0:
                return room
            if i:
                out.append(", ")
                room -= 2
            room = _render(item, out, room)
        out.append("]")
        return room - 1
    if isinstance(value, dict):
        out.append("{")
        room -= 1
        for i, (key, item) in enumerate(value.items()):
            if room <= 0:
                return room
            if i:
                out.append(", ")
                room -= 2
            text = json.dumps(str(key)[:room]) + ": "
            out.append(text)
            room = _render(item, out, room - len(text))
        out.append("}")
        return room - 1
    try:
        text = json.dumps(value[:room] if isinstance(value, str) else value)
    except ValueError:  # an int past Python's 4,300-digit conversion limit
        text = "a very large integer"
    out.append(text)
    return room - len(text)


def shown(value: Any) -> str:
    """A client's value as an error message shows it: a string's repr, else JSON, at most
    SHOWN characters however large or deep the value is."""
    if isinstance(value, str):
        return clip(repr(value[: SHOWN + 1]))
    out: list[str] = []
    _render(value, out, SHOWN + 1)
    return clip("".join(out))


def invalid_value(path: str, expected: str, value: Any) -> OpenAIError:
    return OpenAIError(
        400,
        f"Invalid value for '{clip(path)}': expected {expected}, but got {shown(value)} instead.",
        param=path,
        code="invalid_value",
    )


def missing(path: str) -> OpenAIError:
    return OpenAIError(
        400, f"Missing required parameter: '{path}'.", param=path, code="missing_required_parameter"
    )


def unsupported(path: str, why: str) -> OpenAIError:
    """A parameter the backend cannot honour: refused, never silently dropped."""
    return OpenAIError(
        400, f"'{path}' is not supported: {why}", param=path, code="unsupported_parameter"
    )


def unknown_parameter(path: str) -> OpenAIError:
    return OpenAIError(
        400,
        f"Unrecognized request argument supplied: {clip(path)}",
        param=clip(path),
        code="unknown_parameter",
    )


def model_not_found(model: str) -> OpenAIError:
    return OpenAIError(
        404,
        f"The model '{clip(model, 400)}' does not exist: GET /v1/models lists the models this "
        "proxy serves.",
        param="model",
        code="model_not_found",
    )
