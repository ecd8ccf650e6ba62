"""`stackctl front`: the HTTPS front's Caddyfile, and the command its service runs."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import click

from stackctl.cli import AppContext, pass_app
from stackctl.errors import StackctlError

CADDY_INSTALL = {
    "linux": "sudo apt-get install caddy",
    "macos": "brew install caddy",
}


@click.group()
def front() -> None:
    """The HTTPS front (Caddy) that serves the stack on the network with `expose: true`."""


@front.command("caddyfile")
@pass_app
def caddyfile_cmd(app: AppContext) -> None:
    """Print the Caddyfile the front runs with (as `front run` would write it now)."""
    from stackctl.front import caddyfile, machine_names

    stack = app.stack()
    click.echo(caddyfile(stack.config, stack.paths.caddy_data, machine_names()), nl=False)


@front.command("run")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the Caddyfile and Caddy's storage go (default: <stackctl data dir>/caddy; "
    "the unit names it, so it never depends on who runs it).",
)
@pass_app
def run(app: AppContext, data_dir: Path | None) -> None:
    """Write the Caddyfile and become `caddy run` with it (what the front's service runs).

    Caddy's storage (its local CA, certificates) and its XDG dirs go under stackctl's data
    dir; the Caddyfile names this machine's current host name and addresses.
    """
    from stackctl.front import caddyfile, machine_names
    from stackctl.fsutil import atomic_write
    from stackctl.paths import current_platform, paths_for
    from stackctl.stack import resolve_scope

    # the config and a place, nothing more: resolving the whole stack would ask nvidia-smi
    # about `backend: auto` at every start of the front
    config, platform = app.config, current_platform()
    caddy = shutil.which("caddy")
    if caddy is None:
        raise StackctlError(
            f"cannot find caddy on PATH ({os.environ.get('PATH', '')}): install it "
            f"(`{CADDY_INSTALL[platform]}`), then `stackctl restart front`"
        )
    data = data_dir or paths_for(platform, resolve_scope(config)).caddy_data
    data.mkdir(parents=True, exist_ok=True)
    path = data / "Caddyfile"
    atomic_write(path, caddyfile(config, data, machine_names()))
    env = {**os.environ, "XDG_DATA_HOME": str(data / "xdg-data")}
    env["XDG_CONFIG_HOME"] = str(data / "xdg-config")  # Caddy's autosave.json goes there
    argv = [caddy, "run", "--config", str(path), "--adapter", "caddyfile"]
    os.execve(caddy, argv, env)
