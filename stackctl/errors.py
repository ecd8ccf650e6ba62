"""The errors stackctl raises, and its named exit codes.

Every error a user can cause or fix is a `StackctlError`: the CLI prints its message as one
line, `Error: …`, and exits 1. `STACKCTL_DEBUG=1` shows the traceback instead.
"""

from __future__ import annotations

import enum
import shlex

import click


class ExitCode(enum.IntEnum):
    """Exit codes, documented in the README."""

    OK = 0
    ERROR = 1
    USAGE = 2
    DEGRADED = 3  # `status`: the stack runs but something in it is not healthy
    INTERRUPTED = 130  # Ctrl-C: 128 + SIGINT, as shells report it


class StackctlError(click.ClickException):
    """A failure the user can act on. The message says what to do next."""

    exit_code = ExitCode.ERROR


class ConfigError(StackctlError):
    """The config file cannot be used. `problems` holds one line per problem."""

    def __init__(self, path: str, problems: list[str]):
        self.path = path
        self.problems = problems
        head = f"{path} is not a valid stackctl config"
        super().__init__(head + ":\n  " + "\n  ".join(problems) if problems else head)


class CommandFailed(StackctlError):
    """A command stackctl ran exited non-zero (or could not start)."""

    def __init__(self, argv: list[str], code: int, stderr: str, hint: str = ""):
        self.argv = list(argv)
        self.code = code
        self.stderr = stderr
        tail = stderr_tail(stderr)
        message = f"`{shlex.join(self.argv)}` failed with exit code {code}"
        if tail:
            message += f":\n{tail}"
        if hint:
            message += f"\n{hint}"
        super().__init__(message)


def stderr_tail(stderr: str, lines: int = 12) -> str:
    """The last few non-empty lines of a command's error output, indented."""
    kept = [line for line in stderr.strip().splitlines() if line.strip()][-lines:]
    return "\n".join("    " + line for line in kept)
