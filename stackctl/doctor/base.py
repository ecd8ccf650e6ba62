"""What every doctor check works with: the context it looks at and the findings it returns."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from stackctl import catalog
from stackctl.catalog import Model
from stackctl.paths import hf_repo_cache
from stackctl.probe import HostFacts
from stackctl.stack import Stack, WithStack

Severity = Literal["ok", "warn", "error"]


@dataclass
class Finding:
    """One thing doctor found: how bad it is, what it is, and the fix (when there is one)."""

    severity: Severity
    check: str  # config, host, backend, nvidia, ollama, vllm, conflict, port, model, disk, ...
    message: str
    fix: str = ""

    @property
    def text(self) -> str:
        return f"{self.message}: {self.fix}" if self.fix else self.message


@dataclass
class Context(WithStack):
    """Everything the checks look at: the stack, what is wrong with its config file, the
    host probe's facts and the environment."""

    stack: Stack
    config_problems: list[str]
    facts: HostFacts
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))


def downloaded(ctx: Context, name: str, model: Model) -> bool:
    """True when the model is already on disk (Ollama's manifest, or the Hugging Face cache)."""
    models_dir = Path(ctx.facts.models_dir)
    if ctx.backend == "vllm":
        return hf_repo_cache(models_dir, model.hf_id).is_dir()
    tag = model.ollama if ":" not in name else name
    repo, _, version = tag.partition(":")
    return (models_dir / "manifests/registry.ollama.ai/library" / repo / version).is_file()


def wanted_models(ctx: Context) -> list[str]:
    """The models the stack runs: vllm.model for vLLM, else models (or the recommendation).
    None on a cluster's vLLM worker: the head serves the model."""
    cluster = ctx.config.cluster
    if ctx.backend == "vllm" and cluster is not None and not cluster.is_head:
        return []
    if ctx.backend == "vllm":
        return [ctx.config.vllm.model]
    if ctx.config.models is not None:
        return ctx.config.models
    return [catalog.recommend(ctx.facts, "ollama").ollama]
