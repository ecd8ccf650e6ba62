"""The OpenAI Responses API (what Codex speaks) on the proxy's chat path: pure functions.

`to_chat(body)` checks a /v1/responses request and returns the chat-completion request that
serves it; `response(completion, body, model)` turns the chat answer into a `response` object;
`ResponsesStream` writes the typed stream events (each with its `sequence_number`).

The proxy is stateless: the whole conversation comes with each request (Codex sends
`store: false` and its full history). `previous_response_id` and `conversation` are refused
with a 400 that names them; `store` is accepted and answered as `false`. Hosted tools
(`web_search`, `file_search`, tool namespaces, …) cannot run here and are not offered to the
model. `reasoning` input items are ignored (a local model cannot read another's reasoning).
"""

from __future__ import annotations

import os
import time
from typing import Any

from stackctl.proxy import codec
from stackctl.proxy.errors import OpenAIError, invalid_type, invalid_value, missing, unsupported
from stackctl.proxy.schemas import REASONING_EFFORTS, image_url
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

STATELESS = (
    "the proxy stores no responses (it is stateless); send the whole conversation in 'input', "
    "as Codex does with store: false"
)
ROLES = ("user", "assistant", "system", "developer")


def _id(prefix: str) -> str:
    return f"{prefix}_{os.urandom(16).hex()}"


# -- the request -----------------------------------------------------------------------------


def _parts(path: str, value: Any, role: str) -> Any:
    """A message's content -> chat content (a string, or text and image parts)."""
    if isinstance(value, str):
        return value
    if not isinstance(value, list):
        raise invalid_type(path, "a string or an array of content parts", value)
    parts: list[dict[str, Any]] = []
    for i, part in enumerate(value):
        where = f"{path}[{i}]"
        obj(where, part)
        kind = part.get("type")
        if kind in ("input_text", "output_text", "text", "refusal"):
            key = "refusal" if kind == "refusal" else "text"
            if part.get(key) is None:
                raise missing(f"{where}.{key}")
            string(f"{where}.{key}", part[key])
            parts.append({"type": "text", "text": part[key]})
        elif kind == "input_image" and role == "user":
            if part.get("file_id") is not None:
                raise unsupported(
                    f"{where}.file_id", "the proxy keeps no files; send image_url as a data: URI"
                )
            if part.get("image_url") is None:
                raise missing(f"{where}.image_url")
            image_url(f"{where}.image_url", part["image_url"])
            parts.append({"type": "image_url", "image_url": {"url": part["image_url"]}})
        elif kind in ("input_file", "input_audio"):
            raise unsupported(
                f"{where}.type", f"the models behind this proxy take text and images, not '{kind}'"
            )
        else:
            allowed = (
                "'input_text' or 'input_image'"
                if role == "user"
                else "'input_text' or 'output_text'"
            )
            raise invalid_value(f"{where}.type", allowed, kind)
    if all(p["type"] == "text" for p in parts):
        return "\n".join(p["text"] for p in parts)
    return parts


def _output_text(path: str, value: Any) -> str:
    """A function_call_output's output (a string, or parts of which the text is kept)."""
    if isinstance(value, str):
        return value
    content = _parts(path, value, "tool")
    if not isinstance(content, str):
        raise unsupported(path, "function outputs are passed on as text")
    return content


def _items(value: Any) -> list[dict[str, Any]]:
    """`input` items -> chat messages (consecutive function calls join one assistant message)."""
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    if not isinstance(value, list):
        raise invalid_type("input", "a string or an array of input items", value)
    messages: list[dict[str, Any]] = []
    for i, item in enumerate(value):
        where = f"input[{i}]"
        obj(where, item)
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role")
            if role is None:
                raise missing(f"{where}.role")
            one_of(*ROLES)(f"{where}.role", role)
            if item.get("content") is None:
                raise missing(f"{where}.content")
            messages.append(
                {"role": role, "content": _parts(f"{where}.content", item["content"], role)}
            )
        elif kind == "function_call":
            for key in ("call_id", "name", "arguments"):
                if item.get(key) is None:
                    raise missing(f"{where}.{key}")
                string(f"{where}.{key}", item[key])
            call = {
                "id": item["call_id"],
                "type": "function",
                "function": {"name": item["name"], "arguments": item["arguments"]},
            }
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant" and "tool_calls" in last:
                last["tool_calls"].append(call)
            elif last is not None and last["role"] == "assistant":
                last["tool_calls"] = [call]
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            if item.get("call_id") is None:
                raise missing(f"{where}.call_id")
            string(f"{where}.call_id", item["call_id"])
            if item.get("output") is None:
                raise missing(f"{where}.output")
            output = _output_text(f"{where}.output", item["output"])
            messages.append({"role": "tool", "tool_call_id": item["call_id"], "content": output})
        elif kind == "reasoning":
            continue
        elif kind == "item_reference":
            raise unsupported(f"{where}.type", STATELESS)
        else:
            raise unsupported(
                f"{where}.type",
                f"'{kind}' items belong to tools the proxy does not run; it takes message, "
                "function_call, function_call_output and reasoning items",
            )
    return messages


