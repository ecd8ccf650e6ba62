"""What one `stackctl up` run works with: the config (with the flags applied), where things
go, which backend and models, and the facts the host probe found.

The flags of `up` (--backend, --model, --no-webui, --scope) shape a *new* stack.yaml. Once a
stack.yaml exists it is the truth the services read too (the proxy runs with `--config`),
so a flag that contradicts it is refused with the key to edit, rather than silently
running a stack that `stackctl status` and the proxy would not agree with.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from stackctl.catalog import cluster_nodes, find, recommend
from stackctl.config.model import Config
from stackctl.errors import StackctlError
from stackctl.paths import current_platform, is_root, paths_for
from stackctl.probe import probe
from stackctl.probe_processes import Conflict, fights_other_ollamas
from stackctl.pull import DEFAULT_STALL_SECONDS
from stackctl.stack import (
    Overrides,
    Stack,
    WithStack,
    resolve_backend,
    resolve_scope,
    resolve_stack,
)
from stackctl.types import Backend, Scope

if TYPE_CHECKING:
    from stackctl.probe import HostFacts


@dataclass
class UpOptions:
    """The flags of `stackctl up`."""

    dry_run: bool = False
    yes: bool = False
    backend: Backend | None = None
    models: tuple[str, ...] = ()
    no_webui: bool = False
    scope: Scope | None = None
    upgrade: bool = False
    installer: str = "uv"  # or "pip": how venvs are made (stackctl/setup/venv.py)
    stall_seconds: float = DEFAULT_STALL_SECONDS
    join: str | None = None  # a worker joining a cluster: the head's HOST:PORT
    token: str | None = None  # the cluster's Ray token (with join)
    pins: dict[str, str] = field(default_factory=dict)  # the head's versions: vllm, ray, python
    gpus: int | None = None  # with join (vLLM): the GPUs each node has, the head's count


@dataclass
class Context(WithStack):
    """Everything the steps of one run need, resolved once: the stack, the models this run
    makes available, the host probe's facts and the flags."""

    stack: Stack
    models: list[str]
    facts: HostFacts
    options: UpOptions = field(default_factory=UpOptions)

    @property
    def ollama_conflicts(self) -> list[Conflict]:
        """Other Ollamas that would fight ours: they all serve on 11434, Ollama's default, so
        they matter when our Ollama wants that port too."""
        if not fights_other_ollamas(self.backend, self.config.ollama.port):
            return []
        return list(self.facts.conflicts)


def use_ollama(config: Config, path: Path) -> str:
    """How to switch this run to Ollama: the flag shapes a new stack.yaml, but once the file
    exists only its `backend` key does (the flag would be refused as contradicting it)."""
    if config.source is None:
        return "use --backend ollama"
    return f"set backend: ollama in {path}"


def _refuse(path: Path, key: str, in_file: object, flag: str) -> StackctlError:
    return StackctlError(
        f"{path} says {key}: {in_file}, but {flag} was given: edit {key} in that file "
        "(or drop the flag), then run `stackctl up` again"
    )


def _check_flags_agree(config: Config, path: Path, options: UpOptions, backend: Backend) -> None:
    """A stack.yaml exists: refuse flags that contradict it (the module docstring says why)."""
    if options.backend and options.backend != backend:
        raise _refuse(path, "backend", backend, f"--backend {options.backend}")
    if options.scope and options.scope != resolve_scope(config):
        raise _refuse(path, "scope", resolve_scope(config), f"--scope {options.scope}")
    if options.no_webui and config.openwebui.enabled:
        raise _refuse(path, "openwebui.enabled", "true", "--no-webui")
    if backend == "vllm" and options.models:
        served = config.vllm.served_model_name
        if list(options.models) not in ([served], [config.vllm.model]):
            raise _refuse(path, "vllm.served_model_name", served, f"--model {options.models[0]}")


def _apply_vllm_model(config: Config, name: str) -> None:
    """Point vllm.model (a Hugging Face id) and served_model_name (an Ollama-style name) at
    one model, so the same model id works on both backends."""
    entry = find(name)
    if entry is not None:
        config.vllm.model, config.vllm.served_model_name = entry.hf_id, entry.served_name
    elif "/" in name:
        config.vllm.model = config.vllm.served_model_name = name
    else:
        raise StackctlError(
            f"vLLM needs a Hugging Face model id, and {name} is not in stackctl's catalogue: "
            "give the id, e.g. --model google/gemma-3-27b-it"
        )


def _new_config(config: Config, options: UpOptions, backend: Backend, scope: Scope) -> Config:
    """The config a new stack.yaml will hold: the defaults with the flags applied."""
    config = copy.deepcopy(config)
    config.backend = backend
    config.scope = scope
    if options.no_webui:
        config.openwebui.enabled = False
    if backend == "vllm" and options.models:
        _apply_vllm_model(config, options.models[0])
    return config


def resolve_context(config: Config, config_path: Path, options: UpOptions) -> Context:
    """Resolve platform, scope, backend, paths, models and host facts for one run."""
    platform = current_platform()
    exists = config.source is not None
    if options.join:
        from stackctl.setup.cluster import joined_config

        config, options = joined_config(config, config_path, options)
    configured_backend = resolve_backend(config, platform)
    backend: Backend = options.backend or configured_backend
    if backend == "vllm" and platform == "macos":
        raise StackctlError(
            f"vLLM needs Linux with an NVIDIA GPU; on a Mac {use_ollama(config, config_path)} "
            "(Metal)"
        )
    if backend == "vllm" and len(options.models) > 1:
        raise StackctlError(
            "vLLM serves one model per server: give one --model (or "
            f"{use_ollama(config, config_path)})"
        )
    if exists:
        _check_flags_agree(config, config_path, options, configured_backend)
    scope: Scope = options.scope or resolve_scope(config)
    if scope == "system" and not is_root():
        raise StackctlError(
            "system scope installs services for the whole machine and needs root: "
            "run `sudo stackctl up --scope system`"
        )
    if not exists:
        config = _new_config(config, options, backend, scope)
    facts = probe(config, paths_for(platform, scope), backend)
    if not exists and backend == "vllm" and not options.models:
        # the largest that fits the GPU memory (a cluster's head: of every node)
        fit = recommend(facts, "vllm", nodes=cluster_nodes(config))
        config.vllm.model, config.vllm.served_model_name = fit.hf_id, fit.served_name
    models = _models(config, options, backend, facts)
    if not exists and backend == "ollama":
        config.models = models  # what the new stack.yaml records
    overrides = Overrides(platform=platform, scope=scope, backend=backend)
    stack = resolve_stack(config, config_path, facts=facts, overrides=overrides)
    return Context(stack=stack, models=models, facts=facts, options=options)


def _models(config: Config, options: UpOptions, backend: Backend, facts: HostFacts) -> list[str]:
    """The models this run makes available: the flags, else the config, else what fits."""
    if backend == "vllm":
        return [config.vllm.served_model_name]
    if options.models:
        return list(dict.fromkeys([*(config.models or []), *options.models]))
    if config.models is not None:
        return list(config.models)

    return [recommend(facts, "ollama").ollama]
