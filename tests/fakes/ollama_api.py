"""A fake Ollama HTTP server that behaves like the real one (ollama/ollama `docs/api.md`,
`server/routes.go`, `api/types.go`).

Run it: `python -m tests.fakes.ollama_api [--host H] [--port P] [--state-dir DIR]` (host and
port default to OLLAMA_HOST, read like real Ollama), or `main([...])` from a fake `ollama
serve`. In-process: `FakeOllama(state_dir).start()` serves it with uvicorn in a thread.

The state dir holds `models.json` (installed models, kept across restarts), `behaviour.json`
(knobs a test writes: `version`, `pull_stall_first_attempt_seconds`, `pull_step_seconds`,
`pull_seconds` (the download takes that long, at a fixed rate, e.g. for bench/first_up.py),
`slow_token_seconds`, `slow_tokens`, `gpu_fraction`), `pulls.json` (pull attempts per model) and
`requests.jsonl` (each request: method, path, host, body, outcome).

Chat answers `You said: <last user text>`; a request with tools gets tool calls (of the tools
the user's text names, else the first), and a tool result since the last assistant message
gets `The tool said: <result>`; a thinking model thinks. Test hooks in the last user
message or prompt: `[fake:error-mid-stream]` (some
tokens, then an `{"error"}` line and no done), `[fake:no-done]` (the stream just ends),
`[fake:error-500]`, `[fake:busy]` (503). A model named `slow…` streams `tick ` every
`slow_token_seconds`; a client that hangs up shows as outcome `cancelled` in the log.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from .asgi_server import ServedFake, ServerThread, answer_lifespan, read_body, stream_body
from .ollama_catalog import canonical, layers_for, public
from .ollama_inference import DEFAULT_NUM_CTX, HTTPError, Plan, embed, plan_chat, plan_generate
from .ollama_state import State, host_allowed, now_rfc3339, parse_ollama_host, read_requests

RUNNER_STOPPED = (
    "model runner has unexpectedly stopped, this may be due to resource limitations or an "
    "internal error, check ollama server logs for details"
)
BUSY = "server busy, please try again.  maximum pending requests exceeded"
MID_STREAM_ERROR = "an error was encountered while running the model: unexpected EOF"
METHODS = {
    "/": ("GET", "HEAD"),
    "/api/version": ("GET", "HEAD"),
    "/api/tags": ("GET", "HEAD"),
    "/api/ps": ("GET",),
    "/api/show": ("POST",),
    "/api/pull": ("POST",),
    "/api/chat": ("POST",),
    "/api/generate": ("POST",),
    "/api/embed": ("POST",),
    "/api/embeddings": ("POST",),
    "/api/delete": ("DELETE",),
    "/api/copy": ("POST",),
}


def _line(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


class FakeOllamaApp:
    """The ASGI app."""

    def __init__(self, state_dir: Path, *, loopback: bool = True):
        self.state = State(state_dir)
        self.loopback = loopback
        self.loaded: dict[str, float] = {}  # model name -> expiry (unix time), for /api/ps
        self.contexts: dict[str, int] = {}  # model name -> the num_ctx it was loaded with

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await answer_lifespan(receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host", "")
        method, path = scope["method"], scope["path"]
        if self.loopback and not host_allowed(host):
            await self._respond(send, 403, None)
            return
        if method == "OPTIONS":
            await self._respond(send, 204, None)
            return
        raw = await read_body(receive)
        if path not in METHODS:
            await self._respond(send, 404, None)
            return
        if method not in METHODS[path]:
            await self._respond(send, 405, None, text="405 method not allowed")
            return
        try:
            body = json.loads(raw) if raw.strip() else {}
        except json.JSONDecodeError as exc:
            entry = self.state.begin(method, path, host, raw.decode("utf-8", "replace"))
            self.state.finish(entry, "error:400")
            await self._respond(send, 400, {"error": f"invalid character: {exc.msg}"})
            return
        entry = self.state.begin(method, path, host, body)
        try:
            result = await self.route(method, path, body if isinstance(body, dict) else {})
        except HTTPError as exc:
            self.state.finish(entry, f"error:{exc.status}")
            await self._respond(
                send, exc.status, None if exc.message is None else {"error": exc.message}
            )
            return
        if isinstance(result, tuple):
            status, payload = result
            self.state.finish(entry, "completed" if status < 400 else f"error:{status}")
            await self._respond(send, status, payload, head=method == "HEAD")
            return
        outcome = await self._stream(receive, send, result)
        self.state.finish(entry, outcome)

    async def _respond(
        self, send: Any, status: int, payload: Any, *, text: str | None = None, head: bool = False
    ) -> None:
        if isinstance(payload, str):
            body, kind = payload.encode(), b"text/plain; charset=utf-8"
        elif payload is None:
            body, kind = (text or "").encode(), b"text/plain; charset=utf-8"
        else:
            body = json.dumps(payload, separators=(",", ":")).encode()
            kind = b"application/json; charset=utf-8"
        headers = [(b"content-type", kind), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if head else body})

    async def _stream(self, receive: Any, send: Any, lines: AsyncIterator[dict[str, Any]]) -> str:
        """Send NDJSON lines as they come; a client that hangs up cancels the generation."""

        async def chunks() -> AsyncIterator[bytes]:
            async for obj in lines:
                yield _line(obj)

        return await stream_body(receive, send, b"application/x-ndjson", chunks())

    async def route(self, method: str, path: str, body: dict[str, Any]) -> Any:
        """(status, payload) for a plain reply, or an async iterator of NDJSON objects."""
        state = self.state
        if path == "/":
            return 200, "Ollama is running"
        if path == "/api/version":
            return 200, {"version": state.version()}
        if path == "/api/tags":
            return 200, {"models": [public(m) for m in state.models()]}
        if path == "/api/ps":
            return 200, {"models": self._loaded_models()}
        name = body.get("model") or body.get("name") or ""
        if path == "/api/pull":
            return await self._pull(name, body)
        if path == "/api/copy":
            return self._copy(body)
        if not isinstance(name, str):
            raise HTTPError(
                400, "json: cannot unmarshal number into Go struct field .model of type string"
            )
        if not name and path != "/api/generate":
            raise HTTPError(400, "model is required")
        model = state.find(name)
        if model is None:
            raise HTTPError(404, f"model '{name}' not found")
        if path == "/api/show":
            return 200, self._show(model)
        if path == "/api/delete":
            state.remove(name)
            return 200, ""
        caps = model["_capabilities"]
        if path in ("/api/embed", "/api/embeddings"):
            self._touch(model, body.get("keep_alive"))
            if path == "/api/embeddings":
                prompt = body.get("prompt") or ""
                reply = embed({**body, "input": prompt}, model["_embedding_length"])
                return 200, {"embedding": reply["embeddings"][0]}
            return 200, embed(body, model["_embedding_length"])
        chat = path == "/api/chat"
        if (chat and not body.get("messages")) or (not chat and not body.get("prompt")):
            unload = body.get("keep_alive") in (0, "0", "0s")
            self._touch(model, 0 if unload else body.get("keep_alive"))
            done = {"model": name, "created_at": now_rfc3339(), "done": True}
            done.update(
                {"message": {"role": "assistant", "content": ""}} if chat else {"response": ""}
            )
            done["done_reason"] = "unload" if unload else "load"
            return 200, done
        plan = plan_chat(body, caps, state.version()) if chat else plan_generate(body, caps)
        if plan.directive == "error-500":
            raise HTTPError(500, RUNNER_STOPPED)
        if plan.directive == "busy":
            raise HTTPError(503, BUSY)
        self._touch(model, body.get("keep_alive"))
        self.contexts[model["name"]] = plan.num_ctx
        if body.get("stream", True) is False:
            if plan.directive == "error-mid-stream":
                raise HTTPError(500, MID_STREAM_ERROR)
            return 200, self._whole(plan, chat)
        return self._chunks(plan, chat)

    def _touch(self, model: dict[str, Any], keep_alive: Any) -> None:
        seconds = keep_alive if isinstance(keep_alive, int | float) else 300
        if seconds == 0:
            self.loaded.pop(model["name"], None)
        else:
            self.loaded[model["name"]] = time.time() + (seconds if seconds > 0 else 10**9)

    def _loaded_models(self) -> list[dict[str, Any]]:
        """/api/ps: `size` is the model's memory, `size_vram` the part of it in GPU memory
        (ollama/ollama api/types.go ProcessModelResponse; docs/api.md "List Running Models").
        The `gpu_fraction` knob (default 1.0) puts the rest on the CPU, as an Ollama does
        whose Metal device could not be created (0.0) or whose GPU memory is too small."""
        out = []
        fraction = float(self.state.behaviour().get("gpu_fraction", 1.0))
        for model in self.state.models():
            expiry = self.loaded.get(model["name"])
            if expiry and expiry > time.time():
                entry = public(model)
                entry.pop("modified_at")
                entry.update(
                    expires_at=now_rfc3339(expiry - time.time()),
                    size_vram=int(model["size"] * fraction),
                    context_length=self.contexts.get(model["name"], DEFAULT_NUM_CTX),
                )
                out.append(entry)
        return out

    def _show(self, model: dict[str, Any]) -> dict[str, Any]:
        family = model["details"]["family"]
        return {
            "license": "Fake license text",
            "modelfile": f'# Modelfile generated by "ollama show"\nFROM {model["name"]}\n',
            "parameters": 'stop "<end_of_turn>"\ntemperature 1',
            "template": "{{ .Prompt }}",
            "details": model["details"],
            "model_info": {
                "general.architecture": family,
                f"{family}.context_length": model["_context_length"],
                f"{family}.embedding_length": model["_embedding_length"],
            },
            "capabilities": model["_capabilities"],
            "modified_at": model["modified_at"],
        }

    def _copy(self, body: dict[str, Any]) -> tuple[int, str]:
        source, destination = body.get("source") or "", body.get("destination") or ""
        if not destination:
            raise HTTPError(400, f'destination "{destination}" is invalid')
        if self.state.find(source) is None:
            raise HTTPError(404, f'model "{source}" not found')
        self.state.install(destination)
        return 200, ""

    def _message(self, plan: Plan, chat: bool, **fields: Any) -> dict[str, Any]:
        obj: dict[str, Any] = {"model": plan.model, "created_at": now_rfc3339()}
        if chat:
            obj["message"] = {"role": "assistant", **fields}
        else:
            obj.update(fields)
        obj["done"] = False
        return obj

    def _final(self, plan: Plan, chat: bool, **fields: Any) -> dict[str, Any]:
        key = "content" if chat else "response"
        obj = self._message(plan, chat, **{key: "", **fields})
        obj.update(done=True, done_reason=plan.done_reason)
        obj.update(self._metrics(plan))
        if not chat and plan.context is not None:
            obj["context"] = plan.context
        return obj

    def _metrics(self, plan: Plan) -> dict[str, int]:
        """Ollama's timing fields; omitempty drops the zero ones."""
        values = {
            "total_duration": 250_000_000 + plan.eval_tokens * 20_000_000,
            "load_duration": 1_334_875,
            "prompt_eval_count": plan.prompt_tokens,
            "prompt_eval_duration": 34_254_600,
            "eval_count": plan.eval_tokens,
            "eval_duration": plan.eval_tokens * 20_000_000,
        }
        return {k: v for k, v in values.items() if v}

    def _whole(self, plan: Plan, chat: bool) -> dict[str, Any]:
        """The stream:false reply: every piece joined into one object."""
        key = "content" if chat else "response"
        fields: dict[str, Any] = {key: "".join(plan.content)}
        if plan.thinking:
            fields["thinking"] = "".join(plan.thinking)
        if plan.tool_calls and chat:
            fields["tool_calls"] = plan.tool_calls
        return self._final(plan, chat, **fields)

    async def _chunks(self, plan: Plan, chat: bool) -> AsyncIterator[dict[str, Any]]:
        key = "content" if chat else "response"
        if plan.slow:
            knobs = self.state.behaviour()
            for _ in range(int(knobs.get("slow_tokens", 400))):
                yield self._message(plan, chat, **{key: "tick "})
                await asyncio.sleep(float(knobs.get("slow_token_seconds", 0.05)))
            yield self._final(plan, chat)
            return
        for piece in plan.thinking:
            yield self._message(plan, chat, **{key: "", "thinking": piece})
            await asyncio.sleep(0)
        for i, piece in enumerate(plan.content):
            if i == 2 and plan.directive == "error-mid-stream":
                yield {"error": MID_STREAM_ERROR}
                return
            if i == 2 and plan.directive == "no-done":
                return
            yield self._message(plan, chat, **{key: piece})
            await asyncio.sleep(0)
        if plan.tool_calls and chat:
            yield self._message(plan, chat, content="", tool_calls=plan.tool_calls)
        yield self._final(plan, chat)

    async def _pull(self, name: Any, body: dict[str, Any]) -> Any:
        if not isinstance(name, str) or not name:
            raise HTTPError(400, "model is required")
        if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9._:/@-]{0,349}", name):
            raise HTTPError(400, "invalid model name")
        lines = self._pull_lines(name)
        if body.get("stream", True) is not False:
            return lines
        last: dict[str, Any] = {}
        async for obj in lines:  # stream:false waits and answers the last line (waitForStream)
            if "error" in obj:
                raise HTTPError(500, obj["error"])
            last = obj
        return 200, last

    async def _pull_lines(self, name: str) -> AsyncIterator[dict[str, Any]]:
        """Progress as `server/images.go PullModel` writes it (reference §5)."""
        knobs = self.state.behaviour()
        step = float(knobs.get("pull_step_seconds", 0.005))
        yield {"status": "pulling manifest"}
        await asyncio.sleep(step)
        if "missing" in name:
            yield {"error": "pull model manifest: file does not exist"}
            return
        attempt = self.state.bump_pull_attempt(canonical(name))
        stall = float(knobs.get("pull_stall_first_attempt_seconds", 0)) if attempt == 1 else 0.0
        layers = layers_for(name)
        ticks = 5
        duration = float(knobs.get("pull_seconds", 0))
        if duration:  # spread the big layers' bytes evenly over `duration`, a line every ~0.25 s
            big = sum(total for _, total in layers if total >= 1_000_000) or 1
            ticks = max(1, int(duration / 0.25))
        for digest, total in layers:
            status = f"pulling {digest[7:19]}"
            if total < 1_000_000:
                yield {"status": status, "digest": digest, "total": total, "completed": total}
                continue
            yield {"status": status, "digest": digest, "total": total}
            if duration:
                step = duration * total / big / ticks
            for i in range(1, ticks + 1):
                if stall and i == 2:
                    await asyncio.sleep(stall)  # a stalled download: no lines, connection open
                    stall = 0.0
                await asyncio.sleep(step)
                yield {
                    "status": status,
                    "digest": digest,
                    "total": total,
                    "completed": total * i // ticks,
                }
        yield {"status": "verifying sha256 digest"}
        yield {"status": "writing manifest"}
        self.state.install(name)
        yield {"status": "success"}


