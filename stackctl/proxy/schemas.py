"""What each route accepts: chat messages, tools, response formats and the field tables.

Inside messages and content parts, keys we do not know are ignored (they carry no generation
parameter, and clients add their own); top-level fields are checked strictly (validate.py).
"""

from __future__ import annotations

import re
from typing import Any

from stackctl.proxy import codec
from stackctl.proxy.errors import OpenAIError, invalid_type, invalid_value, missing, unsupported
from stackctl.proxy.validate import (
    MAX_CONTENT_PARTS,
    MAX_INPUTS,
    MAX_MESSAGES,
    MAX_TOOLS,
    SAMPLING,
    Check,
    array_of,
    boolean,
    fields,
    integer,
    keep_alive,
    nested,
    obj,
    one_of,
    options,
    refuse,
    string,
    too_long,
)

REASONING_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")
TOOL_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")

ROLES = ("system", "developer", "user", "assistant", "tool")
DATA_URI = re.compile(r"^data:(image/[A-Za-z0-9.+-]+)?;base64,", re.I)
REMOTE_IMAGE = (
    "remote image URLs are not fetched (the proxy makes no outbound requests on a client's "
    "behalf); send the image inline as a data: URI (data:image/png;base64,...)"
)


def image_url(path: str, value: Any) -> None:
    url = value.get("url") if isinstance(value, dict) else value
    where = f"{path}.url" if isinstance(value, dict) else path
    if isinstance(value, dict) and url is None:
        raise missing(where)
    if not isinstance(url, str):
        raise invalid_type(where, "a string", url)
    if not DATA_URI.match(url):
        if re.match(r"^https?://", url, re.I):
            raise unsupported(where, REMOTE_IMAGE)
        raise invalid_value(where, "a data:image/...;base64,... URI", url)


def content(path: str, value: Any, role: str) -> None:
    """A message's content: a string, or parts (text; images for user messages)."""
    if isinstance(value, str):
        return
    if not isinstance(value, list):
        raise invalid_type(path, "a string or an array of content parts", value)
    if len(value) > MAX_CONTENT_PARTS:
        raise too_long(path, value, MAX_CONTENT_PARTS)
    for i, part in enumerate(value):
        where = f"{path}[{i}]"
        obj(where, part)
        kind = part.get("type")
        if kind is None:
            raise missing(f"{where}.type")
        if kind in ("text", "refusal") and (kind == "text" or role == "assistant"):
            if part.get(kind) is None:
                raise missing(f"{where}.{kind}")
            string(f"{where}.{kind}", part[kind])
        elif kind == "image_url" and role == "user":
            if part.get("image_url") is None:
                raise missing(f"{where}.image_url")
            image_url(f"{where}.image_url", part["image_url"])
        elif kind in ("input_audio", "file", "video_url", "audio_url"):
            raise unsupported(f"{where}.type", f"Ollama models take text and images, not '{kind}'")
        else:
            allowed = {"user": "'text' or 'image_url'", "assistant": "'text' or 'refusal'"}
            raise invalid_value(f"{where}.type", allowed.get(role, "'text'"), kind)


def tool_call(path: str, value: Any) -> None:
    obj(path, value)
    function = value.get("function")
    if function is None:
        raise missing(f"{path}.function")
    obj(f"{path}.function", function)
    if value.get("type") not in (None, "function"):
        raise invalid_value(f"{path}.type", "'function'", value["type"])
    if function.get("name") is None:
        raise missing(f"{path}.function.name")
    string(f"{path}.function.name", function["name"])
    arguments = function.get("arguments")
    where = f"{path}.function.arguments"
    if isinstance(arguments, str):
        try:
            arguments = codec.loads(arguments or "{}")
        except codec.JSONDecodeError:
            raise invalid_value(
                where, "a JSON object encoded as a string", function["arguments"]
            ) from None
    if arguments is not None and not isinstance(arguments, dict):
        raise invalid_value(where, "a JSON object encoded as a string", function["arguments"])
    if value.get("id") is not None:
        string(f"{path}.id", value["id"])


def message(path: str, value: Any) -> None:
    """One chat message. Keys other than the ones below are ignored (they carry no parameter)."""
    obj(path, value)
    role = value.get("role")
    if role is None:
        raise missing(f"{path}.role")
    if role == "function":
        raise unsupported(f"{path}.role", "function messages are deprecated; use role 'tool'")
    if role not in ROLES:
        one_of(*ROLES)(f"{path}.role", role)
    body = value.get("content")
    if body is None and role != "assistant":
        raise missing(f"{path}.content")
    if body is not None:
        content(f"{path}.content", body, role)
    for key in ("name", "reasoning_content", "reasoning", "thinking", "refusal"):
        if value.get(key) is not None:
            string(f"{path}.{key}", value[key])
    if role == "assistant" and value.get("tool_calls") is not None:
        array_of(tool_call)(f"{path}.tool_calls", value["tool_calls"])
    if role == "tool":
        if value.get("tool_call_id") is None:
            raise missing(f"{path}.tool_call_id")
        string(f"{path}.tool_call_id", value["tool_call_id"])
    if role == "assistant" and value.get("audio") is not None:
        raise unsupported(f"{path}.audio", "Ollama models produce no audio")


def tool(path: str, value: Any) -> None:
    obj(path, value)
    if value.get("type") != "function":
        raise invalid_value(
            f"{path}.type", "'function' (the only tool type Ollama runs)", value.get("type")
        )
    if value.get("function") is None:
        raise missing(f"{path}.function")
    nested(
        {"name": string, "description": string, "parameters": obj, "strict": boolean},
        required=("name",),
    )(f"{path}.function", value["function"])
    fields(value, {"type": string, "function": obj}, path + ".")
    name = value["function"]["name"]
    if not TOOL_NAME.match(name):
        raise invalid_value(f"{path}.function.name", "1-64 letters, digits, '_', '-' or '.'", name)


