"""The running stack: units written and loaded, health awaited, models pulled."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from pathlib import Path

from stackctl import health
from stackctl.errors import StackctlError
from stackctl.output import human_bytes
from stackctl.plan import Progress, Step
from stackctl.pull import ProgressBar, PullState, has_model, installed_models, pull_model
from stackctl.registry import info
from stackctl.services.inputs import inputs_for_host
from stackctl.services.render import render_units
from stackctl.setup.cluster import node_waiter, waiting_for_nodes
from stackctl.setup.context import Context


def render(ctx: Context, *, preview: bool = False) -> list:
    """The units for this stack on this machine (rendered fresh: binaries may be new).

    `preview` never fails on what an earlier step installs (for the plan's file list)."""
    inputs = inputs_for_host(
        ctx.stack,
        preview=preview,
        brew_prefix=Path(ctx.facts.brew_prefix) if ctx.facts.brew_prefix else None,
    )
    return render_units(ctx.config, inputs)


def _units_in_place(ctx: Context, only: tuple[str, ...] = ()) -> bool:
    """Every unit (of the `only` services) on disk as we would write it, and its service
    running."""
    try:
        units = render(ctx)
    except StackctlError:
        return False  # e.g. ollama not installed yet: the install step comes first
    for unit in units:
        if only and unit.service not in only:
            continue
        path = ctx.paths.unit_dir / unit.filename
        try:
            if path.read_text(encoding="utf-8") != unit.content:
                return False
        except OSError:
            return False
    states = ctx.manager.status(list(only) or ctx.stack.service_names)
    return all(state.state == "active" for state in states)


def units_step(ctx: Context, started: list[str], stale: Sequence[str] = ()) -> Step:
    """Write the units, load and start them (a changed unit restarts only its service), and
    restart the `stale` services (a secret they read at start changed) that this did not;
    the services it starts or restarts are added to `started`."""
    names = [s.name for s in ctx.services]

    def apply(progress: Progress) -> None:
        report = ctx.manager.install(render(ctx))
        started.extend([*report.started, *report.restarted])
        for original, copy in report.backed_up:
            progress.note(f"{original} was edited by hand: saved a copy as {copy}")
        for path in report.written:
            progress.note(f"wrote {path}")
        again: list[str] = [n for n in names if n in stale and n not in started]
        if again:
            started.extend(ctx.manager.restart(again))
            progress.note(f"restarted {', '.join(again)}: it reads its new secret at start")

    planned = render(ctx, preview=True)
    return Step(
        description="Write the service units and start " + ", ".join(names),
        check=lambda: not any(n in stale for n in names) and _units_in_place(ctx),
        apply=apply,
        commands=[shlex.join(argv) for argv in ctx.manager.planned_commands(planned)],
        files=[f"{ctx.paths.unit_dir / u.filename} ({u.mode:04o})" for u in planned],
        fix="`stackctl units diff` shows what differs; `stackctl logs` shows why a service stopped",
    )


def backend_step(ctx: Context, started: list[str]) -> Step:
    """Start Ollama on its own first, so the models download while the rest installs (the
    units step then installs every unit; Ollama's is unchanged, so it keeps running). When
    it starts or restarts Ollama, `ollama` is added to `started`."""
    only = ("ollama",)
    ollama = next(s for s in ctx.services if s.name == "ollama")

    def apply(progress: Progress) -> None:
        units = [u for u in render(ctx) if u.service in only]
        report = ctx.manager.install(units, prune=False)
        started.extend([*report.started, *report.restarted])
        for original, copy in report.backed_up:
            progress.note(f"{original} was edited by hand: saved a copy as {copy}")
        _wait_healthy(ctx, [ollama.name], progress)

    planned = [u for u in render(ctx, preview=True) if u.service in only]
    return Step(
        description="Start Ollama first, so the models download while the rest installs",
        check=lambda: _units_in_place(ctx, only) and health.check(ollama, timeout=2.0).ok,
        apply=apply,
        commands=[
            *(shlex.join(argv) for argv in ctx.manager.planned_commands(planned)),
            f"GET {ollama.url}{info('ollama').health.path}",
        ],
        files=[f"{ctx.paths.unit_dir / u.filename} ({u.mode:04o})" for u in planned],
        fix="`stackctl logs ollama` shows why it stopped",
    )


def upgraded_services(ctx: Context) -> list[str]:
    """The services whose software `--upgrade` replaces on this platform (their registry
    entry says where: Linux's ollama binary, say, is not ours to upgrade)."""
    return [s.name for s in ctx.services if ctx.platform in info(s.name).upgradable_on]


def restart_step(ctx: Context, started: list[str]) -> Step:
    """After --upgrade: running services still run the old code until restarted."""
    names = upgraded_services(ctx)

    def apply(progress: Progress) -> None:
        started.extend(ctx.manager.restart(names))

    return Step(
        description="Restart " + ", ".join(names) + " so the upgrades take effect",
        check=lambda: False,
        apply=apply,
        commands=[f"stackctl restart {' '.join(names)}"],
    )


# --- health -------------------------------------------------------------------------------


def _expected_model(ctx: Context, service: str) -> str | None:
    return ctx.config.vllm.served_model_name if service == "vllm" else None


def _all_healthy(ctx: Context) -> bool:
    results = health.check_all(ctx.services, timeout=2.0, api_keys=ctx.stack.service_api_keys)
    return all(h.ok and (_expected_model(ctx, h.service) in (None, *h.models)) for h in results)


def _wait_fix(ctx: Context) -> str:
    return (
        f"correct what it shows (often a setting in {ctx.config_path}), then run "
        "`stackctl up` again"
    )


def _wait_healthy(ctx: Context, names: Sequence[str], progress: Progress) -> None:
    """Wait for each named service in start order, each with a budget that fits it."""
    from stackctl.service_wait import wait_for

    wait_for(ctx.stack, names, fix=_wait_fix(ctx), report=progress.line, note=progress.note)


def health_step(ctx: Context, started: list[str]) -> Step:
    """Wait for each service in start order; then, with Ollama, until the proxy lists the
    models pulled (its model list is cached), so the summary and Open WebUI's list are true
    when `up` returns.

    `started` holds the services the Ollama, units or restart step (re)started in this run:
    those are always waited for, however healthy the stack looked before (a restarted
    service may crash-loop on its new settings)."""

    def apply(progress: Progress) -> None:
        names = [s.name for s in ctx.services]
        waiting = False
        if "ray" in names:  # a cluster's head: vLLM or Ray Serve waits for the nodes, not `up`
            _wait_healthy(ctx, ["ray"], progress)
            waiting = waiting_for_nodes(ctx)
            if waiting:
                waiter = node_waiter(ctx.backend)
                names.remove(waiter)
                progress.note(
                    f"{info(waiter).label} starts once all {ctx.config.cluster.nodes} "  # type: ignore[union-attr]
                    "nodes have joined: run `stackctl cluster join-command` here, and the "
                    "command it prints on each worker"
                )
        _wait_healthy(ctx, names, progress)
        if ctx.backend == "ollama" and ctx.models and not waiting:
            _wait_until_the_proxy_lists(ctx, progress)

    return Step(
        description="Wait until every service answers its health check",
        check=lambda: not started and _units_in_place(ctx) and _all_healthy(ctx),
        apply=apply,
        commands=[f"GET {s.url}{info(s.name).health.path}" for s in ctx.services],
    )


# --- models -------------------------------------------------------------------------------


def _missing_models(ctx: Context) -> list[str]:
    names = installed_models(ctx.config.ollama.url, timeout=2.0)
    if names is None:
        return list(ctx.models)
    return [m for m in ctx.models if not has_model(names, m)]


def _wait_until_the_proxy_lists(ctx: Context, progress: Progress) -> None:
    """Wait until the proxy lists the new models, so the summary and Open WebUI's model list
    are true when `up` returns: the proxy caches /v1/models for models_cache_seconds and
    listed Ollama before the pull. Not listing them in time is a note, not a failure."""
    import time

    proxy = ctx.stack.service("proxy")
    if proxy is None:
        return
    key = ctx.stack.first_proxy_key
    deadline = time.monotonic() + ctx.config.proxy.models_cache_seconds + 15
    while True:
        result = health.check(proxy, api_key=key)
        missing = [m for m in ctx.models if not has_model(result.models, m)]
        if result.ok and not missing:
            return
        if time.monotonic() > deadline:
            progress.note(
                f"the proxy does not list {', '.join(missing) or 'the models'} yet "
                f"({result.detail}); `stackctl models` shows what each backend serves"
            )
            return
        time.sleep(0.5)


def pull_step(ctx: Context) -> Step:
    """Pull the models Ollama does not have yet (a re-run resumes a partial download)."""

    def apply(progress: Progress) -> None:
        for model in _missing_models(ctx):
            bar = ProgressBar(terminal=progress.terminal)

            def update(state: PullState, bar: ProgressBar = bar) -> None:
                progress.check_stopped()  # Ollama keeps what it has: the next run resumes
                if bar.due(state, bar.sample(state)):
                    progress.line(bar.line(state))

            state = pull_model(
                ctx.config.ollama.url,
                model,
                stall_seconds=ctx.options.stall_seconds,
                on_update=update,
                on_note=progress.note,
            )
            progress.note(
                f"{model}: pulled" + (f" ({human_bytes(state.total)})" if state.total else "")
            )

    return Step(
        description="Pull " + ", ".join(ctx.models) + " into Ollama",
        check=lambda: not _missing_models(ctx),
        apply=apply,
        commands=[f"POST {ctx.config.ollama.url}/api/pull {{model: {m}}}" for m in ctx.models],
        fix="`stackctl pull MODEL` resumes a download",
    )
