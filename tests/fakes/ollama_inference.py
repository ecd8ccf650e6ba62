"""What the fake Ollama answers to /api/chat, /api/generate and /api/embed (no I/O here).

Each request becomes a `Plan`: thinking and content tokens, tool calls and the done reason,
checked the way the real server checks (capabilities, option types, think values).
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
import string
from dataclasses import dataclass, field
from typing import Any

from .ollama_catalog import full_name

TOKEN = re.compile(r"\S+\s*|\s+")
DIRECTIVE = re.compile(r"\[fake:([a-z0-9-]+)\]")
INT_OPTIONS = {"num_predict", "top_k", "seed", "num_ctx", "num_keep", "repeat_last_n", "num_batch"}
FLOAT_OPTIONS = {"temperature", "top_p", "min_p", "typical_p", "repeat_penalty"}
FIRST_TOOL_CALL_IDS = (0, 12, 10)  # tool call ids arrived in v0.12.10
DEFAULT_NUM_CTX = 4096  # v0.6.7 to v0.15.4 (envconfig/config.go); later ones size it by VRAM


class HTTPError(Exception):
    """An error reply: status and Ollama's `{"error": message}` (None: empty body)."""

    def __init__(self, status: int, message: str | None):
        super().__init__(message)
        self.status, self.message = status, message


@dataclass
class Plan:
    model: str
    thinking: list[str] = field(default_factory=list)
    content: list[str] = field(default_factory=list)
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    done_reason: str = "stop"
    prompt_tokens: int = 0
    directive: str | None = None
    slow: bool = False
    num_ctx: int = DEFAULT_NUM_CTX
    context: list[int] | None = None

    @property
    def eval_tokens(self) -> int:
        return len(self.thinking) + len(self.content) + 8 * len(self.tool_calls)


def tokens(text: str) -> list[str]:
    return TOKEN.findall(text)


def version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", version)[:3])


def example_for(schema: Any) -> Any:
    """A value that fits a JSON schema (enough for structured-output tests)."""
    if not isinstance(schema, dict):
        return "example"
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        return {k: example_for(v) for k, v in (schema.get("properties") or {}).items()}
    if kind == "array":
        return [example_for(schema.get("items"))]
    return {"integer": 1, "number": 1.5, "boolean": True, "null": None}.get(kind, "example")


def check_options(options: Any) -> dict[str, Any]:
    """Option types as api/types.go Options.FromMap checks them; unknown keys are ignored."""
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise HTTPError(400, "json: cannot unmarshal into Go struct field .options")
    for key, value in options.items():
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if key in INT_OPTIONS and not (number and value == int(value)):
            raise HTTPError(400, f'option "{key}" must be of type integer')
        if key in FLOAT_OPTIONS and not number:
            raise HTTPError(400, f'option "{key}" must be of type float32')
        if key == "stop" and not (
            isinstance(value, list) and all(isinstance(s, str) for s in value)
        ):
            raise HTTPError(400, 'option "stop" must be of type array')
    return options


def check_keep_alive(value: Any) -> None:
    if value is None or (isinstance(value, int | float) and not isinstance(value, bool)):
        return
    if not isinstance(value, str) or not re.fullmatch(r"-?(\d+(\.\d+)?(ns|us|ms|s|m|h))+", value):
        raise HTTPError(400, f'time: invalid duration "{value}"')


def check_think(value: Any, model: str, caps: list[str]) -> bool:
    """Whether the model thinks (thinking models think unless told not to, since v0.12.4)."""
    if value is None:
        return "thinking" in caps
    if not (isinstance(value, bool) or value in ("low", "medium", "high", "max")):
        raise HTTPError(400, f'invalid think value: "{value}"')
    if value and "thinking" not in caps:
        raise HTTPError(400, f'"{model}" does not support thinking')
    return bool(value)


def check_format(value: Any) -> None:
    if value not in (None, "", "json") and not isinstance(value, dict):
        raise HTTPError(400, f"invalid format: {json.dumps(value)}")


