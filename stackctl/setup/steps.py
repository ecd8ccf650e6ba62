"""`stackctl up`: the steps that install and start the whole stack on this machine.

`preflight(ctx)` lists what stops `up` before it changes anything (no service manager, a
missing Ollama or GPU, a gated model without a token, a port taken, a Python the service
account cannot reach), each with its fix. `build_steps(ctx)` returns the plan for the
platform and backend, in order:

1. the config file (when there is none), then per platform:
   - macOS: Homebrew's Ollama; another Ollama (Ollama.app, `brew services`) stopped;
   - Linux, no NVIDIA GPU: an installed `ollama` (none: the install command, and stop);
   - Linux with NVIDIA: vLLM's venv and vLLM (uv);
2. system scope on Linux: the `stackctl` account; directories (owned by the account the
   services run as: that one, or on macOS the person who ran sudo; before Ollama starts, or
   after vLLM's model is in HF_HOME);
3. user scope on Linux: linger, so the services outlive the login session;
   with `expose`, Caddy for the HTTPS front (apt as root, else preflight says how; brew);
4. the secrets (0600);
5. the models: Ollama started on its own and the models pulled, or vLLM's model downloaded
   into HF_HOME; meanwhile Open WebUI's venv and package (uv);
6. the units, loaded and started (with --upgrade, the upgraded services restarted); every
   service healthy (and, with Ollama, the pulled models listed by the proxy).

The steps of 5 run at the same time: each declares what it needs (`Step.after`), and the
plan engine starts a step as soon as those are done.
"""

from __future__ import annotations

import sys
import sysconfig
from collections.abc import Callable
from pathlib import Path

from stackctl.errors import StackctlError
from stackctl.plan import Step
from stackctl.setup import cluster, common, front, linux, macos, openwebui, ray_serve, services
from stackctl.setup.configfile import config_step
from stackctl.setup.context import Context
from stackctl.setup.openwebui_offline import require_cached_embedding_model


def preflight(ctx: Context) -> list[StackctlError]:
    """Every problem that stops `up` before it changes anything, in the order met (empty:
    nothing does). Each error's message says how to fix it."""
    checks: list[Callable[[Context], None]] = []
    if ctx.platform == "linux":
        checks.append(common.require_service_manager)
        if ctx.backend == "ollama":
            checks.append(linux.require_ollama)
        elif cluster.is_worker(ctx):
            # the head downloads the model, not a worker; every node has the head's GPU count
            checks += [linux.require_nvidia, cluster.require_the_heads_gpu_count]
        else:
            checks += [linux.require_nvidia, linux.require_hf_token]
            if ctx.config.cluster is not None:  # the head
                checks.append(cluster.require_model_fits_the_cluster)
        checks.append(front.require_caddy)
    checks += [common.require_free_ports, front.require_free_openwebui_front_port]
    checks.append(common.require_private_inline_keys)
    checks.append(require_cached_embedding_model)
    if ctx.scope == "system" and ctx.platform == "linux" and ctx.config.proxy.enabled:
        checks.append(
            lambda ctx: common.require_python_for_the_account(
                Path(sys.executable), Path(sysconfig.get_path("stdlib"))
            )
        )
    blockers = []
    for check in checks:
        try:
            check(ctx)
        except StackctlError as exc:
            blockers.append(exc)
    return blockers


def build_steps(ctx: Context) -> list[Step]:
    """Every step of `up` for this context (each knows whether it is already done).
    `preflight(ctx)` says whether they can run."""
    worker = cluster.is_worker(ctx)
    # a worker joining writes its config only once the head took its token
    steps = [] if worker else [config_step(ctx)]
    if ctx.platform == "macos":
        steps += macos.ollama_steps(ctx)
        steps += macos.conflict_steps(ctx)
    system_linux = ctx.scope == "system" and ctx.platform == "linux"
    if system_linux:
        steps.append(common.account_step(ctx))
    steps.append(common.directories_step(ctx))
    if ctx.platform == "linux" and ctx.scope == "user" and ctx.facts.linger is False:
        steps.append(common.linger_step(ctx))
    steps += front.caddy_steps(ctx)  # expose: Caddy, the HTTPS front
    # services whose secrets change (a revoked Open WebUI key, a new HF_TOKEN): the units step
    # restarts them, so they read the new value
    stale = common.services_with_new_secrets(ctx)
    if not worker:
        steps.append(common.secrets_step(ctx, stale))
    if ctx.scope == "system" and ctx.backend == "ollama":
        steps.append(common.ownership_step(ctx))  # before Ollama, which writes models as it
    if ctx.backend == "ollama" and ctx.config.cluster is not None:
        steps += ray_serve.ray_serve_venv_steps(ctx)  # Ray with Serve, on the head and workers
    started: list[str] = []  # services this run (re)starts: the health step waits for them
    # The long independent work overlaps: the models download while Open WebUI installs.
    ready = _key(steps[-1], "ready").key  # what those parallel branches start after
    models: list[Step] = []
    if ctx.backend == "vllm":
        venv, install, download = linux.vllm_steps(ctx)
        steps += [venv, install]
        ready = _key(install, "backend").key
        models = [] if worker else [download]  # vLLM's workers load what the head names
    elif ctx.models:
        backend = services.backend_step(ctx, started)
        steps.append(backend)
        ready = _key(backend, "backend").key
        models = [services.pull_step(ctx)]
    if worker:  # with the head's versions installed: is the token right? then record it
        token = _after(_key(cluster.token_check_step(ctx), "token"), ready)
        record = [config_step(ctx), common.secrets_step(ctx, stale)]
        if ctx.config.source is not None:
            record.insert(1, cluster.join_config_step(ctx))
        # each waits for the token check itself: a step already done does not hold back
        # the one after it
        steps += [token, *(_after(step, token.key) for step in record)]
        ready = _key(record[-1], "joined").key
    for step in models:
        steps.append(_after(_key(step, "models"), ready))
    branches = [key for key in ("models",) if models]
    if ctx.stack.service("openwebui") is not None:  # not on a cluster's worker
        venv, install = openwebui.openwebui_steps(ctx)
        steps += [_after(venv, ready), _key(install, "webui")]
        branches.append("webui")
    # vLLM's service must start on a warm cache (else it downloads the model itself); Ollama's
    # units start while the pull goes on, and the health step waits for it.
    joined = branches if ctx.backend == "vllm" else [b for b in branches if b != "models"]
    tail = []
    if ctx.scope == "system" and ctx.backend == "vllm":
        tail.append(common.ownership_step(ctx))  # chowns HF_HOME: after the download
    tail.append(services.units_step(ctx, started, stale))
    if ctx.options.upgrade and services.upgraded_services(ctx):
        tail.append(services.restart_step(ctx, started))
    tail.append(services.health_step(ctx, started))
    _after(tail[0], ready, *joined)
    _after(tail[-1], _key(tail[-2], "started").key, *branches)
    return steps + tail


def _key(step: Step, key: str) -> Step:
    """Name a step so others can wait for it."""
    step.key = key
    return step


def _after(step: Step, *keys: str) -> Step:
    """Make a step wait for the steps with these keys (instead of the one before it)."""
    step.after = tuple(dict.fromkeys(keys))
    return step
