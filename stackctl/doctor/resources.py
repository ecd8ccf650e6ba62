"""Checks of what the stack competes for: ports, other Ollamas, memory and disk."""

from __future__ import annotations

from collections.abc import Iterator

from stackctl import catalog
from stackctl.doctor.base import Context, Finding, Severity, downloaded, wanted_models
from stackctl.output import GB, gb
from stackctl.probe_processes import OLLAMA_APP, QUIT_OLLAMA_APP, fights_other_ollamas
from stackctl.registry import info

# Open WebUI's venv is about 7 GB (torch, transformers, chromadb, onnxruntime), vLLM's with
# torch and the CUDA wheels 5-10 GB
ROOM_FOR_VENVS_GB = 10


def check_conflicts(ctx: Context) -> Iterator[Finding]:
    blocking = fights_other_ollamas(ctx.backend, ctx.config.ollama.port)
    for conflict in ctx.facts.conflicts:
        yield Finding(
            "error" if blocking else "warn",
            "conflict",
            conflict.detail,
            f"stop it: `{conflict.stop_command}`",
        )


def check_ports(ctx: Context) -> Iterator[Finding]:
    for service in ctx.stack.services:
        key = f"{info(service.name).section}.port"  # the front's is tls.port
        listener = ctx.facts.ports.get(service.port)
        if listener is None:
            yield Finding("ok", "port", f"port {service.port} ({service.name}) is free")
        elif listener.ours:
            yield Finding(
                "ok",
                "port",
                f"port {service.port} is held by stackctl's own {service.name} (pid {listener.pid})",
            )
        elif listener.pid is None:
            yield Finding(
                "error",
                "port",
                f"port {service.port} is taken by another user's process",
                f"stop it, or set {key}",
            )
        else:
            who = f"{listener.name or 'a process'} (pid {listener.pid})"
            yield Finding(
                "error",
                "port",
                f"port {service.port} is taken by {who}",
                _port_fix(ctx, listener.name, key),
            )


def _port_fix(ctx: Context, name: str | None, key: str) -> str:
    if name == OLLAMA_APP:
        return f"quit it (`{QUIT_OLLAMA_APP}`), or set {key}"
    others = [c for c in ctx.facts.conflicts if c.name != OLLAMA_APP]
    if name and "ollama" in name.lower() and others:
        return f"stop it (`{others[0].stop_command}`), or set {key}"
    return f"stop it, or set {key}"


def check_models(ctx: Context) -> Iterator[Finding]:
    facts, backend = ctx.facts, ctx.backend
    nodes = catalog.cluster_nodes(ctx.config)  # a cluster's head: every node's GPUs
    budget = catalog.memory_budget(facts, nodes)
    best = catalog.recommend(facts, backend, nodes=nodes)
    for name in wanted_models(ctx):
        model = catalog.find(name)
        if model is None:
            yield Finding(
                "ok", "model", f"{name} is not in stackctl's catalogue: its size is unknown"
            )
            continue
        need = gb(model.need_gib(backend))
        if catalog.fits(model, facts, backend, nodes):
            yield Finding("ok", "model", f"{name} needs about {need} GB; {budget.describe()}")
            continue
        if model.need_gib(backend) <= budget.gib:  # fits in RAM, but CPU-only hosts stay small
            message = f"{name} would run on the CPU here, where models over 4B parameters are slow"
        else:
            message = f"{name} needs about {need} GB; {budget.describe()}"
        # vLLM does not start when the weights do not fit; Ollama falls back to the CPU (slow).
        severity: Severity = "error" if backend == "vllm" else "warn"
        yield Finding(severity, "model", message, _smaller_model_fix(ctx, model, best, nodes))


def _smaller_model_fix(
    ctx: Context, model: catalog.Model, best: catalog.Model, nodes: int = 1
) -> str:
    if ctx.backend == "vllm":
        if best.params_b >= model.params_b or not catalog.fits(best, ctx.facts, "vllm", nodes):
            return "no catalogue model fits in bf16 here: set backend: ollama (4-bit models)"
        in_ollama = catalog.recommend(ctx.facts, "ollama")
        return (
            f"use {best.hf_id} (set vllm.model: {best.hf_id} and vllm.served_model_name: "
            f"{best.ollama}), or backend: ollama, where {in_ollama.ollama} fits"
        )
    if best.params_b >= model.params_b or not catalog.fits(best, ctx.facts, "ollama"):
        return "no catalogue model fits; expect slow answers"
    return f"use {best.ollama} (set models: [{best.ollama}])"


def check_disk(ctx: Context) -> Iterator[Finding]:
    facts = ctx.facts
    missing = [
        model
        for name in wanted_models(ctx)
        if (model := catalog.find(name)) and not downloaded(ctx, name, model)
    ]
    need = sum(m.download_bytes(ctx.backend) for m in missing) / GB
    free = facts.disk_free / GB
    where = facts.models_dir
    moved_by = "HF_HOME in vllm.env" if ctx.backend == "vllm" else "OLLAMA_MODELS in ollama.env"
    if need > free:
        yield Finding(
            "error",
            "disk",
            f"the models need about {gb(need)} GB to download and {where} has {gb(free)} GB free",
            f"free some space there, or keep models on another disk: set {moved_by}",
        )
    elif free - need < ROOM_FOR_VENVS_GB:
        yield Finding(
            "warn",
            "disk",
            f"{gb(free)} GB free in {where}; after the models (about {gb(need)} GB) "
            "little is left for the Open WebUI and vLLM installs (several GB each)",
            "free some space on that disk",
        )
    else:
        yield Finding(
            "ok",
            "disk",
            f"{gb(free)} GB free in {where} (models to download: {gb(need)} GB)",
        )
