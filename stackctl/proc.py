"""The only module that runs subprocesses.

Every command is logged (at INFO with `-v`) and a failure raises `CommandFailed` with the
command, its exit code and the tail of its stderr.
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import subprocess
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from stackctl.errors import CommandFailed

log = logging.getLogger("stackctl.proc")


@dataclass(frozen=True)
class Result:
    """What a finished command returned."""

    argv: list[str]
    code: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.code == 0


def which(name: str, path: str | None = None) -> str | None:
    """The absolute path of an executable on PATH, or None."""
    return shutil.which(name, path=path)


def _env(extra: Mapping[str, str] | None) -> dict[str, str] | None:
    if not extra:
        return None
    return {**os.environ, **extra}


def run(
    argv: Sequence[str],
    *,
    check: bool = True,
    env: Mapping[str, str] | None = None,
    timeout: float | None = 120,
    input: str | None = None,
    cwd: str | None = None,
    hint: str = "",
) -> Result:
    """Run a command to completion and capture its output.

    A missing executable or a timeout is reported like a failure (exit code 127 / 124),
    so callers handle one kind of error.
    """
    argv = [str(a) for a in argv]
    log.info("$ %s", shlex.join(argv))
    try:
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            env=_env(env),
            timeout=timeout,
            input=input,
            cwd=cwd,
            stdin=None if input is not None else subprocess.DEVNULL,
            check=False,
        )
        result = Result(argv, done.returncode, done.stdout, done.stderr)
    except FileNotFoundError:
        result = Result(argv, 127, "", f"{argv[0]}: command not found")
    except PermissionError as exc:
        result = Result(argv, 126, "", f"{argv[0]}: {exc.strerror}")
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        err = exc.stderr.decode() if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        result = Result(argv, 124, out, err + f"\ntimed out after {timeout:g}s")
    if result.code != 0:
        log.info("  exit %d: %s", result.code, result.stderr.strip()[-500:])
        if check:
            raise CommandFailed(argv, result.code, result.stderr, hint=hint)
    return result


def output(argv: Sequence[str], *, timeout: float = 10) -> str | None:
    """The stripped stdout of a command that succeeded, or None (for probes)."""
    result = run(argv, check=False, timeout=timeout)
    return result.stdout.strip() if result.ok else None


def stream(
    argv: Sequence[str],
    *,
    on_line: Callable[[str], None],
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    hint: str = "",
    on_start: Callable[[subprocess.Popen], None] | None = None,
) -> Result:
    """Run a long command, handing each output line (stdout and stderr merged) to `on_line`.

    Used for `pip install` and downloads, whose progress the user wants to see. The last
    lines are kept as the error tail when the command fails. `on_start` gets the running
    child (the plan kills it when it stops the step).
    """
    argv = [str(a) for a in argv]
    log.info("$ %s", shlex.join(argv))
    tail: list[str] = []
    try:
        child = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            bufsize=1,
            env=_env(env),
            cwd=cwd,
        )
    except FileNotFoundError:
        raise CommandFailed(argv, 127, f"{argv[0]}: command not found", hint=hint) from None
    assert child.stdout is not None
    try:
        if on_start is not None:
            on_start(child)
        for line in child.stdout:
            line = line.rstrip("\n")
            tail = [*tail[-39:], line]
            on_line(line)
        code = child.wait()
    except BaseException:
        child.kill()
        child.wait()
        raise
    finally:
        child.stdout.close()  # else a ResourceWarning (an error under pytest's -W error)
    if code != 0:
        raise CommandFailed(argv, code, "\n".join(tail), hint=hint)
    return Result(argv, code, "\n".join(tail), "")


def follow(argv: Sequence[str]) -> int:
    """Run a command attached to the terminal (e.g. `journalctl -f`) until it or we stop."""
    argv = [str(a) for a in argv]
    log.info("$ %s", shlex.join(argv))
    try:
        return subprocess.call(argv)
    except FileNotFoundError:
        raise CommandFailed(argv, 127, f"{argv[0]}: command not found") from None
    except KeyboardInterrupt:
        return 0


def lines(argv: Sequence[str], *, timeout: float = 10) -> Iterator[str]:
    """The stdout lines of a command that succeeded (empty when it failed)."""
    text = output(argv, timeout=timeout)
    return iter(text.splitlines() if text else [])
