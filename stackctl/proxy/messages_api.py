"""The Anthropic Messages API (what Claude Code speaks) on the proxy's chat path: pure functions.

`to_chat(body)` checks a /v1/messages request and returns the chat-completion request the proxy
already knows how to serve; `message(completion, model)` turns the chat answer into a Messages
answer; `MessagesStream` writes Anthropic's stream events from the chat stream's events
(chat_events). Errors take Anthropic's shape: `{"type": "error", "error": {"type", "message"}}`.

Fields that only steer Anthropic's servers (cache_control, context_management, metadata,
service_tier, output_config.effort) are accepted and have no effect. Server tools (a `tools`
entry with a `type` such as `web_search_20250305`) cannot run here: they are not offered to
the model. Anything else unknown is refused with a 400 naming it.
"""

from __future__ import annotations

import math
import os
from typing import Any

from stackctl.proxy import codec
from stackctl.proxy.errors import OpenAIError, invalid_type, invalid_value, missing, unsupported
from stackctl.proxy.validate import (
    Check,
    array_of,
    boolean,
    fields,
    integer,
    nested,
    number,
    obj,
    one_of,
    refuse,
    string,
)

ERROR_TYPES = {
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    529: "overloaded_error",
}
STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}
IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
CHARS_PER_TOKEN = 4  # count_tokens' estimate where the backend has no tokenizer endpoint


def _id(prefix: str) -> str:
    return f"{prefix}_{os.urandom(16).hex()}"


# -- errors ----------------------------------------------------------------------------------


def error_body(error: OpenAIError) -> dict[str, Any]:
    kind = ERROR_TYPES.get(error.status)
    if kind is None:
        kind = "api_error" if error.status >= 500 else "invalid_request_error"
    return {"type": "error", "error": {"type": kind, "message": error.message}}


def error_json(error: OpenAIError) -> bytes:
    return codec.dumps(error_body(error))


def _event(name: bytes, payload: bytes) -> bytes:
    return b"event: " + name + b"\ndata: " + payload + b"\n\n"


# -- the request -----------------------------------------------------------------------------


def _text_block(path: str, value: Any) -> None:
    if value.get("text") is None:
        raise missing(f"{path}.text")
    string(f"{path}.text", value["text"])


def _image(path: str, value: Any) -> str:
    """A base64 image block -> a data: URI (the chat path's image form)."""
    source = value.get("source")
    if source is None:
        raise missing(f"{path}.source")
    obj(f"{path}.source", source)
    if source.get("type") != "base64":
        raise unsupported(
            f"{path}.source.type",
            "images are taken inline only (source.type 'base64'); the proxy fetches no URLs "
            "and keeps no files",
        )
    one_of(*IMAGE_TYPES)(f"{path}.source.media_type", source.get("media_type"))
    if source.get("data") is None:
        raise missing(f"{path}.source.data")
    string(f"{path}.source.data", source["data"])
    return f"data:{source['media_type']};base64,{source['data']}"


def _tool_result(path: str, value: Any) -> tuple[str, list[str]]:
    """A tool_result's text (an error marked as such) and any images it carries."""
    if value.get("tool_use_id") is None:
        raise missing(f"{path}.tool_use_id")
    string(f"{path}.tool_use_id", value["tool_use_id"])
    content = value.get("content")
    texts, images = [], []
    if isinstance(content, str):
        texts.append(content)
    elif isinstance(content, list):
        for i, block in enumerate(content):
            where = f"{path}.content[{i}]"
            obj(where, block)
            if block.get("type") == "text":
                _text_block(where, block)
                texts.append(block["text"])
            elif block.get("type") == "image":
                images.append(_image(where, block))
            else:
                one_of("text", "image")(f"{where}.type", block.get("type"))
    elif content is not None:
        raise invalid_type(f"{path}.content", "a string or an array of content blocks", content)
    if value.get("is_error") is not None:
        boolean(f"{path}.is_error", value["is_error"])
    text = "\n".join(texts)
    return ("Error: " + text if value.get("is_error") else text), images