def _tools(value: Any) -> list[dict[str, Any]]:
    """Function tools -> chat tools; hosted tools and namespaces are left out."""
    if not isinstance(value, list):
        raise invalid_type("tools", "an array", value)
    tools = []
    for i, tool in enumerate(value):
        where = f"tools[{i}]"
        obj(where, tool)
        if tool.get("type") != "function":
            continue
        if tool.get("name") is None:
            raise missing(f"{where}.name")
        string(f"{where}.name", tool["name"])
        function: dict[str, Any] = {"name": tool["name"]}
        for key, check in (("description", string), ("parameters", obj), ("strict", boolean)):
            if tool.get(key) is not None:
                check(f"{where}.{key}", tool[key])
                function[key] = tool[key]
        tools.append({"type": "function", "function": function})
    return tools


def _tool_choice(value: Any) -> Any:
    if value in ("auto", "none", "required"):
        return value
    if isinstance(value, dict) and value.get("type") == "function":
        if value.get("name") is None:
            raise missing("tool_choice.name")
        string("tool_choice.name", value["name"])
        return {"type": "function", "function": {"name": value["name"]}}
    if isinstance(value, dict):
        raise unsupported(
            "tool_choice",
            "only function tools run here: use 'auto', 'none', 'required' or a named function",
        )
    raise invalid_value("tool_choice", "'auto', 'none', 'required' or a named function", value)


def _text_format(value: Any) -> dict[str, Any] | None:
    nested(
        {
            "format": obj,
            "verbosity": refuse("Ollama has no verbosity control", allowed=lambda v: v == "medium"),
        }
    )("text", value)
    fmt = value.get("format")
    if fmt is None:
        return None
    kind = fmt.get("type")
    one_of("text", "json_object", "json_schema")("text.format.type", kind)
    if kind == "json_schema":
        if fmt.get("schema") is None:
            raise missing("text.format.schema")
        obj("text.format.schema", fmt["schema"])
        schema = {"name": fmt.get("name") or "output", "schema": fmt["schema"]}
        if fmt.get("strict") is not None:
            schema["strict"] = fmt["strict"]
        return {"type": "json_schema", "json_schema": schema}
    return {"type": "json_object"} if kind == "json_object" else None


ACCEPTED: dict[str, Check] = {
    "model": string,
    "input": lambda path, value: None,  # _items checks it
    "instructions": string,
    "tools": lambda path, value: None,
    "tool_choice": lambda path, value: None,
    "max_output_tokens": integer(1, 2**31 - 1),
    "temperature": number(0, 2),
    "top_p": number(0, 1),
    "reasoning": nested(
        {"effort": one_of(*REASONING_EFFORTS), "summary": string, "generate_summary": string}
    ),
    "text": lambda path, value: None,
    "stream": boolean,
    "stream_options": obj,
    "store": boolean,
    "parallel_tool_calls": boolean,
    "metadata": obj,
    "include": array_of(string),  # e.g. reasoning.encrypted_content: there is none to include
    "prompt_cache_key": string,  # a cache hint; Ollama reuses its prompt cache on its own
    "client_metadata": obj,
    "user": string,
    "safety_identifier": string,
    "service_tier": refuse("there is one tier", allowed=lambda v: v in ("auto", "default")),
    "truncation": refuse(
        "the proxy does not cut the conversation; the model's context is its num_ctx",
        allowed=lambda v: v == "disabled",
    ),
    "previous_response_id": refuse(STATELESS),
    "conversation": refuse(STATELESS),
    "prompt": refuse("the proxy keeps no stored prompts"),
    "background": refuse("responses are answered while you wait", allowed=lambda v: v is False),
    "top_logprobs": refuse("the proxy does not return log probabilities", allowed=lambda v: v == 0),
    "max_tool_calls": integer(1),
}


