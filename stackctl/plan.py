"""The step engine behind `stackctl up`: show a plan, ask once, apply it.

A `Step` says what it does, how to tell it is already done (`check`), how to do it
(`apply`) and, for `--dry-run`, the exact commands it would run and files it would write.
Every step is idempotent, so an interrupted run (Ctrl-C, a failed command) leaves a state the
next run completes: the checks skip what is already in place.

Steps run in plan order unless they say otherwise: a step waits for the steps named in its
`after` (by key), else for the step before it. Steps whose needs are met run at the same time
(a model download while Open WebUI installs), each in a thread, their progress lines shown
together. When one fails, or on Ctrl-C, the others are stopped (their commands killed) and
the error names the step; everything is left as idempotent steps leave it, so the next run
completes the work.
"""

from __future__ import annotations

import queue
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import click

from stackctl import proc
from stackctl.errors import CommandFailed, ExitCode, StackctlError, stderr_tail

AGAIN = "run `stackctl up` again to finish (steps already done are kept)"


class Stopped(BaseException):
    """Raised inside a step that the plan stops because another step failed or Ctrl-C came.

    A BaseException, like KeyboardInterrupt, so no `except Exception` in a step swallows it."""


class Display:
    """The output of one run, shared by the steps running at the same time.

    On a terminal each running step has one status line, rewritten in place (pip prints
    hundreds of lines), all of them kept at the bottom under the lines worth keeping. In a
    log (no terminal) every line is kept, indented, so CI output shows what happened. While
    several steps run, their lines carry the step's number.
    """

    WIDTH = 100

    def __init__(self, terminal: bool | None = None, total: int = 0):
        self.terminal = sys.stdout.isatty() if terminal is None else terminal
        self.total = total
        self.stop = threading.Event()  # set: every running step stops
        self._lock = threading.RLock()
        self._status: dict[int, str] = {}  # step number -> its status line (terminal)
        self._drawn = 0  # status lines on screen below the kept lines
        self._running: list[int] = []
        self._last_started = 0
        self._children: set[subprocess.Popen] = set()

    def started(self, number: int, header: str) -> None:
        with self._lock:
            self._running.append(number)
            self._last_started = number
            self.echo(header)

    def finished(self, number: int) -> None:
        with self._lock:
            self._running.remove(number)
            self._status.pop(number, None)
            self._redraw()

    def prefix(self, number: int) -> str:
        """`[6/9] ` when the line could be taken for another step's, else nothing."""
        if number and (number != self._last_started or len(self._running) > 1):
            return f"[{number}/{self.total}] "
        return ""

    def echo(self, text: str) -> None:
        """A line to keep, above the status lines."""
        with self._lock:
            self._erase()
            click.echo(text)
            self._draw()

    def status(self, number: int, text: str) -> None:
        """One line of a long command's output (the step's status line on a terminal)."""
        with self._lock:
            if not self.terminal:
                click.echo(f"      {self.prefix(number)}| {text}")
                return
            self._status[number] = text
            self._redraw()

    def clear_status(self, number: int) -> None:
        with self._lock:
            if self._status.pop(number, None) is not None:
                self._redraw()

    def watch(self, child: subprocess.Popen) -> Callable[[], None]:
        """Kill `child` when the plan stops; returns how to stop watching it."""
        with self._lock:
            if self.stop.is_set():
                child.kill()
            self._children.add(child)
        return lambda: self._children.discard(child)

    def stop_all(self) -> None:
        """Ask every running step to stop: their commands are killed, their next line raises."""
        with self._lock:
            self.stop.set()
            for child in list(self._children):
                child.kill()

    def _redraw(self) -> None:
        self._erase()
        self._draw()

    def _erase(self) -> None:
        if self._drawn:
            up = f"\x1b[{self._drawn - 1}F" if self._drawn > 1 else ""
            click.echo(f"\r{up}\x1b[J", nl=False)
            self._drawn = 0

    def _draw(self) -> None:
        if not self.terminal or not self._status:
            return
        lines = []
        for number in sorted(self._status):
            text = f"      {self.prefix(number)}{self._status[number]}"
            lines.append(text if len(text) <= self.WIDTH else text[: self.WIDTH - 1] + "…")
        # the last status line stays open (no newline), so the next kept line replaces it
        click.echo("\n".join(lines), nl=False)
        self._drawn = len(lines)


