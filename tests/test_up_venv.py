"""The Open WebUI and vLLM venvs: made with uv (from a Python that fits, or a managed 3.12 it
fetches), or with pip (`--installer pip`, and when a uv command fails); `--upgrade` through
both. Exact argv from the fakes (tests/fakes/bin/uv is as strict as uv 0.13.9)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stackctl.config import Config
from stackctl.plan import Step, run_plan
from stackctl.setup import UpOptions, resolve_context
from stackctl.setup.openwebui import openwebui_steps
from tests.fakes.installer import FakeBin


@pytest.fixture
def cpu_box(fake_bin: FakeBin) -> FakeBin:
    fake_bin.remove("nvidia-smi")
    fake_bin.scenario(linger="yes")
    return fake_bin


def webui_steps(**options: object) -> tuple[list[Step], Path]:
    ctx = resolve_context(Config(), Path("/nonexistent/stack.yaml"), UpOptions(**options))
    return openwebui_steps(ctx), ctx.paths.openwebui_venv


def calls(fake_bin: FakeBin) -> list[list[str]]:
    """uv, pip and `python -m` calls, each as [the path it was called by, *argv]."""
    path = fake_bin.state / "calls.jsonl"
    entries = [json.loads(line) for line in path.read_text().splitlines()]
    return [
        [e.get("exe") or e["name"], *e["argv"]]
        for e in entries
        if e["name"] in ("uv", "pip") or (e["name"].startswith("python") and e["argv"][0] == "-m")
    ]


def test_uv_makes_the_venv_from_the_python_found_and_installs(
    cpu_box: FakeBin, capsys: pytest.CaptureFixture
) -> None:
    steps, venv = webui_steps()
    python = str(cpu_box.bin / "python3.11")
    assert [(s.description, s.commands) for s in steps] == [
        (
            f"Create Open WebUI's venv {venv}",
            [f"{cpu_box.bin}/uv venv --seed --clear --python {python} {venv}"],
        ),
        (
            "Install Open WebUI into its venv (uv; about a minute)",
            [f"{cpu_box.bin}/uv pip install --python {venv}/bin/python open-webui"],
        ),
    ]
    run_plan(steps, yes=True)
    assert calls(cpu_box) == [
        ["uv", "venv", "--seed", "--clear", "--python", python, str(venv)],
        ["uv", "pip", "install", "--python", str(venv / "bin/python"), "open-webui"],
    ]
    out = capsys.readouterr().out
    assert "      |  + open-webui==1.0\n" in out  # uv's output is the progress display
    assert (venv / "bin/open-webui").exists() and (venv / "bin/pip").exists()  # --seed: pip


def test_an_interrupted_venv_is_made_again_with_clear(cpu_box: FakeBin) -> None:
    """uv refuses a directory holding a venv without --clear; a venv without pip (the last
    thing `uv venv --seed` writes) was interrupted, and the step runs again."""
    steps, venv = webui_steps()
    run_plan(steps, yes=True)
    (venv / "bin/pip").unlink()
    cpu_box.clear_calls()
    run_plan(steps, yes=True)
    assert calls(cpu_box)[0][:4] == ["uv", "venv", "--seed", "--clear"]
    assert (venv / "bin/pip").exists()


def test_upgrade_goes_through_uv(cpu_box: FakeBin) -> None:
    steps, venv = webui_steps()
    run_plan(steps, yes=True)
    cpu_box.clear_calls()
    upgraded, _ = webui_steps(upgrade=True)
    result = run_plan(upgraded, yes=True)
    assert result.applied == ["Install Open WebUI into its venv (uv; about a minute)"]
    assert calls(cpu_box) == [
        ["uv", "pip", "install", "--python", str(venv / "bin/python"), "--upgrade", "open-webui"]
    ]


def test_installer_pip_uses_python_m_venv_and_the_venvs_pip(cpu_box: FakeBin) -> None:
    steps, venv = webui_steps(installer="pip", upgrade=True)
    python = str(cpu_box.bin / "python3.11")
    assert [s.description for s in steps][1] == (
        "Install Open WebUI into its venv (pip; takes a few minutes)"
    )
    assert [s.commands for s in steps] == [
        [f"{python} -m venv {venv}"],
        [f"{venv}/bin/pip install --upgrade open-webui"],
    ]
    run_plan(steps, yes=True)
    assert calls(cpu_box) == [
        [python, "-m", "venv", str(venv)],
        [str(venv / "bin/pip"), "install", "--upgrade", "open-webui"],
    ]


def test_a_failing_uv_install_falls_back_to_pip(
    cpu_box: FakeBin, capsys: pytest.CaptureFixture
) -> None:
    cpu_box.scenario(uv_fail={"open-webui": "error: Failed to download `torch==2.8.0`"})
    steps, venv = webui_steps()
    result = run_plan(steps, yes=True)
    assert len(result.applied) == 2
    assert calls(cpu_box)[1:] == [
        ["uv", "pip", "install", "--python", str(venv / "bin/python"), "open-webui"],
        [str(venv / "bin/pip"), "install", "open-webui"],
    ]
    assert (
        "      uv failed (exit code 1: error: Failed to download `torch==2.8.0`); using pip\n"
        in capsys.readouterr().out
    )
    assert (venv / "bin/open-webui").exists()


def test_when_pip_fails_too_the_error_names_the_step_and_pips_command(
    cpu_box: FakeBin,
) -> None:
    from stackctl.plan import StepFailed

    cpu_box.scenario(
        uv_fail={"open-webui": "error: No solution found when resolving dependencies"},
        pip_fail={"open-webui": "ERROR: No matching distribution found for open-webui"},
    )
    steps, venv = webui_steps()
    with pytest.raises(StepFailed) as failed:
        run_plan(steps, yes=True)
    assert failed.value.message == (
        "step 2/2 failed: Install Open WebUI into its venv (uv; about a minute)\n"
        f"  command: {venv}/bin/pip install open-webui (exit code 1)\n"
        "    Collecting open-webui\n"
        "      Downloading open_webui-1.0-py3-none-any.whl (120.4 MB)\n"
        "    ERROR: No matching distribution found for open-webui\n"
        "  fix: check the network (the packages come from PyPI); then run `stackctl up` again "
        "to finish (steps already done are kept)"
    )


def no_python(fake_bin: FakeBin, monkeypatch: pytest.MonkeyPatch) -> None:
    """No Python 3.11/3.12 anywhere: only the fakes on PATH, without theirs."""
    monkeypatch.setenv("PATH", str(fake_bin.bin))
    fake_bin.remove("python3.11")
    fake_bin.remove("python3.12")


def test_no_python_that_fits_uv_fetches_a_managed_312(
    cpu_box: FakeBin, monkeypatch: pytest.MonkeyPatch
) -> None:
    no_python(cpu_box, monkeypatch)
    steps, venv = webui_steps()
    managed = venv.parent.parent / "python"
    assert steps[0].description.endswith(" (uv fetches Python 3.12: none here fits)")
    assert steps[0].commands == [
        f"UV_PYTHON_INSTALL_DIR={managed} {cpu_box.bin}/uv venv --seed --clear --python 3.12 {venv}"
    ]
    run_plan(steps, yes=True)
    assert (managed / "cpython-3.12.4-linux-x86_64-gnu/bin/python3.12").exists()
    assert (venv / "bin/open-webui").exists()


def test_a_failed_python_download_with_no_python_to_fall_back_on(
    cpu_box: FakeBin, monkeypatch: pytest.MonkeyPatch
) -> None:
    from stackctl.plan import StepFailed

    no_python(cpu_box, monkeypatch)
    cpu_box.scenario(python_downloads="fail")
    steps, venv = webui_steps()
    with pytest.raises(StepFailed) as failed:
        run_plan(steps, yes=True)
    message = failed.value.message
    assert message.startswith(
        f"step 1/2 failed: Create Open WebUI's venv {venv} (uv fetches Python 3.12: none here "
        f"fits)\n  command: {cpu_box.bin}/uv venv --seed --clear --python 3.12 {venv} "
        "(exit code 2)\n"
    )
    assert "    error: Request failed after 3 retries in 10.7s\n" in message
    assert message.endswith(
        "  fix: check the network (uv downloads CPython 3.12 builds from GitHub), or install a "
        "Python 3.11 or 3.12 for uv to use; then run `stackctl up` again to finish (steps "
        "already done are kept)"
    )


def test_a_uv_that_cannot_run_falls_back_to_pip_for_both_steps(
    cpu_box: FakeBin, capsys: pytest.CaptureFixture
) -> None:
    steps, venv = webui_steps()
    (cpu_box.bin / "uv").unlink()  # gone after the plan was made (exit 127 when run)
    run_plan(steps, yes=True)
    assert calls(cpu_box) == [
        [str(cpu_box.bin / "python3.11"), "-m", "venv", str(venv)],
        [str(venv / "bin/pip"), "install", "open-webui"],
    ]
    out = capsys.readouterr().out
    assert (
        out.count(f"uv failed (exit code 127: {cpu_box.bin}/uv: command not found); using pip") == 2
    )


def test_without_any_uv_pip_is_used(cpu_box: FakeBin) -> None:
    cpu_box.remove("uv")
    steps, venv = webui_steps()
    assert steps[1].description == "Install Open WebUI into its venv (pip; takes a few minutes)"
    assert steps[0].commands == [f"{cpu_box.bin}/python3.11 -m venv {venv}"]