class FakeOllama(ServedFake):
    """The fake in this process: `FakeOllama(tmp).start()`; `.url`, `.requests()`, `.stop()`."""

    def __init__(self, state_dir: Path | str | None = None, host: str = "127.0.0.1", port: int = 0):
        self.state_dir = Path(state_dir or tempfile.mkdtemp(prefix="fake-ollama-"))
        self.app = FakeOllamaApp(self.state_dir)
        self.server = ServerThread(self.app, host=host, port=port)

    @property
    def state(self) -> State:
        return self.app.state

    def install(self, *names: str) -> None:
        """Make models present as if `ollama pull` had run."""
        for name in names:
            self.state.install(name)

    def behave(self, **knobs: Any) -> None:
        """Merge knobs into behaviour.json (read on every request)."""
        self.state.set_behaviour(**knobs)

    def requests(self, path: str | None = None) -> list[dict[str, Any]]:
        """Requests seen so far (running ones too), oldest first."""
        return [dict(e) for e in list(self.state.log) if path is None or e["path"] == path]


def main(argv: list[str] | None = None) -> None:
    """`ollama serve`, faked: serve until interrupted."""
    import uvicorn

    env_host, env_port = parse_ollama_host(os.environ.get("OLLAMA_HOST"))
    parser = argparse.ArgumentParser(prog="fake-ollama", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default=env_host)
    parser.add_argument("--port", type=int, default=env_port)
    parser.add_argument("--state-dir", default=os.environ.get("FAKE_OLLAMA_STATE"))
    args = parser.parse_args(argv)
    state_dir = Path(args.state_dir or tempfile.mkdtemp(prefix="fake-ollama-"))
    loopback = args.host in ("localhost",) or args.host.startswith("127.") or args.host == "::1"
    app = FakeOllamaApp(state_dir, loopback=loopback)
    print(f"fake ollama listening on {args.host}:{args.port} (state: {state_dir})", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", lifespan="on")


if __name__ == "__main__":
    main()


__all__ = ["FakeOllama", "FakeOllamaApp", "ServerThread", "main", "read_requests"]
