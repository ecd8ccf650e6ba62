"""Request schema checks for the Ollama translation: every problem is a 400 naming the field.

The tables list every field each route takes. A field we cannot honour on Ollama (`n > 1`,
`logprobs`, audio, …) is refused with the reason, and an unknown field is refused too: a
parameter is never silently dropped. Only `null` counts as "not given".
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

from stackctl.ollama_options import OPTION_TYPES
from stackctl.proxy import codec
from stackctl.proxy.errors import (
    OpenAIError,
    describe,
    invalid_type,
    invalid_value,
    missing,
    unknown_parameter,
    unsupported,
)

Check = Callable[[str, Any], None]
INT64 = (-(2**63), 2**63 - 1)
GO_DURATION = re.compile(r"-?(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+|-?\d+")


THINK_LEVELS = ("low", "medium", "high", "max")


def json_error_reason(raw: codec.Raw) -> str:
    """Why a body is not JSON, in words that do not change with the orjson release.

    orjson's messages changed between releases ("unexpected character" became "unexpected
    character, expected a string key"), so the explanation comes from the standard library's
    decoder, which is only run on this error path. It accepts NaN and Infinity, which JSON
    (and orjson) do not, hence parse_constant. It recurses once per level of nesting, so deep
    nesting ends at Python's recursion limit.
    """
    import json

    def reject(constant: str) -> None:
        raise ValueError(f"{constant} is not valid JSON")

    try:
        json.loads(raw, parse_constant=reject)
    except RecursionError:
        return "it nests arrays or objects too deeply"
    except json.JSONDecodeError as exc:
        return f"{exc.msg} at line {exc.lineno}, column {exc.colno}"
    except UnicodeDecodeError as exc:
        return f"it is not valid UTF-8: byte {exc.object[exc.start]:#04x} at offset {exc.start}"
    except ValueError as exc:
        return str(exc)
    return "not valid JSON"


# A JSON value costs Python 30-60 bytes as an object, while its text can be two characters
# (`{},`): a 32 MiB body of tiny items parses to a gigabyte. Bodies are refused before
# parsing past this many values (real requests hold a few thousand: messages, tools, parts).
MAX_VALUES = 200_000
JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')


def too_many_values(raw: codec.Raw) -> bool:
    """True when a JSON text holds more than MAX_VALUES values, counted as its commas and
    opening brackets outside strings. A text of at most MAX_VALUES bytes cannot (each counted
    character is one of its bytes); a longer one is counted whole first, which is quick and
    only ever more; past MAX_VALUES, again between the strings, stopping as soon as it is over
    (so a body of millions of tiny strings costs no more than MAX_VALUES matches)."""
    if len(raw) <= MAX_VALUES:
        return False
    if raw.count(b",") + raw.count(b"[") + raw.count(b"{") <= MAX_VALUES:
        return False
    count, start = 0, 0
    for string in JSON_STRING.finditer(raw):
        end = string.start()
        count += raw.count(b",", start, end) + raw.count(b"[", start, end)
        count += raw.count(b"{", start, end)
        if count > MAX_VALUES:
            return True
        start = string.end()
    count += raw.count(b",", start) + raw.count(b"[", start) + raw.count(b"{", start)
    return count > MAX_VALUES


def parse_body(raw: codec.Raw) -> dict[str, Any]:
    """The request body as a JSON object, or a 400 saying what is wrong with it."""
    if too_many_values(raw):
        raise OpenAIError(
            400,
            f"The request body holds more than {MAX_VALUES} JSON values; the proxy takes at "
            "most that many (real requests hold a few thousand).",
            code="too_many_values",
        )
    try:
        body = codec.loads(raw)
    except codec.JSONDecodeError:
        reason = json_error_reason(raw) if raw.strip() else "the body is empty"
        raise OpenAIError(
            400,
            f"We could not parse the JSON body of your request ({reason}). Send a JSON object "
            "with Content-Type: application/json.",
            code="invalid_json",
        ) from None
    if not isinstance(body, dict):
        raise OpenAIError(
            400,
            f"The request body must be a JSON object, but got {describe(body)} instead.",
            code="invalid_json",
        )
    return body


def require_model(body: dict[str, Any]) -> str:
    """The `model` field, which every route needs before it can be routed."""
    model = body.get("model")
    if model is None:
        raise missing("model")
    if not isinstance(model, str):
        raise invalid_type("model", "a string", model)
    if not model:
        raise invalid_value("model", "a model id such as 'gemma3:27b'", model)
    return model


# -- field checks -------------------------------------------------------------------------


def string(path: str, value: Any) -> None:
    if not isinstance(value, str):
        raise invalid_type(path, "a string", value)


def boolean(path: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise invalid_type(path, "a boolean", value)


def obj(path: str, value: Any) -> None:
    if not isinstance(value, dict):
        raise invalid_type(path, "an object", value)


def integer(lo: int = INT64[0], hi: int = INT64[1]) -> Check:
    def check(path: str, value: Any) -> None:
        if isinstance(value, float) and value.is_integer() and lo <= value <= hi:
            return
        if isinstance(value, bool) or not isinstance(value, int):
            raise invalid_type(path, "an integer", value)
        if not lo <= value <= hi:
            raise invalid_value(path, f"an integer from {lo} to {hi}", value)

    return check


def number(lo: float = -math.inf, hi: float = math.inf) -> Check:
    def check(path: str, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise invalid_type(path, "a number", value)
        if not lo <= value <= hi:
            raise invalid_value(path, f"a number from {lo:g} to {hi:g}", value)

    return check


def one_of(*choices: str) -> Check:
    def check(path: str, value: Any) -> None:
        if value not in choices:
            listed = ", ".join(f"'{c}'" for c in choices)
            raise invalid_value(path, f"one of {listed}", value)

    return check


def refuse(why: str, allowed: Callable[[Any], bool] = lambda v: False) -> Check:
    """A field we cannot honour: any value but the harmless ones is a 400 with the reason."""

    def check(path: str, value: Any) -> None:
        if not allowed(value):
            raise unsupported(path, why)

    return check


# Caps on counts no real client approaches (the proxy's own: Ollama sets none), each a 400
# naming the field. OpenAI allows 128 tools and 4 stop strings; agents with many MCP servers
# send a few hundred tools, and long agent sessions a few thousand messages.
MAX_MESSAGES = 10_000
MAX_TOOLS = 1_024
MAX_CONTENT_PARTS = 1_000
MAX_STOP = 64
MAX_INPUTS = 10_000


def string_or_strings(path: str, value: Any) -> None:
    if isinstance(value, str):
        return
    if not isinstance(value, list):
        raise invalid_type(path, "a string or an array of strings", value)
    if len(value) > MAX_STOP:
        raise too_long(path, value, MAX_STOP)
    for i, item in enumerate(value):
        string(f"{path}[{i}]", item)


def keep_alive(path: str, value: Any) -> None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return
    if not isinstance(value, str) or not GO_DURATION.fullmatch(value):
        raise invalid_value(path, "a duration such as '10m' or '-1', or seconds", value)


def think(path: str, value: Any) -> None:
    if not isinstance(value, bool) and value not in THINK_LEVELS:
        raise invalid_value(path, "true, false, 'low', 'medium', 'high' or 'max'", value)


OPTION_CHECKS: dict[str, Check] = {
    "integer": integer(),
    "number": number(),
    "array": string_or_strings,
    "boolean": boolean,
}  # by OPTION_TYPES' names


def options(path: str, value: Any) -> None:
    obj(path, value)
    for key, item in value.items():
        kind = OPTION_TYPES.get(key)
        where = f"{path}.{key}"
        if kind is None:
            raise OpenAIError(
                400,
                f"Unknown Ollama option '{where}'. Known options: {', '.join(OPTION_TYPES)}.",
                param=where,
                code="unknown_parameter",
            )
        if item is not None:
            OPTION_CHECKS[kind](where, item)


def fields(body: dict[str, Any], table: dict[str, Check], prefix: str = "") -> None:
    """Check each field of an object against its table; unknown fields are refused."""
    for key, value in body.items():
        check = table.get(key)
        if check is None:
            raise unknown_parameter(prefix + key)
        if value is not None:
            check(prefix + key, value)


def nested(table: dict[str, Check], required: tuple[str, ...] = ()) -> Check:
    def check(path: str, value: Any) -> None:
        obj(path, value)
        for key in required:
            if value.get(key) is None:
                raise missing(f"{path}.{key}")
        fields(value, table, path + ".")

    return check


def too_long(path: str, value: list, max_items: int) -> OpenAIError:
    return OpenAIError(
        400,
        f"Invalid '{path}': array too long. Expected an array with maximum length "
        f"{max_items}, but got an array with length {len(value)} instead.",
        param=path,
        code="array_above_max_length",
    )


def array_of(item: Check, min_items: int = 0, max_items: int | None = None) -> Check:
    def check(path: str, value: Any) -> None:
        if not isinstance(value, list):
            raise invalid_type(path, "an array", value)
        if max_items is not None and len(value) > max_items:
            raise too_long(path, value, max_items)
        if len(value) < min_items:
            raise OpenAIError(
                400,
                f"Invalid '{path}': empty array. Expected an array with minimum length "
                f"{min_items}, but got an empty array instead.",
                param=path,
                code="empty_array",
            )
        for i, entry in enumerate(value):
            item(f"{path}[{i}]", entry)

    return check


# -- shared tables --------------------------------------------------------------------------

SAMPLING: dict[str, Check] = {
    "model": string,
    "stream": boolean,
    "stream_options": nested(
        {
            "include_usage": boolean,
            "include_obfuscation": refuse(
                "the proxy adds no obfuscation padding", allowed=lambda v: v is False
            ),
        }
    ),
    "max_tokens": integer(1, 2**31 - 1),
    "temperature": number(0, 2),
    "top_p": number(0, 1),
    "seed": integer(),
    "stop": string_or_strings,
    "presence_penalty": number(-2, 2),
    "frequency_penalty": number(-2, 2),
    "n": refuse(
        "Ollama returns one choice per request; send n separate requests",
        allowed=lambda v: v == 1,
    ),
    "logit_bias": refuse("Ollama has no logit bias", allowed=lambda v: v == {}),
    "user": string,
    "safety_identifier": string,
    "prompt_cache_key": string,  # a cache hint; Ollama reuses its prompt cache on its own
    # Ollama and vLLM extensions (the openai SDK sends them with extra_body)
    "keep_alive": keep_alive,
    "think": think,
    "options": options,
    "top_k": integer(-1, 2**31 - 1),
    "min_p": number(0, 1),
    "repetition_penalty": number(0, 10),
}
