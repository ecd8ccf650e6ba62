"""`stackctl status` and `stackctl models`."""

from __future__ import annotations

import click

from stackctl.cli import AppContext, pass_app


def _health(row) -> str:
    if row.healthy:
        text = f"ok {row.latency_ms:.0f}ms" if row.latency_ms is not None else "ok"
    else:
        text = row.health
    if row.certificate_expires:
        text += f", {_certificate(row.certificate_expires)}"
    return text


def _certificate(expires: str) -> str:
    """How long the front's certificate has left (Caddy's local CA issues 12-hour ones and
    renews them itself)."""
    from datetime import datetime, timezone

    from stackctl.output import duration

    left = (datetime.fromisoformat(expires) - datetime.now(timezone.utc)).total_seconds()
    return f"cert expires in {duration(left)}" if left > 0 else "cert EXPIRED"


def _models(row, status) -> str:
    """The MODELS column; on a cluster's head, the ray row counts the nodes (`2/2 nodes`)."""
    if row.service == "ray" and status.cluster is not None:
        from stackctl.cluster_report import nodes_line

        return nodes_line(status.cluster)
    return ", ".join(row.models) or "-"


def render_status(status) -> str:
    """The status table and, below it, what to do about each problem."""
    from stackctl.output import duration, table

    headers = [
        "SERVICE",
        "STATE",
        "PID",
        "UPTIME",
        "RESTARTS",
        "PORT",
        "HEALTH",
        "VERSION",
        "MODELS",
    ]
    rows = [
        [
            row.service,
            row.state,
            row.pid or "-",
            "-" if row.uptime_seconds is None else duration(row.uptime_seconds),
            "-" if row.restarts is None else row.restarts,
            row.port,
            _health(row),
            row.version or "-",
            _models(row, status),
        ]
        for row in status.rows
    ]
    lines = [table(headers, rows), *status.hints]
    lines += [f"warning: {warning}" for warning in status.warnings]
    if status.installed:
        lines.append("healthy" if status.healthy else "degraded")
    return "\n".join(lines)


@click.command(name="status")
@click.option("--json", "json_", is_flag=True, help="Print JSON for scripts.")
@click.option("--watch", is_flag=True, help="Refresh every 2 seconds until Ctrl-C.")
@pass_app
def status(app: AppContext, json_: bool, watch: bool) -> None:
    """Is the stack up? One row per service: state, pid, uptime, restarts, port, health.

    Exit code 0: all healthy; 3: degraded (something is down or not answering); 1: the
    stack is not installed (or status could not be read).

    \b
    Examples:
      stackctl status
      stackctl status --json | jq '.services[] | {service, health}'
      stackctl status --watch
    """
    import time

    from stackctl.status import collect

    stack = app.stack()
    while True:
        result = collect(stack)
        if json_:
            from stackctl.output import print_json

            print_json(result.to_dict())
        else:
            if watch:
                click.clear()
                click.echo(time.strftime("%H:%M:%S") + "  (Ctrl-C to stop)")
            click.echo(render_status(result))
        if not watch:
            break
        try:
            time.sleep(2)
        except KeyboardInterrupt:
            break
    click.get_current_context().exit(int(result.exit_code))


@click.command(name="models")
@click.option("--json", "json_", is_flag=True, help="Print JSON for scripts.")
@pass_app
def models(app: AppContext, json_: bool) -> None:
    """List the models every backend serves: name, size on disk, and where.

    Exit code 3 when a backend does not answer, 1 when the stack is not installed (as
    `stackctl status`).

    Example: stackctl models
    """
    from dataclasses import asdict

    from stackctl.output import human_bytes, print_json, table
    from stackctl.status import NOT_INSTALLED, list_models

    found = list_models(app.stack())
    if json_:
        print_json(
            {
                "models": [asdict(r) for r in found.rows],
                "unreachable": found.unreachable,
                "installed": found.installed,
            }
        )
    else:
        rows = [
            [r.name, human_bytes(r.size_bytes) if r.size_bytes is not None else "-", r.where]
            for r in found.rows
        ]
        click.echo(table(["NAME", "SIZE", "WHERE"], rows))
        for line in found.unreachable:
            click.echo(
                line + (": `stackctl status` shows why" if found.installed else ""), err=True
            )
        if not found.installed:
            click.echo(NOT_INSTALLED, err=True)
    click.get_current_context().exit(int(found.exit_code))