def to_chat(body: dict[str, Any]) -> dict[str, Any]:
    """A /v1/responses request -> the chat-completion request that serves it (400s on bad input)."""
    if body.get("input") is None:
        raise missing("input")
    fields(body, ACCEPTED)
    messages = _items(body["input"])
    if body.get("instructions"):
        messages.insert(0, {"role": "system", "content": body["instructions"]})
    if not messages:
        raise invalid_value("input", "at least one message", body["input"])
    chat: dict[str, Any] = {"model": body["model"], "messages": messages}
    for key in ("temperature", "top_p", "stream", "parallel_tool_calls"):
        if body.get(key) is not None:
            chat[key] = body[key]
    if body.get("max_output_tokens") is not None:
        chat["max_tokens"] = body["max_output_tokens"]
    if body.get("tools") is not None:
        tools = _tools(body["tools"])
        if tools:
            chat["tools"] = tools
    if body.get("tool_choice") is not None:
        choice = _tool_choice(body["tool_choice"])
        if "tools" in chat:
            chat["tool_choice"] = choice
    effort = (body.get("reasoning") or {}).get("effort")
    if effort:
        chat["reasoning_effort"] = effort
    if body.get("text") is not None:
        fmt = _text_format(body["text"])
        if fmt:
            chat["response_format"] = fmt
    return chat


# -- the answer ------------------------------------------------------------------------------


def _usage(usage: dict[str, int]) -> dict[str, Any]:
    prompt, completion = usage.get("prompt_tokens") or 0, usage.get("completion_tokens") or 0
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt + completion,
    }


def _envelope(ident: str, body: dict[str, Any], model: str) -> dict[str, Any]:
    """The response object's fields that do not depend on the answer."""
    return {
        "id": ident,
        "object": "response",
        "created_at": int(time.time()),
        "status": "in_progress",
        "error": None,
        "incomplete_details": None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "model": model,
        "output": [],
        "parallel_tool_calls": body.get("parallel_tool_calls") is not False,
        "previous_response_id": None,
        "reasoning": {"effort": (body.get("reasoning") or {}).get("effort"), "summary": None},
        "store": False,
        "temperature": body.get("temperature"),
        "text": {"format": (body.get("text") or {}).get("format") or {"type": "text"}},
        "tool_choice": body.get("tool_choice") or "auto",
        "tools": [
            t
            for t in body.get("tools") or []
            if isinstance(t, dict) and t.get("type") == "function"
        ],
        "top_p": body.get("top_p"),
        "usage": None,
        "metadata": body.get("metadata") or {},
    }


def _finished(envelope: dict[str, Any], reason: str, usage: dict[str, int]) -> dict[str, Any]:
    incomplete = reason == "length"
    envelope["status"] = "incomplete" if incomplete else "completed"
    envelope["incomplete_details"] = {"reason": "max_output_tokens"} if incomplete else None
    envelope["usage"] = _usage(usage)
    return envelope


def _reasoning_item(ident: str, text: str) -> dict[str, Any]:
    return {
        "type": "reasoning",
        "id": ident,
        "summary": [],
        "content": [{"type": "reasoning_text", "text": text}],
    }


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _message_item(ident: str, text: str, status: str) -> dict[str, Any]:
    return {
        "type": "message",
        "id": ident,
        "status": status,
        "role": "assistant",
        "content": [_text_part(text)],
    }


def _call_item(ident: str, call_id: str, name: str, arguments: str, status: str) -> dict[str, Any]:
    return {
        "type": "function_call",
        "id": ident,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": status,
    }


def response(completion: dict[str, Any], body: dict[str, Any], model: str) -> dict[str, Any]:
    """A chat completion -> a `response` object."""
    choice = (completion.get("choices") or [{}])[0]
    reply = choice.get("message") or {}
    output: list[dict[str, Any]] = []
    thinking = reply.get("reasoning_content") or reply.get("reasoning")
    if thinking:
        output.append(_reasoning_item(_id("rs"), thinking))
    if reply.get("content"):
        output.append(_message_item(_id("msg"), reply["content"], "completed"))
    for call in reply.get("tool_calls") or []:
        function = call.get("function") or {}
        arguments = function.get("arguments")
        if not isinstance(arguments, str):
            arguments = codec.dumps(arguments or {}).decode()
        output.append(
            _call_item(
                _id("fc"),
                call.get("id") or _id("call"),
                function.get("name", ""),
                arguments,
                "completed",
            )
        )
    envelope = _envelope(_id("resp"), body, model)
    envelope["output"] = output
    return _finished(envelope, choice.get("finish_reason") or "stop", completion.get("usage") or {})


