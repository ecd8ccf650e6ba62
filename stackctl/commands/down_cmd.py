"""`stackctl down [--purge] [--yes]`: stop and remove the stack's services."""

from __future__ import annotations

import click

from stackctl.cli import AppContext, pass_app


@click.command(name="down")
@click.option(
    "--purge",
    is_flag=True,
    help="Also delete stackctl's config, secrets, venvs, data and downloaded models (asks first).",
)
@click.option("-y", "--yes", is_flag=True, help="Do not ask before --purge deletes.")
@pass_app
def down(app: AppContext, purge: bool, yes: bool) -> None:
    """Stop and remove every service unit stackctl installed, and only those.

    Models, venvs, data and the config stay, so `stackctl up` brings the stack back
    quickly. --purge lists everything it would delete and asks (or --yes) before it changes
    anything; files outside stackctl's directories (a --config file of yours) are kept.

    \b
    Examples:
      stackctl down
      stackctl down --purge          # then: pipx uninstall stackctl
    """
    from stackctl.output import human_bytes
    from stackctl.plan import confirm
    from stackctl.setup import teardown

    stack = app.stack()
    config, manager, paths = stack.config, stack.manager, stack.paths
    items = teardown.purge_items(config, app.config_path, paths) if purge else []
    if items:  # decided before anything changes: a refusal leaves the services running
        click.echo("--purge deletes:")
        for item in items:
            click.echo(f"  {item.path}  ({item.what}, {human_bytes(item.size_bytes)})")
        confirm(
            "Delete all of this for good?",
            yes=yes,
            what="--purge (it deletes the above)",
            default=False,
        )
    removed = manager.uninstall()
    if removed:
        click.echo("Stopped and removed:")
        for path in removed:
            click.echo(f"  {path}")
    else:
        click.echo("No stackctl services are installed.")
    if not purge:
        if removed:
            click.echo("Models, venvs, data and the config are kept: `stackctl up` brings it back.")
        return
    if not items:
        click.echo("Nothing else to delete.")
    else:
        teardown.delete(items)
        click.echo(f"Deleted {len(items)} items.")
    command = teardown.remove_account(paths)
    if command:
        click.echo(f"Removed the service account: {command}")
    for note in teardown.kept_notes(config, app.config_path, paths):
        click.echo(note)
    click.echo(
        "To remove stackctl itself: pipx uninstall stackctl (or delete the venv you installed "
        "it into)"
    )