def tool_choice(path: str, value: Any) -> None:
    forced = (
        "Ollama cannot force a tool call; use 'auto' (the model calls a tool when it needs "
        "one) or 'none'"
    )
    if value in ("none", "auto"):
        return
    if value == "required" or isinstance(value, dict):
        raise unsupported(path, forced)
    raise invalid_value(path, "'none', 'auto', 'required' or a named function", value)


def response_format(path: str, value: Any) -> None:
    obj(path, value)
    kind = value.get("type")
    one_of("text", "json_object", "json_schema")(f"{path}.type", kind)
    if kind == "json_schema":
        nested(
            {"name": string, "description": string, "schema": obj, "strict": boolean},
            required=("schema",),
        )(f"{path}.json_schema", value.get("json_schema"))
        fields(value, {"type": string, "json_schema": obj}, path + ".")
    else:
        fields(value, {"type": string}, path + ".")


def reasoning(path: str, value: Any) -> None:
    nested(
        {
            "effort": one_of(*REASONING_EFFORTS),
            "summary": refuse("Ollama writes no reasoning summaries"),
        }
    )(path, value)


CHAT_FIELDS: dict[str, Check] = {
    **SAMPLING,
    "messages": array_of(message, min_items=1, max_items=MAX_MESSAGES),
    "max_completion_tokens": integer(1, 2**31 - 1),
    "response_format": response_format,
    "tools": array_of(tool, max_items=MAX_TOOLS),
    "tool_choice": tool_choice,
    "parallel_tool_calls": boolean,
    "reasoning_effort": one_of(*REASONING_EFFORTS),
    "reasoning": reasoning,
    "logprobs": refuse("the proxy does not return log probabilities", allowed=lambda v: v is False),
    "top_logprobs": refuse("the proxy does not return log probabilities", allowed=lambda v: v == 0),
    "store": refuse("the proxy stores no completions", allowed=lambda v: v is False),
    "metadata": obj,
    "service_tier": refuse("there is one tier", allowed=lambda v: v in ("auto", "default")),
    "modalities": refuse("Ollama models answer in text only", allowed=lambda v: v == ["text"]),
    "audio": refuse("Ollama models produce no audio"),
    "prediction": refuse("Ollama has no predicted outputs"),
    "web_search_options": refuse("the proxy does not search the web"),
    "verbosity": refuse("Ollama has no verbosity control", allowed=lambda v: v == "medium"),
    "functions": refuse("deprecated: use tools"),
    "function_call": refuse("deprecated: use tool_choice"),
}

COMPLETION_FIELDS: dict[str, Check] = {
    **SAMPLING,
    "prompt": lambda path, value: None,  # checked by check_completion (its shape decides a lot)
    "suffix": string,
    "echo": boolean,
    "best_of": refuse("Ollama returns one completion per request", allowed=lambda v: v == 1),
    "logprobs": refuse("the proxy does not return log probabilities", allowed=lambda v: v == 0),
    "raw": boolean,
}

EMBEDDING_FIELDS: dict[str, Check] = {
    "model": string,
    "input": lambda path, value: None,  # checked by check_embedding
    "encoding_format": one_of("float", "base64"),
    "dimensions": integer(1, 65536),
    "user": string,
    "keep_alive": keep_alive,
    "options": options,
    "truncate": boolean,
}


def check_stream_options(body: dict[str, Any]) -> None:
    if body.get("stream_options") is not None and not body.get("stream"):
        raise OpenAIError(
            400,
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            param="stream_options",
            code="invalid_value",
        )


def check_chat(body: dict[str, Any]) -> None:
    """A chat completion request, as the Ollama translation needs it."""
    if body.get("messages") is None:
        raise missing("messages")
    fields(body, CHAT_FIELDS)
    check_stream_options(body)


def check_completion(body: dict[str, Any]) -> None:
    """A legacy completion request: one text prompt."""
    prompt = body.get("prompt")
    if prompt is None:
        raise missing("prompt")
    if isinstance(prompt, list):
        if len(prompt) != 1 or not isinstance(prompt[0], str):
            tokens = bool(prompt) and not all(isinstance(p, str) for p in prompt)
            raise unsupported(
                "prompt",
                "token arrays cannot be sent to Ollama; send the text"
                if tokens
                else "send one prompt per request (a list must hold exactly one string)",
            )
    elif not isinstance(prompt, str):
        raise invalid_type("prompt", "a string or an array of one string", prompt)
    fields(body, COMPLETION_FIELDS)
    check_stream_options(body)


def check_embedding(body: dict[str, Any]) -> None:
    """An embeddings request: text in, vectors out."""
    data = body.get("input")
    if data is None:
        raise missing("input")
    if isinstance(data, list):
        if not data:
            raise invalid_value("input", "a string or a non-empty array of strings", data)
        if len(data) > MAX_INPUTS:
            raise too_long("input", data, MAX_INPUTS)
        if not all(isinstance(item, str) for item in data):
            if all(isinstance(item, int | list) and not isinstance(item, bool) for item in data):
                raise unsupported("input", "token arrays cannot be sent to Ollama; send the text")
            bad = next(i for i, item in enumerate(data) if not isinstance(item, str))
            raise invalid_type(f"input[{bad}]", "a string", data[bad])
    elif not isinstance(data, str):
        raise invalid_type("input", "a string or an array of strings", data)
    fields(body, EMBEDDING_FIELDS)
