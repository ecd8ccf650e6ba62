"""`stackctl keys add | list | revoke`: the proxy's named API keys (stackctl.keystore)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from stackctl.cli import AppContext, pass_app
from stackctl.errors import StackctlError

if TYPE_CHECKING:
    from stackctl.keystore import KeyListing
    from stackctl.paths import Paths


class NoKeyFile(StackctlError):
    """Named keys live next to proxy.api_keys_file, which the config does not set."""

    def __init__(self, config_path: Path, suggested: Path):
        super().__init__(
            f"{config_path} sets no proxy.api_keys_file, and the named keys are kept next to "
            f"it: add `api_keys_file: {suggested}` under `proxy:`, then run `stackctl up` "
            "(it gives Open WebUI a key of its own)."
        )


def _store(app: AppContext) -> tuple[Path, Path]:
    """(the key store, the unnamed key file it sits next to)."""
    from stackctl import keystore

    keys_file = app.config.proxy.api_keys_file
    if not keys_file:
        raise NoKeyFile(app.config_path, _paths(app).proxy_keys_file)
    return keystore.store_path(keys_file), Path(keys_file).expanduser()


def _paths(app: AppContext) -> Paths:
    from stackctl.paths import current_platform, paths_for
    from stackctl.stack import resolve_scope

    return paths_for(current_platform(), resolve_scope(app.config))


def _limits(rpm: int | None, tokens_per_day: int | None) -> str:
    parts = []
    if rpm:
        parts.append(f"{rpm} requests a minute")
    if tokens_per_day:
        parts.append(f"{tokens_per_day} tokens a day")
    return ", ".join(parts)


@click.group(name="keys")
def keys() -> None:
    """The proxy's API keys: one per person or app, with optional limits.

    \b
    stackctl keys add NAME      make a key (printed once; only its hash is kept)
    stackctl keys list          names, created, last used, limits (never a key)
    stackctl keys revoke NAME   the proxy refuses it within a second, no restart

    The keys are kept next to proxy.api_keys_file, as <that file>.json (mode 0600).
    """


@keys.command(name="add")
@click.argument("name")
@click.option(
    "--rpm", type=click.IntRange(min=1), help="At most this many requests a minute (429 past it)."
)
@click.option(
    "--tokens-per-day",
    type=click.IntRange(min=1),
    help="At most this many tokens (prompt + completion) a UTC day (429 past it).",
)
@pass_app
def keys_add(app: AppContext, name: str, rpm: int | None, tokens_per_day: int | None) -> None:
    """Make a key named NAME and print it, once: only its hash is kept.

    The key goes to standard output alone, the note to standard error, so
    KEY=$(stackctl keys add NAME) captures just the key.

    \b
    Example:
      stackctl keys add alice --rpm 60 --tokens-per-day 200000
    """
    from stackctl import keystore

    store, keys_file = _store(app)
    key, _ = keystore.add_key(
        store, name, rpm=rpm, tokens_per_day=tokens_per_day, owner_of=keys_file
    )
    click.echo(key)
    limits = _limits(rpm, tokens_per_day)
    click.echo(
        f"Added key '{name}'{f' ({limits})' if limits else ''}. It is shown only this once: "
        f"{store} keeps its hash. A running proxy takes it within a second.",
        err=True,
    )


@keys.command(name="list")
@click.option("--json", "json_", is_flag=True, help="Print JSON instead of a table.")
@pass_app
def keys_list(app: AppContext, json_: bool) -> None:
    """List the keys the proxy accepts: name, created, last used, limits, tokens today.

    Unnamed keys (proxy.api_keys, the lines of proxy.api_keys_file) show as key-1, key-2, ….
    The proxy writes when each key was last used every few seconds.

    Example: stackctl keys list --json
    """
    import time
    from dataclasses import asdict

    from stackctl import keystore

    usage = keystore.read_usage(keystore.usage_path(_paths(app).data_dir))
    rows = keystore.listing(app.config.proxy, usage, time.time())
    if json_:
        from stackctl.output import print_json

        print_json([asdict(row) for row in rows])
        return
    if not rows and app.config.proxy.api_keys_file:
        click.echo(
            "No keys yet: the proxy refuses every request. `stackctl keys add NAME` makes one."
        )
        return
    if not rows:
        click.echo(
            "No keys: the proxy answers anyone on 127.0.0.1. To keep named keys, set "
            "proxy.api_keys_file in stack.yaml (they are kept next to it)."
        )
        return
    from stackctl.output import table

    click.echo(table(_HEADERS, [_cells(row) for row in rows]))


_HEADERS = ("NAME", "CREATED", "LAST USED", "REQUESTS/MIN", "TOKENS/DAY", "TOKENS TODAY")


def _cells(row: KeyListing) -> list[str]:
    return [
        row.name,
        row.created or f"unnamed, in {row.source}",
        row.last_used or "never",
        str(row.rpm) if row.rpm else "-",
        str(row.tokens_per_day) if row.tokens_per_day else "-",
        str(row.tokens_today),
    ]


@keys.command(name="revoke")
@click.argument("name")
@pass_app
def keys_revoke(app: AppContext, name: str) -> None:
    """Revoke the key named NAME: a running proxy refuses it within a second.

    Example: stackctl keys revoke alice
    """
    from stackctl import keystore

    unnamed = keystore.unnamed_keys(app.config.proxy)
    for index, record in enumerate(unnamed, 1):
        if record.name == name:
            same_source = [r for r in unnamed[:index] if r.source == record.source]
            raise keystore.UnnamedKeyRevoke(record, len(same_source))
    store, keys_file = _store(app)
    keystore.revoke_key(store, name, owner_of=keys_file)
    click.echo(f"Revoked key '{name}': a running proxy refuses it within a second.")
    if name == keystore.OPENWEBUI_KEY:
        click.echo("Open WebUI used this key: `stackctl up` gives it a new one.")
