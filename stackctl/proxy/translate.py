"""OpenAI requests -> Ollama's native request bodies (pure functions, no I/O).

The bodies were checked by `schemas` first, so these functions only map:
chat -> POST /api/chat, legacy completions -> POST /api/generate, embeddings -> POST /api/embed.
"""

from __future__ import annotations

from typing import Any

from stackctl.proxy import codec
from stackctl.proxy.errors import OpenAIError

# options that decide how Ollama loads a model: a different value makes it reload the model
LOAD_TIME_OPTIONS = ("num_ctx", "num_batch", "num_gpu", "main_gpu", "use_mmap", "num_thread")
# OpenAI (and vLLM) sampling fields and the Ollama option each one sets
SAMPLING_TO_OPTIONS = {
    "temperature": "temperature",
    "top_p": "top_p",
    "seed": "seed",
    "presence_penalty": "presence_penalty",
    "frequency_penalty": "frequency_penalty",
    "top_k": "top_k",
    "min_p": "min_p",
    "repetition_penalty": "repeat_penalty",
}
# OpenAI's reasoning_effort -> Ollama's think (as Ollama's own /v1 layer maps it)
EFFORT_TO_THINK: dict[str, bool | str] = {
    "none": False,
    "minimal": "low",
    "low": "low",
    "medium": "medium",
    "high": "high",
    "xhigh": "max",
}


def ollama_options(body: dict[str, Any], pinned: dict[str, Any]) -> dict[str, Any]:
    """Ollama `options` from the request's sampling fields, its `options`, and the config.

    Load-time options come only from `proxy.model_options` (a client value that differs is a
    400: varying them would make Ollama reload the model); the other configured options are
    defaults that a request may override.
    """
    options = {k: v for k, v in (body.get("options") or {}).items() if v is not None}
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    if limit is not None:
        options["num_predict"] = limit
    for field, option in SAMPLING_TO_OPTIONS.items():
        if body.get(field) is not None:
            options[option] = body[field]
    stop = body.get("stop")
    if stop is not None:
        options["stop"] = [stop] if isinstance(stop, str) else stop
    for key in LOAD_TIME_OPTIONS:
        if key in options and options[key] != pinned.get(key):
            where = f"options.{key}"
            fix = (
                f"this model is pinned to {pinned[key]}"
                if key in pinned
                else f"set it for this model in proxy.model_options.{body.get('model')}"
            )
            raise OpenAIError(
                400,
                f"'{where}' decides how Ollama loads the model (another value reloads it): {fix}.",
                param=where,
                code="unsupported_parameter",
            )
    return {**{k: v for k, v in pinned.items() if k not in options}, **options}


def think_value(body: dict[str, Any]) -> bool | str | None:
    """Ollama's `think` from `think` (an extension), `reasoning_effort` or `reasoning.effort`."""
    if body.get("think") is not None:
        return body["think"]
    effort = body.get("reasoning_effort") or (body.get("reasoning") or {}).get("effort")
    return EFFORT_TO_THINK[effort] if effort else None


def _text_and_images(content: Any) -> tuple[str, list[str]]:
    if content is None:
        return "", []
    if isinstance(content, str):
        return content, []
    texts, images = [], []
    for part in content:
        kind = part["type"]
        if kind in ("text", "refusal"):
            texts.append(part[kind])
        elif kind == "image_url":
            url = (
                part["image_url"]["url"]
                if isinstance(part["image_url"], dict)
                else part["image_url"]
            )
            images.append(url.split(",", 1)[1])  # Ollama wants bare base64, no data: prefix
    return "\n".join(texts), images


def _arguments(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        return codec.loads(value or "{}")
    return value or {}


def messages_to_ollama(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """OpenAI messages -> Ollama messages (string content, base64 images, object arguments)."""
    names_by_call_id: dict[str, str] = {}
    native_messages = []
    for message in messages:
        role = "system" if message["role"] == "developer" else message["role"]
        text, images = _text_and_images(message.get("content"))
        native: dict[str, Any] = {"role": role, "content": text}
        if images:
            native["images"] = images
        thinking = (
            message.get("reasoning_content") or message.get("reasoning") or message.get("thinking")
        )
        if role == "assistant" and thinking:
            native["thinking"] = thinking
        if role == "assistant" and message.get("tool_calls"):
            calls = []
            for call in message["tool_calls"]:
                function = call["function"]
                native_call: dict[str, Any] = {
                    "function": {
                        "name": function["name"],
                        "arguments": _arguments(function.get("arguments")),
                    }
                }
                if call.get("id"):
                    native_call["id"] = call["id"]
                    names_by_call_id[call["id"]] = function["name"]
                calls.append(native_call)
            native["tool_calls"] = calls
        if role == "tool":
            name = names_by_call_id.get(message["tool_call_id"]) or message.get("name")
            if name:
                native["tool_name"] = name
            native["tool_call_id"] = message["tool_call_id"]
        native_messages.append(native)
    return native_messages


def _common(body: dict[str, Any], model: str, pinned: dict[str, Any]) -> dict[str, Any]:
    native: dict[str, Any] = {"model": model, "stream": bool(body.get("stream"))}
    options = ollama_options(body, pinned)
    if options:
        native["options"] = options
    if body.get("keep_alive") is not None:
        native["keep_alive"] = body["keep_alive"]
    return native


def chat_to_ollama(body: dict[str, Any], model: str, pinned: dict[str, Any]) -> dict[str, Any]:
    """A checked chat completion request -> the /api/chat body."""
    native = _common(body, model, pinned)
    native["messages"] = messages_to_ollama(body["messages"])
    if body.get("tools") and body.get("tool_choice") != "none":
        native["tools"] = body["tools"]
    response_format = body.get("response_format") or {}
    if response_format.get("type") == "json_object":
        native["format"] = "json"
    elif response_format.get("type") == "json_schema":
        native["format"] = response_format["json_schema"]["schema"]
    think = think_value(body)
    if think is not None:
        native["think"] = think
    return native


def completion_to_ollama(
    body: dict[str, Any], model: str, pinned: dict[str, Any]
) -> dict[str, Any]:
    """A checked legacy completion request -> the /api/generate body.

    Thinking is off unless asked for (`think`, `reasoning_effort`): a legacy completion, say
    an editor's fill-in-the-middle, wants the text itself.
    """
    native = _common(body, model, pinned)
    prompt = body["prompt"]
    native["prompt"] = prompt[0] if isinstance(prompt, list) else prompt
    if body.get("suffix"):
        native["suffix"] = body["suffix"]
    if body.get("raw") is not None:
        native["raw"] = body["raw"]
    think = think_value(body)
    native["think"] = think if think is not None else False
    return native


def dimensions(body: dict[str, Any]) -> int | None:
    """`dimensions` as an int: the check accepts an integral float such as 2.0 (JSON has one
    number type), which Ollama's Go decoder refuses for an int field and a slice cannot take."""
    value = body.get("dimensions")
    return None if value is None else int(value)


def embedding_to_ollama(body: dict[str, Any], model: str, pinned: dict[str, Any]) -> dict[str, Any]:
    """A checked embeddings request -> the /api/embed body."""
    native: dict[str, Any] = {"model": model, "input": body["input"]}
    for key in ("truncate", "keep_alive"):
        if body.get(key) is not None:
            native[key] = body[key]
    if body.get("dimensions") is not None:
        native["dimensions"] = dimensions(body)
    options = ollama_options({"options": body.get("options"), "model": body.get("model")}, pinned)
    if options:
        native["options"] = options
    return native
