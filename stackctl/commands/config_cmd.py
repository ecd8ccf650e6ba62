"""`stackctl config path | show | init | validate`."""

from __future__ import annotations

import click

from stackctl.cli import AppContext, pass_app


@click.group(name="config")
def config() -> None:
    """Read, write and check stack.yaml.

    \b
    stackctl config path        where the config file is
    stackctl config show        the effective config, defaults merged, secrets masked
    stackctl config validate    check it; exit 1 and list every problem
    stackctl config init        write a commented config tuned to this machine
    """


@config.command(name="path")
@pass_app
def config_path(app: AppContext) -> None:
    """Print the config file's path (it need not exist: defaults apply)."""
    click.echo(str(app.config_path))


@config.command(name="show")
@click.option("--json", "json_", is_flag=True, help="Print JSON instead of YAML.")
@pass_app
def config_show(app: AppContext, json_: bool) -> None:
    """Print the effective config: defaults merged, backend and models resolved, secrets masked.

    Example: stackctl config show --json
    """
    from stackctl.stack import effective_config

    data = effective_config(app.stack())
    if json_:
        from stackctl.output import print_json

        print_json(data)
        return
    import yaml

    source = app.config.source or "(no file: built-in defaults)"
    click.echo(f"# effective config from {source}")
    click.echo(yaml.safe_dump(data, sort_keys=False, default_flow_style=False).rstrip())


@config.command(name="validate")
@pass_app
def config_validate(app: AppContext) -> None:
    """Check the config file; print every problem with its line, exit 1 if there are any.

    Example: stackctl --config ./stack.yaml config validate
    """
    app.config  # noqa: B018 - loading validates; a bad file raises ConfigError with every problem
    if app.config.source is None:
        click.echo(f"{app.config_path}: no such file; the built-in defaults apply and are valid")
    else:
        click.echo(f"{app.config_path}: ok")


@config.command(name="init")
@click.option("--force", is_flag=True, help="Replace an existing file (it is backed up first).")
@pass_app
def config_init(app: AppContext, force: bool) -> None:
    """Write a commented stack.yaml tuned to this machine: the backend and a model that fits.

    Refuses to replace an existing file unless --force (which backs it up first).

    Example: stackctl config init && stackctl config validate
    """
    from stackctl.config_init import write_config
    from stackctl.paths import default_scope, paths_for
    from stackctl.probe import probe_machine

    facts = probe_machine()
    backups = paths_for(scope=default_scope()).backups_dir
    result = write_config(app.config_path, facts, force=force, backups_dir=backups)
    if result.backup:
        click.echo(f"backed up the old file to {result.backup}")
    click.echo(
        f"wrote {result.path}: backend {result.backend}, scope {result.scope}, "
        f"model {result.model.ollama}"
    )
