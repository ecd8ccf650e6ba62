"""The step engine behind `stackctl up`: show a plan, ask once, apply it step by step.

A `Step` says what it does, how to tell it is already done (`check`), how to do it
(`apply`) and, for `--dry-run`, the exact commands it would run and files it would write.
Every step is idempotent, so an interrupted run (Ctrl-C, a failed command) leaves a state the
next run completes: the checks skip what is already in place.
"""

from __future__ import annotations

import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import click

from stackctl import proc
from stackctl.errors import CommandFailed, ExitCode, StackctlError, stderr_tail
from stackctl.output import StatusLine

AGAIN = "run `stackctl up` again to finish (steps already done are kept)"


class Progress:
    """How a step reports what it is doing: a note, or a line of a long command's output.

    On a terminal, command output overwrites one status line (pip prints hundreds); in a log
    (no terminal) every line is kept, indented, so CI output shows what happened.
    """

    def __init__(self, terminal: bool | None = None):
        self.terminal = sys.stdout.isatty() if terminal is None else terminal
        self._status = StatusLine(self.terminal)

    def note(self, text: str) -> None:
        """A line worth keeping, e.g. "ollama serve is up"."""
        self.end_line()
        click.echo(f"      {text}")

    def line(self, text: str) -> None:
        """One line of a long command's output."""
        text = text.rstrip()
        if not text:
            return
        if self.terminal:
            width = 100
            shown = text if len(text) <= width else text[: width - 1] + "…"
            self._status.show(f"      {shown}")
        else:
            click.echo(f"      | {text}")

    def end_line(self) -> None:
        """Finish an overwritten status line before printing something else."""
        self._status.end()


@dataclass
class Step:
    """One thing `up` makes so.

    `check` answers "is it already so?" quickly and without side effects; `apply` makes it
    so and may run for minutes. `commands` and `files` are what `--dry-run` prints.
    """

    description: str
    check: Callable[[], bool]
    apply: Callable[[Progress], None]
    commands: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    fix: str = ""  # what to do when it fails, beyond re-running


@dataclass
class PlanResult:
    """What a run did: the steps it applied and those it found already in place."""

    applied: list[str]
    skipped: list[str]
    dry_run: bool = False


class StepFailed(StackctlError):
    """A step failed: names the step, the command, its stderr tail and a fix."""


class Interrupted(StackctlError):
    """Ctrl-C during a step; the next `up` completes the work."""

    exit_code = ExitCode.INTERRUPTED


def command_step(
    *, description: str, check: Callable[[], bool], argv: Sequence[str], fix: str = ""
) -> Step:
    """A step that runs one command, its output shown as progress; `--dry-run` lists that
    same command."""

    def apply(progress: Progress) -> None:
        proc.stream(argv, on_line=progress.line)

    return Step(description, check, apply, commands=[shlex.join(argv)], fix=fix)


def stdin_is_terminal() -> bool:
    """True when a person can answer a question on stdin."""
    return sys.stdin.isatty()


def _status(done: bool) -> str:
    return "done" if done else "todo"


def print_plan(steps: Sequence[Step], done: Sequence[bool], *, detail: bool) -> None:
    """Print the numbered plan; with `detail`, every command and file of each step."""
    todo = sum(1 for d in done if not d)
    click.echo(f"Plan: {len(steps)} steps, {todo} to do")
    width = len(str(len(steps)))
    for number, (step, is_done) in enumerate(zip(steps, done, strict=True), 1):
        click.echo(f"  {number:>{width}}. [{_status(is_done)}] {step.description}")
        if detail and not is_done:
            for command in step.commands:
                click.echo(f"  {'':>{width}}     $ {command}")
            for path in step.files:
                click.echo(f"  {'':>{width}}     writes {path}")


def confirm(
    question: str, *, yes: bool, what: str = "the plan above", default: bool = True
) -> None:
    """Ask once (unless --yes); with no terminal on stdin, refuse instead of guessing."""
    if yes:
        return
    if not stdin_is_terminal():
        raise StackctlError(
            f"stdin is not a terminal, so stackctl cannot ask before changing this machine: "
            f"re-run with --yes to apply {what}"
        )
    click.confirm(question, default=default, abort=True)


def _failure(number: int, total: int, step: Step, exc: Exception) -> StepFailed:
    head = f"step {number}/{total} failed: {step.description}"
    fix = step.fix
    if isinstance(exc, CommandFailed):
        lines = [head, f"  command: {shlex.join(exc.argv)} (exit code {exc.code})"]
        tail = stderr_tail(exc.stderr)
        if tail:
            lines.append(tail)
        lines.append(f"  fix: {fix + '; then ' if fix else ''}{AGAIN}")
        return StepFailed("\n".join(lines))
    if isinstance(exc, click.ClickException):
        message, fix = exc.format_message(), ""  # our own error already says what to do
    else:
        message = f"{type(exc).__name__}: {exc}"
    lines = [head, *(f"  {line}" for line in message.splitlines())]
    if fix:
        lines.append(f"  fix: {fix}")
    if "stackctl up" not in message and "stackctl up" not in fix:
        lines.append(f"  then {AGAIN}")
    return StepFailed("\n".join(lines))


def run_plan(
    steps: Sequence[Step],
    *,
    yes: bool,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> PlanResult:
    """Print the plan, ask once, then apply each step that is not already done.

    Each step is checked again right before it runs: an earlier step may have made it so.
    """
    done = [step.check() for step in steps]
    print_plan(steps, done, detail=dry_run)
    if dry_run:
        click.echo("Dry run: nothing was changed.")
        return PlanResult([], [s.description for s, d in zip(steps, done, strict=True) if d], True)
    if all(done):
        click.echo("Everything is in place: nothing to do.")
        return PlanResult([], [s.description for s in steps])
    confirm(f"Apply these {sum(not d for d in done)} steps?", yes=yes)
    progress = progress or Progress()
    applied: list[str] = []
    skipped: list[str] = []
    total = len(steps)
    for number, (step, was_done) in enumerate(zip(steps, done, strict=True), 1):
        if was_done:
            skipped.append(step.description)
            continue
        if step.check():  # an earlier step made it so (or it could not be known before)
            click.echo(f"[{number}/{total}] {step.description}: already in place")
            skipped.append(step.description)
            continue
        click.echo(f"[{number}/{total}] {step.description}")
        started = time.monotonic()
        try:
            step.apply(progress)
        except KeyboardInterrupt:
            progress.end_line()
            raise Interrupted(
                f"interrupted during step {number}/{total} ({step.description}): {AGAIN}"
            ) from None
        except (StackctlError, OSError) as exc:
            progress.end_line()
            raise _failure(number, total, step, exc) from exc
        progress.end_line()
        click.echo(f"      done ({time.monotonic() - started:.1f}s)")
        applied.append(step.description)
    return PlanResult(applied, skipped)