class ResponsesStream:
    """Chat stream events -> the Responses stream: response.created, response.in_progress, the
    output items (added, their parts and deltas, done), then response.completed (or
    response.incomplete at max_output_tokens, response.failed on a backend error)."""

    def __init__(self, body: dict[str, Any], model: str):
        self.envelope = _envelope(_id("resp"), body, model)
        self.sequence = 0
        self.output: list[dict[str, Any]] = []  # finished items
        self.open: dict[str, Any] | None = None  # the item being streamed
        self.calls: dict[int, dict[str, Any]] = {}  # chat tool-call index -> its item
        self.texts: list[str] = []
        self.head = b""  # the open item's delta event, up to its text

    def _event(self, kind: str, payload: dict[str, Any]) -> bytes:
        payload = {"type": kind, "sequence_number": self.sequence, **payload}
        self.sequence += 1
        return b"event: " + kind.encode() + b"\ndata: " + codec.dumps(payload) + b"\n\n"

    def start(self) -> bytes:
        return self._event("response.created", {"response": self.envelope}) + self._event(
            "response.in_progress", {"response": self.envelope}
        )

    def _where(self) -> dict[str, Any]:
        assert self.open is not None
        return {"item_id": self.open["id"], "output_index": len(self.output)}

    def _close(self) -> bytes:
        item = self.open
        if item is None:
            return b""
        out, where, text = b"", self._where(), "".join(self.texts)
        if item["type"] == "message":
            item = _message_item(item["id"], text, "completed")
            part = item["content"][0]
            out += self._event(
                "response.output_text.done",
                {**where, "content_index": 0, "text": text, "logprobs": []},
            )
            out += self._event(
                "response.content_part.done", {**where, "content_index": 0, "part": part}
            )
        elif item["type"] == "reasoning":
            item = _reasoning_item(item["id"], text)
            out += self._event(
                "response.reasoning_text.done", {**where, "content_index": 0, "text": text}
            )
        else:
            item = {**item, "arguments": text, "status": "completed"}
            out += self._event(
                "response.function_call_arguments.done",
                {**where, "name": item["name"], "arguments": text},
            )
        out += self._event(
            "response.output_item.done", {"output_index": len(self.output), "item": item}
        )
        self.output.append(item)
        self.open, self.texts = None, []
        return out

    def _add(self, item: dict[str, Any]) -> bytes:
        out = self._close()
        self.open = item
        return out + self._event(
            "response.output_item.added", {"output_index": len(self.output), "item": item}
        )

    def _delta(self, head: bytes, text: str) -> bytes:
        """A delta event from its precomputed head (the sequence number goes last): these are
        most of a stream's events."""
        number = str(self.sequence).encode()
        self.sequence += 1
        return head + codec.dumps(text) + b',"sequence_number":' + number + b"}\n\n"

    def _delta_head(self, kind: bytes, members: bytes = b"") -> bytes:
        return (
            b"event: " + kind + b'\ndata: {"type":"' + kind + b'","item_id":'
            + codec.dumps(self.open["id"] if self.open else "") + b',"output_index":'
            + str(len(self.output)).encode() + members + b',"delta":'
        )  # fmt: skip

    def thinking(self, text: str) -> bytes:
        out = b""
        if self.open is None or self.open["type"] != "reasoning":
            out = self._add({"type": "reasoning", "id": _id("rs"), "summary": [], "content": []})
            self.head = self._delta_head(b"response.reasoning_text.delta", b',"content_index":0')
        self.texts.append(text)
        return out + self._delta(self.head, text)

    def text(self, text: str) -> bytes:
        out = b""
        if self.open is None or self.open["type"] != "message":
            item = {
                "type": "message",
                "id": _id("msg"),
                "status": "in_progress",
                "role": "assistant",
                "content": [],
            }
            out = self._add(item)
            out += self._event(
                "response.content_part.added",
                {**self._where(), "content_index": 0, "part": _text_part("")},
            )
            members = b',"content_index":0,"logprobs":[]'
            self.head = self._delta_head(b"response.output_text.delta", members)
        self.texts.append(text)
        return out + self._delta(self.head, text)

    def tool_call(self, index: int, call_id: str | None, name: str | None, arguments: str) -> bytes:
        out = b""
        if index not in self.calls:
            item = _call_item(_id("fc"), call_id or _id("call"), name or "", "", "in_progress")
            self.calls[index] = item
            out = self._add(item)
            self.head = self._delta_head(b"response.function_call_arguments.delta")
        if arguments and self.open is self.calls[index]:
            self.texts.append(arguments)
            out += self._delta(self.head, arguments)
        return out

    def finish(self, reason: str, usage: dict[str, int], stop_sequence: str | None = None) -> bytes:
        out = self._close()
        envelope = _finished(self.envelope, reason, usage)
        envelope["output"] = self.output
        kind = "response.incomplete" if envelope["status"] == "incomplete" else "response.completed"
        return out + self._event(kind, {"response": envelope})

    def fail(self, error: OpenAIError) -> bytes:
        envelope = {**self.envelope, "status": "failed", "output": self.output}
        envelope["error"] = {"code": error.code or "server_error", "message": error.message}
        return self._event("response.failed", {"response": envelope})

    def ping(self) -> bytes:
        return b": keep-alive\n\n"  # an SSE comment: Responses streams have no ping event