class Progress:
    """How a step reports what it is doing: a note, or a line of a long command's output;
    `run` runs a command with its output as progress, killed when the plan stops."""

    def __init__(self, terminal: bool | None = None, *, display: Display | None = None,
                 number: int = 0):  # fmt: skip
        self.display = display or Display(terminal)
        self.number = number

    @property
    def terminal(self) -> bool:
        return self.display.terminal

    def for_step(self, number: int) -> Progress:
        """The progress of step `number`, on the same display."""
        return Progress(display=self.display, number=number)

    def check_stopped(self) -> None:
        """Raise Stopped when the plan stops this step (call it in long loops)."""
        if self.display.stop.is_set():
            raise Stopped

    def note(self, text: str) -> None:
        """A line worth keeping, e.g. "ollama serve is up"."""
        self.check_stopped()
        self.display.clear_status(self.number)
        self.display.echo(f"      {self.display.prefix(self.number)}{text}")

    def line(self, text: str) -> None:
        """One line of a long command's output."""
        self.check_stopped()
        text = text.rstrip()
        if text:
            self.display.status(self.number, text)

    def end_line(self) -> None:
        """Finish this step's status line before printing something else."""
        self.display.clear_status(self.number)

    def run(self, argv: Sequence[str], *, env: Mapping[str, str] | None = None) -> None:
        """Run one command, its output shown as progress (stopped with the plan)."""
        self.check_stopped()
        unwatch: list[Callable[[], None]] = []
        try:
            proc.stream(
                argv, on_line=self.line, env=env,
                on_start=lambda child: unwatch.append(self.display.watch(child)),
            )  # fmt: skip
        except CommandFailed:
            self.check_stopped()  # killed because the plan stops: not this command's failure
            raise
        finally:
            for forget in unwatch:
                forget()


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
    key: str = ""  # the name other steps' `after` uses for this one
    # the keys of the steps this one needs done first; None: the step before it in the plan.
    # Keys of steps not in this plan (e.g. no vLLM) are ignored.
    after: tuple[str, ...] | None = None


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
        progress.run(argv)

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


def _failure(
    number: int, total: int, step: Step, exc: Exception, stopped: Sequence[str] = ()
) -> StepFailed:
    head = f"step {number}/{total} failed: {step.description}"
    also = [f"  stopped with it: {what}" for what in stopped]
    fix = step.fix
    if isinstance(exc, CommandFailed):
        lines = [head, *also, f"  command: {shlex.join(exc.argv)} (exit code {exc.code})"]
        tail = stderr_tail(exc.stderr)
        if tail:
            lines.append(tail)
        lines.append(f"  fix: {fix + '; then ' if fix else ''}{AGAIN}")
        return StepFailed("\n".join(lines))
    if isinstance(exc, click.ClickException):
        message, fix = exc.format_message(), ""  # our own error already says what to do
    else:
        message = f"{type(exc).__name__}: {exc}"
    lines = [head, *also, *(f"  {line}" for line in message.splitlines())]
    if fix:
        lines.append(f"  fix: {fix}")
    if "stackctl up" not in message and "stackctl up" not in fix:
        lines.append(f"  then {AGAIN}")
    return StepFailed("\n".join(lines))


def dependencies(steps: Sequence[Step]) -> list[set[int]]:
    """For each step, the indexes of the steps it needs done first (always earlier ones)."""
    index: dict[str, int] = {}
    needs: list[set[int]] = []
    for i, step in enumerate(steps):
        if step.after is None:
            needs.append({i - 1} if i else set())
        else:
            needs.append({index[key] for key in step.after if key in index})
            later = [k for k in step.after if any(s.key == k for s in steps[i:])]
            if later:
                raise ValueError(f"step {step.description!r} comes before {later} it needs")
        if step.key:
            index[step.key] = i
    return needs


