"""Whether a coding agent's prompt fits the models' context (num_ctx) on Ollama.

Claude Code's first request is about 20,000 tokens (its instructions and two dozen tool
schemas) and Codex's about 10,000, before any code is read. Ollama cuts a prompt longer than
the model's num_ctx without an error, and the agent then behaves erratically; the proxy
warns when it sees that happen (stackctl.proxy.context_limit), and doctor warns ahead of
time when a num_ctx set in proxy.model_options is too small for an agent.
"""

from __future__ import annotations

from collections.abc import Iterator

from stackctl.doctor.base import Context, Finding, wanted_models
from stackctl.proxy.context_limit import AGENT_CONTEXT


def pinned_num_ctx(ctx: Context, model: str) -> int | None:
    """The num_ctx proxy.model_options gives the model (`gemma3` and `gemma3:latest` alike)."""
    options = {name.lower(): opts for name, opts in ctx.config.proxy.model_options.items()}
    name = model.lower()
    plain = name.removesuffix(":latest")
    for key in (name, plain, plain + ":latest"):
        value = (options.get(key) or {}).get("num_ctx")
        if value is not None:
            return int(value)
    return None


def check_agent_context(ctx: Context) -> Iterator[Finding]:
    if ctx.backend != "ollama":
        return  # vLLM refuses a prompt longer than max_model_len with a clear 400
    for model in wanted_models(ctx):
        num_ctx = pinned_num_ctx(ctx, model)
        setting = f"proxy.model_options.{model}.num_ctx"
        if num_ctx is None:
            yield Finding(
                "ok",
                "context",
                f"{model} runs with Ollama's default context (4,096 tokens up to Ollama "
                f"0.15.4); for coding agents (Claude Code, Codex) set {setting}: {AGENT_CONTEXT}",
            )
        elif num_ctx < AGENT_CONTEXT:
            yield Finding(
                "warn",
                "context",
                f"{model} has num_ctx {num_ctx}: a coding agent's prompt (Claude Code sends "
                "about 20,000 tokens) does not fit, and Ollama cuts it without an error",
                f"set {setting}: {AGENT_CONTEXT} in {ctx.config_path} (it takes more memory)",
            )
        else:
            yield Finding(
                "ok", "context", f"{model} has num_ctx {num_ctx}: a coding agent's prompt fits"
            )