def _message(path: str, value: Any) -> list[dict[str, Any]]:
    """One Messages message -> the chat messages it becomes (tool results become tool messages)."""
    obj(path, value)
    role = value.get("role")
    if role is None:
        raise missing(f"{path}.role")
    # "system" mid-conversation: Claude Code sends it (beta mid-conversation-system)
    one_of("user", "assistant", "system")(f"{path}.role", role)
    content = value.get("content")
    if content is None:
        raise missing(f"{path}.content")
    if isinstance(content, str):
        return [{"role": role, "content": content}]
    if not isinstance(content, list):
        raise invalid_type(f"{path}.content", "a string or an array of content blocks", content)
    out: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    thinking: list[str] = []
    calls: list[dict[str, Any]] = []
    for i, block in enumerate(content):
        where = f"{path}.content[{i}]"
        obj(where, block)
        kind = block.get("type")
        if kind is None:
            raise missing(f"{where}.type")
        if kind == "text":
            _text_block(where, block)
            parts.append({"type": "text", "text": block["text"]})
        elif kind == "image" and role == "user":
            parts.append({"type": "image_url", "image_url": {"url": _image(where, block)}})
        elif kind == "tool_result" and role == "user":
            text, images = _tool_result(where, block)
            out.append({"role": "tool", "tool_call_id": block["tool_use_id"], "content": text})
            parts += [{"type": "image_url", "image_url": {"url": url}} for url in images]
        elif kind == "tool_use" and role == "assistant":
            for key in ("id", "name"):
                if block.get(key) is None:
                    raise missing(f"{where}.{key}")
                string(f"{where}.{key}", block[key])
            arguments = block.get("input") or {}
            obj(f"{where}.input", arguments)
            calls.append(
                {
                    "id": block["id"],
                    "type": "function",
                    "function": {
                        "name": block["name"],
                        "arguments": codec.dumps(arguments).decode(),
                    },
                }
            )
        elif kind == "thinking" and role == "assistant":
            string(f"{where}.thinking", block.get("thinking"))
            thinking.append(block["thinking"])
        elif kind == "redacted_thinking" and role == "assistant":
            continue  # encrypted by Anthropic's servers: nothing a local model can read
        elif kind in ("document", "search_result", "container_upload"):
            raise unsupported(
                f"{where}.type", f"the models behind this proxy take text and images, not '{kind}'"
            )
        else:
            allowed = {
                "user": "'text', 'image' or 'tool_result'",
                "assistant": "'text', 'thinking' or 'tool_use'",
                "system": "'text'",
            }
            raise invalid_value(f"{where}.type", allowed[role], kind)
    if role == "assistant":
        reply: dict[str, Any] = {
            "role": "assistant",
            "content": "".join(p["text"] for p in parts) or None,
        }
        if thinking:
            reply["reasoning_content"] = "".join(thinking)
        if calls:
            reply["tool_calls"] = calls
        return [reply]
    if parts:
        text_only = all(p["type"] == "text" for p in parts)
        joined: Any = "\n".join(p["text"] for p in parts) if text_only else parts
        out.append({"role": role, "content": joined})
    return out


def _system(value: Any) -> str:
    if isinstance(value, str):
        return value
    if not isinstance(value, list):
        raise invalid_type("system", "a string or an array of text blocks", value)
    for i, block in enumerate(value):
        obj(f"system[{i}]", block)
        one_of("text")(f"system[{i}].type", block.get("type"))
        _text_block(f"system[{i}]", block)
    return "\n".join(block["text"] for block in value)


def _tools(value: Any) -> list[dict[str, Any]]:
    """Custom tools -> chat function tools; server tools (they run at Anthropic) are left out."""
    if not isinstance(value, list):
        raise invalid_type("tools", "an array", value)
    tools = []
    for i, tool in enumerate(value):
        where = f"tools[{i}]"
        obj(where, tool)
        if tool.get("type") not in (None, "custom"):
            continue
        for key in ("name", "input_schema"):
            if tool.get(key) is None:
                raise missing(f"{where}.{key}")
        string(f"{where}.name", tool["name"])
        obj(f"{where}.input_schema", tool["input_schema"])
        if tool.get("description") is not None:
            string(f"{where}.description", tool["description"])
        function = {"name": tool["name"], "parameters": tool["input_schema"]}
        if tool.get("description"):
            function["description"] = tool["description"]
        tools.append({"type": "function", "function": function})
    return tools


def _tool_choice(value: Any, chat: dict[str, Any]) -> None:
    obj("tool_choice", value)
    kind = value.get("type")
    one_of("auto", "any", "tool", "none")("tool_choice.type", kind)
    if kind == "tool":
        if value.get("name") is None:
            raise missing("tool_choice.name")
        string("tool_choice.name", value["name"])
        chat["tool_choice"] = {"type": "function", "function": {"name": value["name"]}}
    else:
        chat["tool_choice"] = {"auto": "auto", "any": "required", "none": "none"}[kind]
    if value.get("disable_parallel_tool_use") is not None:
        boolean("tool_choice.disable_parallel_tool_use", value["disable_parallel_tool_use"])
        if value["disable_parallel_tool_use"]:
            chat["parallel_tool_calls"] = False


def _thinking(value: Any) -> bool | None:
    """`thinking` -> the chat path's `think`: on, off, or (adaptive) the model's own default."""
    obj("thinking", value)
    kind = value.get("type")
    one_of("enabled", "disabled", "adaptive")("thinking.type", kind)
    if value.get("budget_tokens") is not None:
        integer(1)("thinking.budget_tokens", value["budget_tokens"])
    return {"enabled": True, "disabled": False}.get(kind)


