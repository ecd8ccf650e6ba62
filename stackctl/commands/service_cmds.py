"""`stackctl start | stop | restart [SERVICE...]` and `stackctl logs [SERVICE] [-n N] [-f]`."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from stackctl.cli import AppContext, pass_app

# The service names as typed (types.py, no registry import: --help stays fast); the
# registry lists the same names in the same order (tests/test_structure.py checks it).
from stackctl.types import SERVICE_NAMES as NAMES

if TYPE_CHECKING:
    from stackctl.services.base import ServiceManager

SERVICE_NAMES = ", ".join(NAMES)


def _complete_service(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    """Shell completion (`stackctl completion`) of a service name."""
    return [name for name in NAMES if name.startswith(incomplete)]


def _manager(app: AppContext) -> ServiceManager:
    return app.stack().manager


SERVICES = click.argument(
    "services",
    nargs=-1,
    metavar=f"[SERVICE]... ({SERVICE_NAMES})",
    shell_complete=_complete_service,
)
NO_WAIT = click.option(
    "--no-wait", is_flag=True, help="Return at once instead of waiting until they answer."
)


def _wait(app: AppContext, names: list[str], verb: str) -> None:
    """Wait until the services answer their health checks; exit 1 naming one that does not."""
    import shlex

    from stackctl.plan import Progress

    progress = Progress()
    again = shlex.join(["stackctl", verb, *names])
    try:
        from stackctl.service_wait import wait_for

        wait_for(
            app.stack(),
            names,
            fix=f"correct what it shows (often a setting in {app.config_path}), then `{again}`",
            report=progress.line,
        )
    finally:
        progress.end_line()
    click.echo(f"healthy: {', '.join(names)}")


@click.command(name="start")
@SERVICES
@NO_WAIT
@pass_app
def start(app: AppContext, services: tuple[str, ...], no_wait: bool) -> None:
    """Start the stack's services (default: all of them, backend first), then wait until
    they answer (--no-wait: return at once). Exit code 1 when one does not come up.

    Example: stackctl start proxy openwebui
    """
    done = _manager(app).start(list(services))
    click.echo(f"started: {', '.join(done)}")
    if not no_wait:
        _wait(app, done, "start")


@click.command(name="stop")
@SERVICES
@pass_app
def stop(app: AppContext, services: tuple[str, ...]) -> None:
    """Stop the stack's services (default: all of them, Open WebUI first). They start again
    at the next boot or login; `stackctl down` removes them.

    Example: stackctl stop
    """
    done = _manager(app).stop(list(services))
    click.echo(f"stopped: {', '.join(done)}")


@click.command(name="restart")
@SERVICES
@NO_WAIT
@pass_app
def restart(app: AppContext, services: tuple[str, ...], no_wait: bool) -> None:
    """Restart the stack's services (default: all of them, backend first), then wait until
    they answer (--no-wait: return at once). Exit code 1 when one does not come up.

    Example: stackctl restart ollama
    """
    done = _manager(app).restart(list(services))
    click.echo(f"restarted: {', '.join(done)}")
    if not no_wait:
        _wait(app, done, "restart")


@click.command(name="logs")
@click.argument(
    "service",
    required=False,
    metavar=f"[SERVICE] ({SERVICE_NAMES})",
    shell_complete=_complete_service,
)
@click.option(
    "-n",
    "--lines",
    default=50,
    show_default=True,
    type=click.IntRange(min=1),
    help="How many lines.",
)
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines until Ctrl-C.")
@pass_app
def logs(app: AppContext, service: str | None, lines: int, follow: bool) -> None:
    """Print a service's recent log lines (default: the whole stack's). From the journal on
    Linux, from ~/Library/Logs/stackctl/<service>.log (or /Library/Logs/stackctl) on macOS.

    Example: stackctl logs proxy -n 100 -f
    """
    text = _manager(app).logs(service, lines=lines, follow=follow)
    if text is None:
        return
    if text.strip():
        click.echo(text, nl=not text.endswith("\n"))
    else:
        click.echo(f"no log lines yet for {service or 'the stack'}", err=True)
