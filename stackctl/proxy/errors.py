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
        f"Invalid type for '{path}': expected {expected}, but got {describe(value)} instead.",
        param=path,
        code="invalid_type",
    )


def invalid_value(path: str, expected: str, value: Any) -> OpenAIError:
    shown = json.dumps(value) if not isinstance(value, str) else repr(value)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return OpenAIError(
        400,
        f"Invalid value for '{path}': expected {expected}, but got {shown} instead.",
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
        400, f"Unrecognized request argument supplied: {path}", param=path, code="unknown_parameter"
    )


def model_not_found(model: str) -> OpenAIError:
    return OpenAIError(
        404,
        f"The model '{model}' does not exist: GET /v1/models lists the models this proxy serves.",
        param="model",
        code="model_not_found",
    )