def _output_config(value: Any, chat: dict[str, Any]) -> None:
    nested({"effort": string, "format": obj})("output_config", value)
    fmt = value.get("format")
    if fmt is not None:
        one_of("json_schema")("output_config.format.type", fmt.get("type"))
        if fmt.get("schema") is None:
            raise missing("output_config.format.schema")
        obj("output_config.format.schema", fmt["schema"])
        chat["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "output", "schema": fmt["schema"]},
        }


ACCEPTED: dict[str, Check] = {
    "model": string,
    "max_tokens": integer(1, 2**31 - 1),
    "messages": lambda path, value: None,  # _message checks each
    "system": lambda path, value: None,
    "stop_sequences": array_of(string),
    "temperature": number(0, 1),
    "top_p": number(0, 1),
    "top_k": integer(0, 2**31 - 1),
    "tools": lambda path, value: None,
    "tool_choice": lambda path, value: None,
    "thinking": lambda path, value: None,
    "metadata": obj,
    "stream": boolean,
    "service_tier": one_of("auto", "standard_only"),
    "context_management": obj,  # server-side history edits; a local backend keeps no history
    "output_config": lambda path, value: None,
    "container": refuse("there are no code-execution containers here"),
    "mcp_servers": refuse("the proxy connects to no MCP servers; give Claude Code the servers"),
}


def to_chat(body: dict[str, Any]) -> dict[str, Any]:
    """A /v1/messages request -> the chat-completion request that serves it (400s on bad input)."""
    if body.get("max_tokens") is None:
        raise missing("max_tokens")
    if body.get("messages") is None:
        raise missing("messages")
    fields(body, ACCEPTED)
    array_of(obj, min_items=1)("messages", body["messages"])
    chat: dict[str, Any] = {"model": body["model"], "max_tokens": body["max_tokens"]}
    messages: list[dict[str, Any]] = []
    if body.get("system"):
        messages.append({"role": "system", "content": _system(body["system"])})
    for i, entry in enumerate(body["messages"]):
        messages += _message(f"messages[{i}]", entry)
    chat["messages"] = messages
    for key in ("temperature", "top_p", "top_k", "stream"):
        if body.get(key) is not None:
            chat[key] = body[key]
    if body.get("stop_sequences"):
        chat["stop"] = body["stop_sequences"]
    if body.get("tools") is not None:
        tools = _tools(body["tools"])
        if tools:
            chat["tools"] = tools
    if body.get("tool_choice") is not None:
        _tool_choice(body["tool_choice"], chat)
        if "tools" not in chat:
            chat.pop("tool_choice")
    if body.get("thinking") is not None:
        think = _thinking(body["thinking"])
        if think is not None:
            chat["think"] = think
    if body.get("output_config") is not None:
        _output_config(body["output_config"], chat)
    return chat


def count_estimate(chat: dict[str, Any]) -> int:
    """Tokens a prompt takes, estimated at 4 characters a token (text, tool schemas, images
    counted as their size in base64 would overcount, so each image counts as 1,000)."""
    chars, images = 0, 0
    for message in chat["messages"]:
        content = message.get("content")
        if isinstance(content, str):
            chars += len(content)
        elif isinstance(content, list):
            for part in content:
                if part["type"] == "text":
                    chars += len(part["text"])
                else:
                    images += 1
        chars += len(message.get("reasoning_content") or "")
        for call in message.get("tool_calls") or []:
            chars += len(call["function"]["name"]) + len(call["function"]["arguments"])
    if chat.get("tools"):
        chars += len(codec.dumps(chat["tools"]))
    return math.ceil(chars / CHARS_PER_TOKEN) + 1000 * images


# -- the answer ------------------------------------------------------------------------------