def _cut(plan: Plan, options: dict[str, Any]) -> None:
    """Apply `stop` (cut before the first stop string) and `num_predict` (done_reason length)."""
    text = "".join(plan.content)
    for stop in options.get("stop") or []:
        if stop and stop in text:
            text = text[: text.index(stop)]
            plan.content = tokens(text)
    limit = options.get("num_predict")
    if isinstance(limit, int | float) and limit >= 0 and len(plan.content) > limit:
        plan.content = plan.content[: int(limit)]
        plan.done_reason = "length"


def _answer(text: str, images: int, fmt: Any) -> str:
    if fmt == "json":
        return json.dumps({"reply": text})
    if isinstance(fmt, dict):
        return json.dumps(example_for(fmt))
    seen = f"I see {images} image{'s' if images != 1 else ''}. " if images else ""
    return f"{seen}You said: {text}"


def _tool_calls(tools: list[Any], text: str, with_ids: bool) -> list[dict[str, Any]]:
    """Call every tool named in the user's text (else the first), with plausible arguments."""
    named = [
        t for t in tools if isinstance(t, dict) and t.get("function", {}).get("name", "") in text
    ]
    calls = []
    for index, tool in enumerate(named or tools[:1]):
        function = tool.get("function", {})
        params = function.get("parameters") or {}
        props = params.get("properties") or {}
        args = {}
        quoted = re.findall(r"`([^`]+)`", text)  # "run `echo hi`": what a model would pass on
        for key in params.get("required") or list(props)[:1]:
            prop = props.get(key, {})
            is_text = prop.get("type") == "string"
            if is_text and re.search(r"city|location|place", key):
                args[key] = "Paris"
            elif is_text and quoted:
                args[key] = quoted.pop(0)
            else:
                args[key] = example_for(prop)
        call: dict[str, Any] = {
            "function": {"index": index, "name": function.get("name", ""), "arguments": args}
        }
        if with_ids:
            suffix = "".join(random.choices(string.ascii_lowercase + string.digits, k=8))
            call = {"id": f"call_{suffix}", **call}
        calls.append(call)
    return calls


def plan_chat(body: dict[str, Any], caps: list[str], version: str) -> Plan:
    """What /api/chat answers (the model was found and has `caps`)."""
    model = body["model"]
    messages = body.get("messages") or []
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise HTTPError(
            400,
            "json: cannot unmarshal into Go struct field ChatRequest.messages of type []api.Message",
        )
    for message in messages:
        if not isinstance(message.get("content", ""), str):
            raise HTTPError(
                400,
                "json: cannot unmarshal array into Go struct field Message.messages.content of type string",
            )
        images = message.get("images") or []
        if not isinstance(images, list) or not all(isinstance(i, str) for i in images):
            raise HTTPError(
                400,
                "json: cannot unmarshal into Go struct field Message.messages.images of type api.ImageData",
            )
    if "completion" not in caps:
        raise HTTPError(400, f'"{model}" does not support chat')
    options = check_options(body.get("options"))
    check_keep_alive(body.get("keep_alive"))
    check_format(body.get("format"))
    thinks = check_think(body.get("think"), model, caps)
    tools = body.get("tools") or []
    if tools and "tools" not in caps:
        raise HTTPError(400, f"{full_name(model)} does not support tools")
    images = sum(len(m.get("images") or []) for m in messages)
    if images and "vision" not in caps:
        raise HTTPError(400, f"{full_name(model)} does not support vision")
    last_user = next((m for m in reversed(messages) if m.get("role", "").lower() == "user"), {})
    text = last_user.get("content", "")
    plan = Plan(
        model=model, prompt_tokens=sum(len(tokens(m.get("content", ""))) + 4 for m in messages)
    )
    # a longer prompt is cut to the context without an error (server/prompt.go chatPrompt)
    plan.num_ctx = int(options.get("num_ctx") or DEFAULT_NUM_CTX)
    plan.prompt_tokens = min(plan.prompt_tokens, plan.num_ctx)
    plan.directive = (DIRECTIVE.findall(text) or [None])[0]
    plan.slow = model.lower().startswith("slow")
    # a tool's result since the model last spoke is what it answers (the user may add words)
    since_reply = messages[
        next(
            (i for i in range(len(messages) - 1, -1, -1) if messages[i].get("role") == "assistant"),
            -1,
        )
        + 1 :
    ]
    results = [m for m in since_reply if m.get("role") == "tool"]
    if plan.slow:
        plan.content = ["tick "]
    elif results:
        plan.content = tokens(f"The tool said: {results[-1].get('content', '')}")
    elif tools and not body.get("format"):
        with_ids = version_tuple(version) >= FIRST_TOOL_CALL_IDS
        plan.tool_calls = _tool_calls(tools, text, with_ids)
    else:
        plan.content = tokens(_answer(text, images, body.get("format")))
    if thinks and not plan.slow:
        plan.thinking = tokens(f"The user wrote {len(tokens(text))} words, so I answer briefly.")
    _cut(plan, options)
    return plan


