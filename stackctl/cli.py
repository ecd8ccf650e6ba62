"""The command line: thin click wiring. Each command's logic lives in its own module.

Commands are imported only when used (or listed by --help), and those modules import their
heavy dependencies (httpx, starlette, psutil) inside functions, so `stackctl --help` and
`stackctl status` start fast.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import click

from stackctl import __version__
from stackctl.errors import ExitCode

if TYPE_CHECKING:
    from stackctl.config.model import Config
    from stackctl.stack import Overrides, Stack

# command name -> "module:attribute" of a click command
COMMANDS: dict[str, str] = {
    "up": "stackctl.commands.up_cmd:up",
    "status": "stackctl.commands.status_cmd:status",
    "models": "stackctl.commands.status_cmd:models",
    "pull": "stackctl.commands.pull_cmd:pull",
    "down": "stackctl.commands.down_cmd:down",
    "start": "stackctl.commands.service_cmds:start",
    "stop": "stackctl.commands.service_cmds:stop",
    "restart": "stackctl.commands.service_cmds:restart",
    "logs": "stackctl.commands.service_cmds:logs",
    "units": "stackctl.commands.units_cmd:units",
    "proxy": "stackctl.commands.proxy_cmd:proxy",
    "keys": "stackctl.commands.keys_cmd:keys",
    "doctor": "stackctl.commands.doctor_cmd:doctor",
    "config": "stackctl.commands.config_cmd:config",
    "completion": "stackctl.commands.completion_cmd:completion",
    "front": "stackctl.commands.front_cmd:front",
    "cluster": "stackctl.commands.cluster_cmd:cluster",
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attribute = target.split(":")
        return getattr(importlib.import_module(module_name), attribute)


@dataclass
class AppContext:
    """What every command gets: the config file path and, loaded on demand, the config."""

    config_path: Path
    config_given: bool  # True when --config or STACKCTL_CONFIG named the file
    _config: Config | None = field(default=None, repr=False)

    @property
    def config(self) -> Config:
        if self._config is None:
            from stackctl import config

            self._config = config.load(self.config_path, required=self.config_given)
        return self._config

    def stack(self, overrides: Overrides | None = None) -> Stack:
        """The stack the config describes on this machine (flags in `overrides`)."""
        from stackctl.stack import resolve_stack

        return resolve_stack(self.config, self.config_path, overrides=overrides)


pass_app = click.make_pass_decorator(AppContext)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="STACKCTL_CONFIG",
    help="Config file to use (default: the per-user stack.yaml; /etc/stackctl for root).",
)
@click.option("-v", "--verbose", is_flag=True, help="Show every command stackctl runs.")
@click.version_option(__version__, prog_name="stackctl")
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None, verbose: bool) -> None:
    """Your own local LLM stack in one command, kept running.

    \b
    stackctl up        install and start Ollama (or vLLM), the proxy and Open WebUI
    stackctl status    is it up? why not?
    stackctl doctor    what this machine has, and what to fix

    Exit codes: 0 ok, 1 error, 2 usage, 3 the stack is degraded (status).
    """
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(message)s",
        stream=sys.stderr,
    )
    from stackctl.paths import default_config_file

    ctx.obj = AppContext(
        config_path=config_path or default_config_file(),
        config_given=config_path is not None,
    )


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI, turning StackctlError into `Error: …` and exit 1."""
    debug = os.environ.get("STACKCTL_DEBUG") == "1"
    try:
        # Without standalone mode click *returns* the code of ctx.exit(code) instead of raising.
        code = cli.main(args=argv, prog_name="stackctl", standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(ExitCode.ERROR)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:  # StackctlError among them: `Error: …`, exit 1
        if debug:
            raise
        exc.show()
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)