def _input(arguments: Any) -> Any:
    try:
        value = codec.loads(arguments) if isinstance(arguments, str) else arguments
    except codec.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def message(completion: dict[str, Any], model: str) -> dict[str, Any]:
    """A chat completion -> a Messages answer."""
    choice = (completion.get("choices") or [{}])[0]
    reply = choice.get("message") or {}
    content: list[dict[str, Any]] = []
    thinking = reply.get("reasoning_content") or reply.get("reasoning")
    if thinking:
        content.append({"type": "thinking", "thinking": thinking, "signature": ""})
    if reply.get("content"):
        content.append({"type": "text", "text": reply["content"]})
    for call in reply.get("tool_calls") or []:
        function = call.get("function") or {}
        content.append(
            {
                "type": "tool_use",
                "id": call.get("id") or _id("toolu"),
                "name": function.get("name", ""),
                "input": _input(function.get("arguments")),
            }
        )
    reason = choice.get("finish_reason") or "stop"
    if reply.get("tool_calls"):
        reason = "tool_calls"
    matched = choice.get("stop_reason")  # vLLM names the stop string; Ollama does not
    stop_sequence = matched if reason == "stop" and isinstance(matched, str) else None
    usage = completion.get("usage") or {}
    return {
        "id": _id("msg"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": "stop_sequence" if stop_sequence else STOP_REASONS.get(reason, "end_turn"),
        "stop_sequence": stop_sequence,
        "usage": {
            "input_tokens": usage.get("prompt_tokens") or 0,
            "output_tokens": usage.get("completion_tokens") or 0,
        },
    }


class MessagesStream:
    """Chat stream events -> Anthropic's: message_start, per block content_block_start/delta/
    stop, message_delta (stop_reason, usage), message_stop; `ping` while the backend is silent."""

    def __init__(self, model: str):
        self.model = model
        self.blocks = 0  # blocks opened so far; the open one is blocks - 1
        self.open: str | None = None  # "thinking" | "text" | "tool_use"
        self.tool_blocks: dict[int, int] = {}  # chat tool-call index -> block index
        self.head = b""  # the open text or thinking block's delta prefix

    def start(self) -> bytes:
        head = {
            "type": "message_start",
            "message": {
                "id": _id("msg"),
                "type": "message",
                "role": "assistant",
                "model": self.model,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": 0, "output_tokens": 0},
            },
        }
        return _event(b"message_start", codec.dumps(head))

    def _close(self) -> bytes:
        if self.open is None:
            return b""
        self.open = None
        index = str(self.blocks - 1).encode()
        return _event(
            b"content_block_stop", b'{"type":"content_block_stop","index":' + index + b"}"
        )

    def _open(self, kind: str, block: dict[str, Any]) -> bytes:
        out = self._close()
        self.open = kind
        self.blocks += 1
        payload = {"type": "content_block_start", "index": self.blocks - 1, "content_block": block}
        return out + _event(b"content_block_start", codec.dumps(payload))

    def _delta(self, index: int, delta: bytes) -> bytes:
        return _event(
            b"content_block_delta",
            b'{"type":"content_block_delta","index":' + str(index).encode() + b',"delta":'
            + delta + b"}",
        )  # fmt: skip

    def _delta_head(self, kind: bytes, field: bytes) -> bytes:
        """The bytes before the text of the open block's deltas (most of a stream's events)."""
        return (
            b'event: content_block_delta\ndata: {"type":"content_block_delta","index":'
            + str(self.blocks - 1).encode() + b',"delta":{"type":"' + kind + b'","' + field
            + b'":'
        )  # fmt: skip

    def thinking(self, text: str) -> bytes:
        out = b""
        if self.open != "thinking":
            out = self._open("thinking", {"type": "thinking", "thinking": "", "signature": ""})
            self.head = self._delta_head(b"thinking_delta", b"thinking")
        return out + self.head + codec.dumps(text) + b"}}\n\n"

    def text(self, text: str) -> bytes:
        out = b""
        if self.open != "text":
            out = self._open("text", {"type": "text", "text": ""})
            self.head = self._delta_head(b"text_delta", b"text")
        return out + self.head + codec.dumps(text) + b"}}\n\n"

    def tool_call(self, index: int, call_id: str | None, name: str | None, arguments: str) -> bytes:
        out = b""
        if index not in self.tool_blocks:
            block = {
                "type": "tool_use",
                "id": call_id or _id("toolu"),
                "name": name or "",
                "input": {},
            }
            out = self._open("tool_use", block)
            self.tool_blocks[index] = self.blocks - 1
        if arguments:
            delta = b'{"type":"input_json_delta","partial_json":' + codec.dumps(arguments) + b"}"
            out += self._delta(self.tool_blocks[index], delta)
        return out

    def finish(self, reason: str, usage: dict[str, int], stop_sequence: str | None = None) -> bytes:
        if self.tool_blocks:
            reason, stop_sequence = "tool_calls", None
        stop_reason = "stop_sequence" if stop_sequence else STOP_REASONS.get(reason, "end_turn")
        tail = {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": stop_sequence},
            "usage": {
                "input_tokens": usage.get("prompt_tokens") or 0,
                "output_tokens": usage.get("completion_tokens") or 0,
            },
        }
        return (
            self._close()
            + _event(b"message_delta", codec.dumps(tail))
            + _event(b"message_stop", b'{"type":"message_stop"}')
        )

    def fail(self, error: OpenAIError) -> bytes:
        return _event(b"error", error_json(error))

    def ping(self) -> bytes:
        return _event(b"ping", b'{"type":"ping"}')