def plan_generate(body: dict[str, Any], caps: list[str]) -> Plan:
    """What /api/generate answers (the model was found and has `caps`)."""
    model = body["model"]
    prompt = body.get("prompt") or ""
    if not isinstance(prompt, str):
        raise HTTPError(
            400, "json: cannot unmarshal into Go struct field GenerateRequest.prompt of type string"
        )
    if "completion" not in caps:
        raise HTTPError(400, f'"{model}" does not support generate')
    options = check_options(body.get("options"))
    check_keep_alive(body.get("keep_alive"))
    check_format(body.get("format"))
    thinks = check_think(body.get("think"), model, caps)
    if body.get("suffix") and "insert" not in caps:
        raise HTTPError(400, f"{full_name(model)} does not support insert")
    images = body.get("images") or []
    if images and "vision" not in caps:
        raise HTTPError(400, f"{full_name(model)} does not support vision")
    plan = Plan(model=model, prompt_tokens=len(tokens(prompt)) + 1)
    plan.directive = (DIRECTIVE.findall(prompt) or [None])[0]
    plan.slow = model.lower().startswith("slow")
    if plan.slow:
        plan.content = ["tick "]
    elif body.get("suffix"):
        plan.content = tokens("    return a + b")
    else:
        plan.content = tokens(_answer(prompt, len(images), body.get("format")))
    if thinks and not plan.slow:
        plan.thinking = tokens("Thinking about the prompt.")
    _cut(plan, options)
    if not body.get("raw"):
        plan.context = list(range(1, plan.prompt_tokens + len(plan.content) + 1))
    return plan


def embedding(text: str, dims: int) -> list[float]:
    """A deterministic unit vector for a text."""
    seed = hashlib.sha256(text.encode()).digest()
    raw = [((seed[i % 32] + 7 * i) % 255) / 127.0 - 1.0 for i in range(dims)]
    norm = math.sqrt(sum(v * v for v in raw)) or 1.0
    return [round(v / norm, 6) for v in raw]


def embed(body: dict[str, Any], embedding_length: int) -> dict[str, Any]:
    """The /api/embed reply: one vector per input string."""
    inputs = body.get("input")
    if isinstance(inputs, str):
        inputs = [inputs]
    if inputs is None:
        inputs = []
    if not isinstance(inputs, list) or not all(isinstance(i, str) for i in inputs):
        raise HTTPError(400, "invalid input type")
    check_options(body.get("options"))
    check_keep_alive(body.get("keep_alive"))
    dims = body.get("dimensions") or embedding_length
    if not isinstance(dims, int) or dims < 1 or dims > embedding_length:
        raise HTTPError(400, f"invalid dimensions: {dims}")
    return {
        "model": body["model"],
        "embeddings": [embedding(text, dims) for text in inputs],
        "total_duration": 14_143_917,
        "load_duration": 1_019_500,
        "prompt_eval_count": sum(len(tokens(t)) + 1 for t in inputs),
    }
