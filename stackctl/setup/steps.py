"""`stackctl up`: the steps that install and start the whole stack on this machine.

`build_steps(ctx)` returns the plan for the platform and backend, in order:

1. the config file (when there is none), then per platform:
   - macOS: Homebrew's Ollama; another Ollama (Ollama.app, `brew services`) stopped;
   - Linux, no NVIDIA GPU: an installed `ollama` (none: the install command, and stop);
   - Linux with NVIDIA: vLLM's venv, vLLM, the model downloaded into HF_HOME;
2. system scope on Linux: the `stackctl` account; directories (owned by it);
3. user scope on Linux: linger, so the services outlive the login session;
4. the secrets (0600), Open WebUI's Python, venv and package;
5. the units, loaded and started (with --upgrade, the upgraded services restarted); every
   service healthy; the models pulled (Ollama).
"""

from __future__ import annotations

import sys
import sysconfig
from pathlib import Path

from stackctl.plan import Step
from stackctl.setup import common, linux, macos, openwebui, services
from stackctl.setup.configfile import config_step
from stackctl.setup.context import Context


def build_steps(ctx: Context) -> list[Step]:
    """Every step of `up` for this context (each knows whether it is already done)."""
    steps = [config_step(ctx)]
    if ctx.platform == "macos":
        steps += macos.ollama_steps(ctx)
        steps += macos.conflict_steps(ctx)
    elif ctx.backend == "ollama":
        linux.require_ollama(ctx)
    else:
        linux.require_nvidia(ctx)
        linux.require_hf_token(ctx)
    common.require_free_ports(ctx)
    system_linux = ctx.scope == "system" and ctx.platform == "linux"
    if system_linux:
        if ctx.config.proxy.enabled:
            common.require_python_for_the_account(
                Path(sys.executable), Path(sysconfig.get_path("stdlib"))
            )
        steps.append(common.account_step(ctx))
    steps.append(common.directories_step(ctx))
    if ctx.platform == "linux" and ctx.scope == "user" and ctx.facts.linger is False:
        steps.append(common.linger_step(ctx))
    steps.append(common.secrets_step(ctx))
    if ctx.backend == "vllm":
        steps += linux.vllm_steps(ctx)
    if ctx.config.openwebui.enabled:
        steps += openwebui.openwebui_steps(ctx)
    if system_linux:
        steps.append(common.ownership_step(ctx))
    steps.append(services.units_step(ctx))
    if ctx.options.upgrade and services.upgraded_services(ctx):
        steps.append(services.restart_step(ctx))
    steps.append(services.health_step(ctx))
    if ctx.backend == "ollama" and ctx.models:
        steps.append(services.pull_step(ctx))
    return steps
