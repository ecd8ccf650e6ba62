"""`stackctl units render | diff`: review units without installing; see hand edits."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from stackctl.cli import AppContext, pass_app

if TYPE_CHECKING:
    from stackctl.types import Platform, Scope


@click.group(name="units")
def units() -> None:
    """Review the launchd/systemd units stackctl writes.

    \b
    stackctl units render    print every unit `stackctl up` would install (nothing is installed)
    stackctl units diff      show installed units edited by hand since stackctl wrote them
    """


@units.command(name="render")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write the files into this directory instead of printing them.",
)
@click.option(
    "--platform",
    type=click.Choice(["macos", "linux"]),
    help="Render launchd plists (macos) or systemd units (linux); default: this machine.",
)
@click.option(
    "--scope",
    type=click.Choice(["user", "system"]),
    help="user: your login; system: at boot, as a service account. Default: the config's.",
)
@pass_app
def units_render(
    app: AppContext, out: Path | None, platform: Platform | None, scope: Scope | None
) -> None:
    """Render the units of all four services (Ollama, vLLM, proxy, Open WebUI) from the config,
    without installing anything. Secrets are shown as placeholders.

    Example: stackctl units render --platform linux --scope system --out ./units
    """
    from stackctl.fsutil import atomic_write
    from stackctl.services.inputs import inputs_for_host
    from stackctl.services.render import render_units
    from stackctl.stack import Overrides

    stack = app.stack(Overrides(platform=platform, scope=scope))
    inputs = inputs_for_host(stack, preview=True)
    rendered = render_units(stack.config, inputs, every_service=True)
    if out is not None:
        for unit in rendered:
            target = out / unit.filename
            atomic_write(target, unit.content, unit.mode)
            click.echo(str(target))
        return
    for i, unit in enumerate(rendered):
        if i:
            click.echo()
        click.echo(f"==> {inputs.paths.unit_dir / unit.filename} <==")
        click.echo(unit.content, nl=False)


@units.command(name="diff")
@click.option("--json", "json_", is_flag=True, help="Print JSON: [{path, diff}].")
@pass_app
def units_diff(app: AppContext, json_: bool) -> None:
    """Show installed unit files edited by hand since stackctl wrote them, as diffs from
    what stackctl wrote to what is on disk. `stackctl up` backs such a file up before it
    replaces it. Exit code 1 when a file differs, 0 when none does (as diff(1)).

    Example: stackctl units diff
    """
    drifted = app.stack().manager.drift()
    if json_:
        from stackctl.output import print_json

        print_json([{"path": str(d.path), "diff": d.diff} for d in drifted])
    elif not drifted:
        click.echo("no unit was edited by hand: every file is as stackctl wrote it")
    for drift in [] if json_ else drifted:
        click.echo(drift.diff, nl=False)
    if drifted:
        click.get_current_context().exit(1)  # diff(1)'s convention: 1 when there are differences
