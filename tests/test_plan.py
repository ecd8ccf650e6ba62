"""The step engine: plan, ask once, apply, skip what is done, fail and interrupt clearly;
steps whose needs are met run at the same time, and a failure or Ctrl-C stops them all."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from stackctl import plan
from stackctl.errors import CommandFailed, StackctlError
from stackctl.plan import Interrupted, Progress, Step, StepFailed, run_plan


class World:
    """A tiny world of facts the steps make true."""

    def __init__(self, *done: str):
        self.facts = set(done)
        self.applied: list[str] = []

    def step(self, name: str, *, fails: Exception | None = None, fix: str = "") -> Step:
        def apply(progress: Progress) -> None:
            self.applied.append(name)
            if fails is not None:
                raise fails
            progress.line(f"working on {name}")
            self.facts.add(name)

        return Step(
            description=f"make {name}",
            check=lambda: name in self.facts,
            apply=apply,
            commands=[f"make-{name} --now"],
            files=[f"/etc/{name}.conf"],
            fix=fix,
        )


def test_applies_only_what_is_not_done_and_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    world = World("a")
    steps = [world.step("a"), world.step("b"), world.step("c")]
    result = run_plan(steps, yes=True, progress=Progress(terminal=False))
    assert world.applied == ["b", "c"]
    assert result.applied == ["make b", "make c"]
    assert result.skipped == ["make a"]
    out = capsys.readouterr().out
    assert (
        "Plan: 3 steps, 2 to do\n  1. [done] make a\n  2. [todo] make b\n  3. [todo] make c\n"
        in out
    )
    assert "[2/3] make b\n      | working on b\n      done (" in out


def test_rerun_with_everything_in_place_applies_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    world = World("a", "b")
    result = run_plan([world.step("a"), world.step("b")], yes=False)
    assert world.applied == [] and result.applied == []
    assert capsys.readouterr().out.endswith("Everything is in place: nothing to do.\n")


def test_dry_run_prints_commands_and_files_and_changes_nothing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    world = World("a")
    result = run_plan([world.step("a"), world.step("b")], yes=False, dry_run=True)
    assert world.applied == [] and result.dry_run
    assert capsys.readouterr().out == (
        "Plan: 2 steps, 1 to do\n"
        "  1. [done] make a\n"
        "  2. [todo] make b\n"
        "        $ make-b --now\n"
        "        writes /etc/b.conf\n"
        "Dry run: nothing was changed.\n"
    )


def test_without_a_terminal_it_refuses_unless_yes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plan, "stdin_is_terminal", lambda: False)
    world = World()
    with pytest.raises(StackctlError) as err:
        run_plan([world.step("a")], yes=False)
    assert err.value.format_message() == (
        "stdin is not a terminal, so stackctl cannot ask before changing this machine: "
        "re-run with --yes to apply the plan above"
    )
    assert world.applied == []


def test_asks_once_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plan, "stdin_is_terminal", lambda: True)
    asked: list[str] = []
    monkeypatch.setattr(plan.click, "confirm", lambda text, **kw: asked.append(text))
    world = World()
    run_plan([world.step("a"), world.step("b")], yes=False, progress=Progress(terminal=False))
    assert asked == ["Apply these 2 steps?"] and world.applied == ["a", "b"]


def test_a_step_made_true_by_an_earlier_one_is_skipped(capsys: pytest.CaptureFixture[str]) -> None:
    world = World()
    first = world.step("a")
    original = first.apply

    def apply_both(progress: Progress) -> None:
        original(progress)
        world.facts.add("b")

    first.apply = apply_both
    result = run_plan([first, world.step("b")], yes=True, progress=Progress(terminal=False))
    assert world.applied == ["a"] and result.skipped == ["make b"]
    assert capsys.readouterr().out.endswith("[2/2] make b: already in place\n")


def test_failed_command_names_the_step_command_stderr_and_fix() -> None:
    world = World()
    failure = CommandFailed(
        ["pip", "install", "open-webui"], 1, "Collecting x\nERROR: no network\n"
    )
    steps = [world.step("a"), world.step("b", fails=failure, fix="check the network")]
    with pytest.raises(StepFailed) as err:
        run_plan(steps, yes=True, progress=Progress(terminal=False))
    assert err.value.format_message() == (
        "step 2/2 failed: make b\n"
        "  command: pip install open-webui (exit code 1)\n"
        "    Collecting x\n"
        "    ERROR: no network\n"
        "  fix: check the network; then run `stackctl up` again to finish "
        "(steps already done are kept)"
    )
    assert "a" in world.facts


def test_failed_step_without_a_command_says_what_and_how_to_go_on() -> None:
    world = World()
    steps = [world.step("a", fails=StackctlError("the disk is full"))]
    with pytest.raises(StepFailed) as err:
        run_plan(steps, yes=True, progress=Progress(terminal=False))
    assert err.value.format_message() == (
        "step 1/1 failed: make a\n"
        "  the disk is full\n"
        "  then run `stackctl up` again to finish (steps already done are kept)"
    )


def test_interrupt_then_rerun_converges() -> None:
    world = World()
    steps = [world.step(name) for name in "abc"]
    original = steps[1].apply

    def interrupted(progress: Progress) -> None:
        original(progress)
        raise KeyboardInterrupt

    steps[1].apply = interrupted
    with pytest.raises(Interrupted) as err:
        run_plan(steps, yes=True, progress=Progress(terminal=False))
    assert err.value.exit_code == 130
    assert err.value.format_message() == (
        "interrupted during step 2/3 (make b): run `stackctl up` again to finish "
        "(steps already done are kept)"
    )
    steps[1].apply = original
    world.applied.clear()
    run_plan(steps, yes=True, progress=Progress(terminal=False))
    assert world.applied == ["c"] and world.facts == {"a", "b", "c"}


# --- steps that run at the same time ------------------------------------------------------


def test_steps_whose_needs_are_met_run_at_the_same_time(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """b and c both need only a: c can finish only while b is running (b waits for c's
    signal), so a plan that ran them one after the other would fail."""
    world = World()
    c_ran = threading.Event()
    a = world.step("a")
    a.key = "a"

    def apply_b(progress: Progress) -> None:
        progress.line("b waits for c")
        assert c_ran.wait(timeout=10), "c did not run while b was running"
        progress.line("b saw c")
        world.facts.add("b")

    def apply_c(progress: Progress) -> None:
        progress.line("c runs")
        world.facts.add("c")
        c_ran.set()

    b = Step("make b", lambda: "b" in world.facts, apply_b, after=("a",))
    c = Step("make c", lambda: "c" in world.facts, apply_c, after=("a",))
    result = run_plan([a, b, c], yes=True, progress=Progress(terminal=False))
    assert sorted(result.applied) == ["make a", "make b", "make c"]
    out = capsys.readouterr().out
    # while both run, each line says whose it is
    assert "| b waits for c\n" in out  # ([2/3] first when c had started by then)
    assert "[3/3] make c\n" in out and "      [3/3] | c runs\n" in out
    assert "      [2/3] | b saw c\n" in out and "      [2/3] done (" in out


def test_a_failure_stops_the_step_running_beside_it_and_names_both() -> None:
    world = World()
    a = world.step("a")
    a.key = "a"
    failure = CommandFailed(["uv", "pip", "install", "open-webui"], 1, "error: no network\n")

    def apply_b(progress: Progress) -> None:
        time.sleep(0.3)  # c's command is running by now
        raise failure

    def apply_c(progress: Progress) -> None:
        progress.run(["sleep", "30"])  # killed when b fails
        world.facts.add("c")

    b = Step("install b", lambda: False, apply_b, after=("a",), fix="check the network")
    c = Step("download c", lambda: "c" in world.facts, apply_c, after=("a",))
    started = time.monotonic()
    with pytest.raises(StepFailed) as err:
        run_plan([a, b, c], yes=True, progress=Progress(terminal=False))
    assert time.monotonic() - started < 10  # c's `sleep 30` was killed, not waited for
    assert err.value.format_message() == (
        "step 2/3 failed: install b\n"
        "  stopped with it: step 3/3 (download c), unfinished\n"
        "  command: uv pip install open-webui (exit code 1)\n"
        "    error: no network\n"
        "  fix: check the network; then run `stackctl up` again to finish "
        "(steps already done are kept)"
    )
    assert world.facts == {"a"}


def test_ctrl_c_stops_every_running_step_and_the_rerun_converges() -> None:
    world = World()
    a = world.step("a")
    a.key = "a"

    def long_step(name: str) -> Step:
        def apply(progress: Progress) -> None:
            progress.run(["sleep", "30"])
            world.facts.add(name)

        return Step(f"make {name}", lambda: name in world.facts, apply, after=("a",))

    b, c = long_step("b"), long_step("c")
    ctrl_c = threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGINT))
    ctrl_c.start()
    started = time.monotonic()
    with pytest.raises(Interrupted) as err:
        run_plan([a, b, c], yes=True, progress=Progress(terminal=False))
    assert time.monotonic() - started < 10
    assert err.value.format_message() == (
        "interrupted during step 2/3 (make b) and 3/3 (make c): run `stackctl up` again to "
        "finish (steps already done are kept)"
    )
    assert world.facts == {"a"}
    world.applied.clear()
    for step in (b, c):
        step.apply = lambda progress, name=step.description[-1]: world.facts.add(name)
    result = run_plan([a, b, c], yes=True, progress=Progress(terminal=False))
    assert result.applied == ["make b", "make c"] and world.facts == {"a", "b", "c"}


def test_dry_run_lists_concurrent_steps_like_any_other(
    capsys: pytest.CaptureFixture[str],
) -> None:
    world = World()
    a, b, c = world.step("a"), world.step("b"), world.step("c")
    a.key, b.after, c.after = "a", ("a",), ("a",)
    run_plan([a, b, c], yes=True, dry_run=True)
    assert capsys.readouterr().out == (
        "Plan: 3 steps, 3 to do\n"
        + "".join(
            f"  {n}. [todo] make {x}\n        $ make-{x} --now\n        writes /etc/{x}.conf\n"
            for n, x in enumerate("abc", 1)
        )
        + "Dry run: nothing was changed.\n"
    )
    assert world.applied == []


def test_a_step_can_only_wait_for_earlier_steps() -> None:
    world = World()
    a, b = world.step("a"), world.step("b")
    a.after, b.key = ("b",), "b"
    with pytest.raises(ValueError, match="comes before"):
        plan.dependencies([a, b])
    assert plan.dependencies([b, world.step("c")]) == [set(), {0}]


def test_on_a_terminal_each_running_step_keeps_its_own_status_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    display = plan.Display(terminal=True, total=3)
    display.started(2, "[2/3] pull")
    display.started(3, "[3/3] install")
    first, second = Progress(display=display, number=2), Progress(display=display, number=3)
    first.line("gemma3:12b [####----]  50%")
    second.line("Resolved 120 packages")
    out = capsys.readouterr().out
    # the two status lines are on screen together, the older one above
    assert out.endswith("      [2/3] gemma3:12b [####----]  50%\n      [3/3] Resolved 120 packages")
    first.note("gemma3:12b: pulled")  # a kept line goes above the status lines
    out = capsys.readouterr().out  # (click drops the cursor moves when stdout is no terminal)
    assert out.endswith("      [2/3] gemma3:12b: pulled\n      [3/3] Resolved 120 packages")
