"""A fake OpenAI-compatible server that behaves like vLLM's (vllm-project/vllm
`vllm/entrypoints/openai/api_server.py`: /health, /v1/models, /version, chat and completions).

Run it: `python -m tests.fakes.openai_backend [MODEL] --host H --port P --served-model-name N
[--api-key K] [--max-model-len L] [--state-dir D]` (other `vllm serve` flags are accepted and
ignored), or `main([...])` from a fake `vllm serve`. In-process: `FakeOpenAIBackend(...).start()`.

Routes: `GET /health` (200, empty body), `/version`, `/v1/models` (ModelCards with
`max_model_len`), `POST /v1/chat/completions`, `/v1/completions`, `/v1/embeddings` (SSE when
`stream`), `POST /tokenize`. With an API key, only `/v1/...` needs `Authorization: Bearer` (401
`{"error": "Unauthorized"}` otherwise), as in vLLM. Every request is logged with its headers
and exact JSON body: `.requests()` in-process, `requests.jsonl` in the state dir. A served
name starting with `slow` streams `tick ` every 0.05 s (outcome `cancelled` on hang-up).
`error_shape="flat"` answers errors in the older vLLM shape (no `error` wrapper).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from .asgi_server import ServedFake, ServerThread, answer_lifespan, read_body, stream_body

VERSION = "0.11.0"


def _words(text: str) -> list[str]:
    parts = text.split(" ")
    return [p + " " for p in parts[:-1]] + [parts[-1]]


def _text_of(content: Any) -> str:
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content if isinstance(content, str) else ""


class FakeOpenAIApp:
    """The ASGI app."""

    def __init__(
        self,
        served_names: list[str],
        api_key: str | None = None,
        max_model_len: int = 8192,
        state_dir: Path | None = None,
        error_shape: str = "nested",
    ):
        self.names = served_names
        self.api_key = api_key
        self.max_model_len = max_model_len
        self.state_dir = state_dir
        self.error_shape = error_shape
        self.log: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.created = int(time.time())

    def _finish(self, entry: dict[str, Any], outcome: str) -> None:
        entry["outcome"] = outcome
        if self.state_dir is not None:
            with self.lock, open(Path(self.state_dir) / "requests.jsonl", "a") as fh:
                fh.write(json.dumps(entry) + "\n")

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await answer_lifespan(receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        raw = await read_body(receive)
        method, path = scope["method"], scope["path"]
        try:
            body: Any = json.loads(raw) if raw.strip() else None
        except json.JSONDecodeError:
            body = raw.decode("utf-8", "replace")
        entry = {"method": method, "path": path, "headers": headers, "body": body}
        with self.lock:
            self.log.append({**entry, "outcome": "running"})
            entry = self.log[-1]
        if (
            self.api_key
            and path.startswith("/v1")
            and method != "OPTIONS"
            and headers.get("authorization") != f"Bearer {self.api_key}"
        ):
            self._finish(entry, "error:401")
            await self._json(send, 401, {"error": "Unauthorized"})
            return
        status, payload = await self.route(method, path, body)
        if isinstance(payload, AsyncIterator):
            self._finish(entry, await stream_body(receive, send, b"text/event-stream", payload))
            return
        self._finish(entry, "completed" if status < 400 else f"error:{status}")
        await self._json(send, status, payload)

    async def _json(self, send: Any, status: int, payload: Any) -> None:
        body = b"" if payload is None else json.dumps(payload).encode()
        kind = b"application/json"
        headers = [(b"content-type", kind), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def _error(self, status: int, kind: str, message: str, param: str | None = None) -> tuple:
        info = {"message": message, "type": kind, "param": param, "code": status}
        if self.error_shape == "flat":
            return status, {"object": "error", **info}
        return status, {"error": info}

    async def route(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        if path == "/health":
            return 200, None
        if path == "/version":
            return 200, {"version": VERSION}
        if path == "/v1/models" and method == "GET":
            return 200, {"object": "list", "data": [self._card(n) for n in self.names]}
        if path == "/tokenize" and method == "POST":
            return self._tokenize(body)
        routes = {"/v1/chat/completions", "/v1/completions", "/v1/embeddings"}
        if path not in routes:
            return 404, {"detail": "Not Found"}
        if method != "POST":
            return 405, {"detail": "Method Not Allowed"}
        if not isinstance(body, dict):
            return self._error(400, "BadRequestError", "Invalid JSON body")
        model = body.get("model")
        if model not in self.names:
            return self._error(
                404, "NotFoundError", f"The model `{model}` does not exist.", "model"
            )
        if path == "/v1/embeddings":
            return self._embeddings(body)
        chat = path == "/v1/chat/completions"
        if chat and not isinstance(body.get("messages"), list):
            return self._error(400, "BadRequestError", "messages: Field required", "messages")
        if chat:
            text = _text_of((body["messages"] or [{}])[-1].get("content"))
        else:
            text = body.get("prompt") if isinstance(body.get("prompt"), str) else ""
        pieces = ["tick "] * 400 if str(model).startswith("slow") else _words(f"You said: {text}")
        limit = body.get("max_tokens") or body.get("max_completion_tokens")
        finish, stop_reason = "stop", None
        stops = [body["stop"]] if isinstance(body.get("stop"), str) else body.get("stop") or []
        whole = "".join(pieces)
        matched = [(whole.index(s), s) for s in stops if isinstance(s, str) and s and s in whole]
        if matched:  # cut before the stop string; vLLM names it in stop_reason
            cut, stop_reason = min(matched)
            pieces = _words(whole[:cut]) if whole[:cut] else []
        if isinstance(limit, int) and len(pieces) > limit:
            pieces, finish, stop_reason = pieces[:limit], "length", None
        usage = {"prompt_tokens": len(text.split()) + 5, "completion_tokens": len(pieces)}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        ident = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex
        if body.get("stream"):
            return 200, self._sse(ident, model, chat, pieces, (finish, stop_reason), usage, body)
        choice: dict[str, Any] = {
            "index": 0,
            "finish_reason": finish,
            "stop_reason": stop_reason,
            "logprobs": None,
        }
        if chat:
            choice["message"] = {"role": "assistant", "content": "".join(pieces), "tool_calls": []}
        else:
            choice["text"] = "".join(pieces)
        kind = "chat.completion" if chat else "text_completion"
        return 200, {
            "id": ident,
            "object": kind,
            "created": int(time.time()),
            "model": model,
            "choices": [choice],
            "usage": usage,
        }

    async def _sse(
        self,
        ident: str,
        model: str,
        chat: bool,
        pieces: list[str],
        ending: tuple[str, str | None],
        usage: dict,
        body: dict,
    ) -> AsyncIterator[bytes]:
        kind = "chat.completion.chunk" if chat else "text_completion"
        slow = model.startswith("slow")

        def event(choices: list[dict[str, Any]], **extra: Any) -> bytes:
            chunk = {"id": ident, "object": kind, "created": int(time.time()), "model": model}
            chunk.update(choices=choices, **extra)
            return b"data: " + json.dumps(chunk).encode() + b"\n\n"

        def choice(text: str, reason: str | None = None, role: bool = False) -> dict[str, Any]:
            stop_reason = ending[1] if reason else None
            if not chat:
                return {"index": 0, "text": text, "logprobs": None, "finish_reason": reason,
                        "stop_reason": stop_reason}  # fmt: skip
            delta = {"role": "assistant", "content": text} if role else {"content": text}
            return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": reason,
                    "stop_reason": stop_reason}  # fmt: skip

        if chat:
            yield event([choice("", role=True)])
        for piece in pieces:
            yield event([choice(piece)])
            await asyncio.sleep(0.05 if slow else 0)
        yield event([choice("", ending[0])])
        if (body.get("stream_options") or {}).get("include_usage"):
            yield event([], usage=usage)
        yield b"data: [DONE]\n\n"

    def _tokenize(self, body: Any) -> tuple[int, Any]:
        """vLLM's POST /tokenize (at the server root, not under /v1): a chat request
        (`messages`, `tools`, `add_generation_prompt`) or a `prompt`, answered with
        {count, max_model_len, tokens} (vllm/entrypoints/openai/protocol.py
        TokenizeChatRequest, TokenizeResponse). Here a token is a word, plus 4 per message."""
        if not isinstance(body, dict) or body.get("model") not in self.names:
            return self._error(404, "NotFoundError", "The model does not exist.", "model")
        if isinstance(body.get("messages"), list):
            count = sum(len(_text_of(m.get("content")).split()) + 4 for m in body["messages"])
        elif isinstance(body.get("prompt"), str):
            count = len(body["prompt"].split())
        else:
            return self._error(400, "BadRequestError", "messages or prompt: Field required")
        return 200, {
            "count": count,
            "max_model_len": self.max_model_len,
            "tokens": list(range(count)),
        }

    def _card(self, name: str) -> dict[str, Any]:
        return {
            "id": name,
            "object": "model",
            "created": self.created,
            "owned_by": "vllm",
            "root": name,
            "parent": None,
            "max_model_len": self.max_model_len,
            "permission": [{"id": f"modelperm-{uuid.uuid4().hex}", "object": "model_permission"}],
        }

    def _embeddings(self, body: dict[str, Any]) -> tuple[int, Any]:
        inputs = body.get("input")
        inputs = [inputs] if isinstance(inputs, str) else inputs
        if not isinstance(inputs, list) or not inputs:
            return self._error(400, "BadRequestError", "input: Field required", "input")
        data = []
        for index, text in enumerate(inputs):
            digest = hashlib.sha256(str(text).encode()).digest()
            vector = [round(b / 255.0, 6) for b in digest[:8]]
            data.append({"index": index, "object": "embedding", "embedding": vector})
        tokens = sum(len(str(t).split()) for t in inputs)
        return 200, {
            "id": f"embd-{uuid.uuid4().hex}",
            "object": "list",
            "created": int(time.time()),
            "model": body["model"],
            "data": data,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens, "completion_tokens": 0},
        }


class FakeOpenAIBackend(ServedFake):
    """The fake in this process: `.start()`, `.url` (the root; the API is under /v1), `.requests()`."""

    def __init__(
        self,
        served_names: list[str],
        api_key: str | None = None,
        max_model_len: int = 8192,
        state_dir: Path | None = None,
        error_shape: str = "nested",
    ):
        self.app = FakeOpenAIApp(served_names, api_key, max_model_len, state_dir, error_shape)
        self.server = ServerThread(self.app)

    def requests(self, path: str | None = None) -> list[dict[str, Any]]:
        """Requests seen so far, oldest first, each with `headers` and the exact `body`."""
        with self.app.lock:
            return [dict(e) for e in self.app.log if path is None or e["path"] == path]


def main(argv: list[str] | None = None) -> None:
    """`vllm serve MODEL`, faked: serve until interrupted."""
    import uvicorn

    parser = argparse.ArgumentParser(prog="fake-vllm", description=__doc__.split("\n")[0])
    parser.add_argument("model", nargs="?", default=None)
    parser.add_argument("--model", dest="model_flag", default=None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--served-model-name", nargs="+", action="extend", default=[])
    parser.add_argument("--api-key", default=os.environ.get("VLLM_API_KEY"))
    parser.add_argument("--max-model-len", type=int, default=8192)
    parser.add_argument("--state-dir", default=os.environ.get("FAKE_VLLM_STATE"))
    args, _ignored = parser.parse_known_args(argv)
    model = args.model or args.model_flag or "facebook/opt-125m"
    names = args.served_model_name or [model]
    state_dir = Path(args.state_dir or tempfile.mkdtemp(prefix="fake-vllm-"))
    state_dir.mkdir(parents=True, exist_ok=True)
    app = FakeOpenAIApp(names, args.api_key, args.max_model_len, state_dir)
    print(f"fake vllm serving {', '.join(names)} on {args.host}:{args.port}", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", lifespan="on")


if __name__ == "__main__":
    main()
