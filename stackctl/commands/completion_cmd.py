"""`stackctl completion bash|zsh|fish`: the shell completion script, from click itself."""

from __future__ import annotations

import click

SHELLS = ("bash", "zsh", "fish")
COMPLETE_VAR = "_STACKCTL_COMPLETE"  # click's convention: _<PROG_NAME>_COMPLETE


@click.command(name="completion")
@click.argument("shell", type=click.Choice(SHELLS))
def completion(shell: str) -> None:
    """Print the completion script for a shell: commands, options, service names.

    \b
    Examples:
      eval "$(stackctl completion bash)"       # in ~/.bashrc (bash 4.4 or newer)
      eval "$(stackctl completion zsh)"        # in ~/.zshrc
      stackctl completion fish > ~/.config/fish/completions/stackctl.fish
    """
    from click.shell_completion import get_completion_class

    from stackctl.cli import cli

    complete = get_completion_class(shell)
    assert complete is not None  # click ships all three
    click.echo(complete(cli, {}, "stackctl", COMPLETE_VAR).source())