class _Runner:
    """Applies the steps not done, each once its needs are done, several at a time."""

    def __init__(self, steps: Sequence[Step], done: Sequence[bool], progress: Progress):
        self.steps = steps
        self.total = len(steps)
        self.needs = dependencies(steps)
        self.display = progress.display
        self.display.total = self.total
        self.progress = progress
        self.finished = {i for i, was_done in enumerate(done) if was_done}
        self.applied: list[int] = []
        self.running: dict[int, float] = {}  # index -> when it started
        self.events: queue.Queue[tuple[int, BaseException | None]] = queue.Queue()
        self._stopped: set[int] = set()  # steps stopped before they finished

    def run(self) -> PlanResult:
        failure: tuple[int, BaseException] | None = None
        interrupted: list[int] | None = None  # the steps running when Ctrl-C came
        try:
            while True:
                if failure is None and interrupted is None:
                    self._start_ready()
                if not self.running:
                    break
                index, error = self._next_event()
                started = self.running.pop(index)
                self.display.finished(index + 1)
                if error is None:
                    self._done(index, started)
                elif isinstance(error, Stopped):
                    continue  # stopped because of the failure or interrupt being handled
                elif failure is None and interrupted is None:
                    if isinstance(error, KeyboardInterrupt):
                        interrupted = [index, *self.running]
                    else:
                        failure = (index, error)
                    self.display.stop_all()
        except KeyboardInterrupt:  # Ctrl-C: stop every running step, wait for them
            interrupted = interrupted if interrupted is not None else list(self.running)
            self.display.stop_all()
            self._drain()
        if interrupted is not None:
            steps = " and ".join(
                f"{i + 1}/{self.total} ({self.steps[i].description})" for i in interrupted
            )
            where = f" during step {steps}" if steps else ""
            raise Interrupted(f"interrupted{where}: {AGAIN}") from None
        if failure is not None:
            index, error = failure
            stopped = [
                f"step {i + 1}/{self.total} ({self.steps[i].description}), unfinished"
                for i in sorted(self._stopped)
            ]
            if isinstance(error, (StackctlError, OSError)):
                raise _failure(index + 1, self.total, self.steps[index], error, stopped) from error
            raise error
        applied = [self.steps[i].description for i in self.applied]
        skipped = [s.description for i, s in enumerate(self.steps) if i not in self.applied]
        return PlanResult(applied, skipped)

    def _start_ready(self) -> None:
        for index, step in enumerate(self.steps):
            if index in self.finished or index in self.running:
                continue
            if not self.needs[index] <= self.finished:
                continue
            number = index + 1
            if step.check():  # an earlier step made it so (or it could not be known before)
                self.display.echo(f"[{number}/{self.total}] {step.description}: already in place")
                self.finished.add(index)
                return self._start_ready()
            self.display.started(number, f"[{number}/{self.total}] {step.description}")
            self.running[index] = time.monotonic()
            worker = threading.Thread(
                target=self._apply, args=(index,), name=f"step-{number}", daemon=True
            )
            worker.start()

    def _apply(self, index: int) -> None:
        try:
            self.steps[index].apply(self.progress.for_step(index + 1))
        except BaseException as error:  # reported to the main thread, which decides
            if isinstance(error, Stopped) or self.display.stop.is_set():
                self._stopped.add(index)
                error = Stopped()
            self.events.put((index, error))
        else:
            self.events.put((index, None))

    def _next_event(self) -> tuple[int, BaseException | None]:
        while True:  # short waits: Ctrl-C reaches the main thread between them
            try:
                return self.events.get(timeout=0.2)
            except queue.Empty:
                continue

    def _drain(self) -> None:
        """Wait until every running step has stopped."""
        while self.running:
            try:
                index, _ = self.events.get(timeout=0.2)
            except queue.Empty:
                continue
            except KeyboardInterrupt:
                continue  # a second Ctrl-C: still let the steps stop cleanly
            self.running.pop(index, None)
            self.display.finished(index + 1)

    def _done(self, index: int, started: float) -> None:
        self.finished.add(index)
        self.applied.append(index)
        took = f"done ({time.monotonic() - started:.1f}s)"
        self.display.echo(f"      {self.display.prefix(index + 1)}{took}")


def run_plan(
    steps: Sequence[Step],
    *,
    yes: bool,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> PlanResult:
    """Print the plan, ask once, then apply each step that is not already done, each as soon
    as the steps it needs are done.

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
    return _Runner(steps, done, progress or Progress()).run()
