"""Telling when a prompt filled the model's context: Ollama cuts a longer prompt silently.

Ollama fits a prompt longer than the model's `num_ctx` by dropping the oldest messages (and
then the front of what is left), with nothing but a line in its own log. A coding agent's
first request alone is tens of thousands of tokens, so on a default context it loses its
instructions and behaves erratically. When a reply's `prompt_eval_count` reaches 90% of the
context, the proxy logs a warning naming the model and the `proxy.model_options` entry to
set, counts it in /metrics and, on whole answers, sets the `x-stackctl-context-full` header.

The context is the pinned `num_ctx`, else what Ollama's /api/ps reports for the loaded model
(its default depends on the version and, since v0.15.5, on the GPU memory). Only prompts of
at least 90% of 2,048 tokens (the smallest default Ollama ever had) cost that lookup.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from stackctl.proxy import codec
from stackctl.proxy.errors import OpenAIError
from stackctl.proxy.upstream import Backend, Upstream

log = logging.getLogger("stackctl.proxy")

FULL_SHARE = 0.9
SMALLEST_DEFAULT = 2048
HEADER = b"x-stackctl-context-full"
PS_CACHE_SECONDS = 30.0
PS_TIMEOUT = 2.0
AGENT_CONTEXT = 32768  # Claude Code's first request is about 20,000 tokens (76 KB of JSON)


class ContextWatch:
    """The check, with /api/ps answers cached per model for a short while."""

    def __init__(self, upstream: Upstream):
        self.upstream = upstream
        self.loaded: dict[tuple[str, str], tuple[int | None, float]] = {}
        self.full: dict[str, int] = {}  # model -> prompts that filled its context

    async def _loaded_context(self, backend: Backend, model: str) -> int | None:
        key = (backend.name, model)
        known = self.loaded.get(key)
        if known is not None and known[1] > time.monotonic():
            return known[0]
        context = None
        try:
            reply = await self.upstream.call(backend, "GET", "/api/ps", timeout=PS_TIMEOUT)
            if reply.status == 200:
                for entry in codec.loads(reply.body).get("models") or []:
                    if entry.get("name") == model or entry.get("model") == model:
                        context = entry.get("context_length")
        except (OpenAIError, ValueError, AttributeError):
            context = None  # an older Ollama, or one that is busy: no warning, no error
        context = context if isinstance(context, int) and context > 0 else None
        self.loaded[key] = (context, time.monotonic() + PS_CACHE_SECONDS)
        return context

    async def check(
        self, backend: Backend, model: str, native: dict[str, Any], pinned: dict[str, Any]
    ) -> bytes | None:
        """The header value when this reply's prompt filled the context, else None."""
        prompt = native.get("prompt_eval_count") or 0
        if backend.mode != "ollama" or prompt < FULL_SHARE * SMALLEST_DEFAULT:
            return None
        num_ctx = pinned.get("num_ctx") or await self._loaded_context(backend, model)
        if not num_ctx or prompt < FULL_SHARE * num_ctx:
            return None
        self.full[model] = self.full.get(model, 0) + 1
        bigger = max(AGENT_CONTEXT, 2 * num_ctx)
        log.warning(
            "the prompt to %s took %d of its %d-token context (num_ctx): Ollama drops what "
            "does not fit without an error. Set proxy.model_options.%s.num_ctx (e.g. %d) in "
            "stack.yaml, memory permitting",
            model,
            prompt,
            num_ctx,
            model,
            bigger,
        )
        return f"prompt_tokens={prompt}; num_ctx={num_ctx}".encode()

    def render(self) -> str:
        """Its lines of the /metrics text."""
        out = [
            "# HELP stackctl_proxy_context_full_total Prompts that filled the model's context "
            "(num_ctx), by model.",
            "# TYPE stackctl_proxy_context_full_total counter",
        ]
        for model, n in sorted(self.full.items()):
            escaped = model.replace("\\", "\\\\").replace('"', '\\"')
            out.append(f'stackctl_proxy_context_full_total{{model="{escaped}"}} {n}')
        return "\n".join(out) + "\n"
