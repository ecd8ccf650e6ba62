"""`stackctl up`: install and start the whole stack, or finish what an earlier run began."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from stackctl.cli import AppContext, pass_app
from stackctl.commands.pull_cmd import stall_timeout_option

if TYPE_CHECKING:
    from stackctl.types import Backend, Scope


@click.command(name="up")
@click.option("--dry-run", is_flag=True, help="Print every step, command and file; change nothing.")
@click.option("-y", "--yes", is_flag=True, help="Apply the plan without asking.")
@click.option(
    "--backend",
    type=click.Choice(["ollama", "vllm"]),
    help="Override backend: auto (vLLM on Linux with an NVIDIA GPU, else Ollama).",
)
@click.option(
    "--model",
    "models",
    multiple=True,
    metavar="MODEL",
    help="A model to serve, e.g. gemma3:27b (repeatable; vLLM: one, a tag or a Hugging Face id).",
)
@click.option("--no-webui", is_flag=True, help="Leave Open WebUI out of the stack.")
@click.option(
    "--scope",
    type=click.Choice(["user", "system"]),
    help="user: services of your login; system: at boot for the whole machine (root).",
)
@click.option("--upgrade", is_flag=True, help="Also upgrade Ollama (brew), Open WebUI and vLLM.")
@stall_timeout_option
@click.option(
    "--installer",
    type=click.Choice(["uv", "pip"]),
    default="uv",
    show_default=True,
    help="What makes the Open WebUI and vLLM venvs: uv (fetches Python 3.12 when none "
    "fits), or pip (needs a Python 3.11/3.12 here).",
)
@click.option(
    "--join",
    metavar="HOST:PORT",
    help="Join this machine to a cluster as a worker: the head's address (with --token; "
    "`stackctl cluster join-command` on the head prints the whole command).",
)
@click.option("--token", metavar="TOKEN", help="The cluster's token (with --join).")
@click.option("--vllm-version", metavar="V", help="With --join: the head's vLLM version.")
@click.option("--ray-version", metavar="V", help="With --join: the head's Ray version.")
@click.option("--python-version", metavar="V", help="With --join: the head's Python (3.12).")
@click.option(
    "--gpus",
    type=click.IntRange(min=1),
    metavar="N",
    help="With --join (vLLM): the head's GPU count; a machine with another count is refused.",
)
@pass_app
def up(
    app: AppContext,
    dry_run: bool,
    yes: bool,
    backend: Backend | None,
    models: tuple[str, ...],
    no_webui: bool,
    scope: Scope | None,
    upgrade: bool,
    stall_timeout: float,
    installer: str,
    join: str | None,
    token: str | None,
    vllm_version: str | None,
    ray_version: str | None,
    python_version: str | None,
    gpus: int | None,
) -> None:
    """Install and start Ollama (or vLLM), the proxy and Open WebUI as services.

    Prints the plan and asks once (--yes to skip the question); re-running finishes an
    interrupted run and does nothing when everything is in place.

    \b
    Examples:
      stackctl up                       # this machine's best fit, after asking
      stackctl up --dry-run             # every step, command and file; no change
      stackctl up --yes --model gemma3:12b --model llama3.2
      sudo stackctl up --scope system   # a headless server: services at boot
      stackctl up --join 10.0.0.5:6379 --token …   # a cluster's worker (see `cluster`)
    """
    from stackctl.errors import StackctlError
    from stackctl.plan import run_plan
    from stackctl.probe import describe_host
    from stackctl.setup import UpOptions, resolve_context
    from stackctl.setup.steps import build_steps, preflight
    from stackctl.setup.summary import summary_lines

    options = UpOptions(
        dry_run=dry_run,
        yes=yes,
        backend=backend,
        models=models,
        no_webui=no_webui,
        scope=scope,
        upgrade=upgrade,
        installer=installer,
        stall_seconds=stall_timeout,
        join=join,
        token=token,
        pins={
            name: version
            for name, version in (
                ("vllm", vllm_version),
                ("ray", ray_version),
                ("python", python_version),
            )
            if version
        },
        gpus=gpus,
    )
    if token and not join:
        raise StackctlError("--token goes with --join HOST:PORT (a worker joining a cluster)")
    if gpus and not join:
        raise StackctlError("--gpus goes with --join HOST:PORT (a worker joining a cluster)")
    ctx = resolve_context(app.config, app.config_path, options)
    click.echo(f"stackctl up: {describe_host(ctx.facts)}")
    click.echo(
        f"  backend {ctx.backend}, {ctx.scope} scope, models {', '.join(ctx.models)}; "
        f"config {ctx.config_path}"
    )
    blockers = preflight(ctx)
    if blockers and not dry_run:
        raise blockers[0]  # before anything changes
    if blockers:  # the plan can still be read: the blockers first, then the plan, exit 1
        click.echo("Blocked: `stackctl up` changes nothing until this is fixed:")
        for number, blocker in enumerate(blockers, 1):
            first, *rest = blocker.format_message().splitlines()
            click.echo(f"  {number}. {first}")
            for line in rest:
                click.echo(f"     {line}")
    steps = build_steps(ctx)
    result = run_plan(steps, yes=yes, dry_run=dry_run)
    if blockers:
        raise StackctlError(
            "the plan above is blocked: fix what is listed before it, then run `stackctl up`"
        )
    if not result.dry_run:
        for line in summary_lines(ctx):
            click.echo(line)
