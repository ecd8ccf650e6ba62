"""The step engine: plan, ask once, apply, skip what is done, fail and interrupt clearly."""

from __future__ import annotations

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
