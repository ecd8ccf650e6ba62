"""`stackctl up` interrupted after each step in turn (Ctrl-C), or failing in one (also while
the model download runs beside the Open WebUI install), then run again: it always converges
to a healthy stack. Under the real systemd user manager."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

import stackctl.setup.steps as setup_package
from stackctl.plan import Progress
from tests.fakes.installer import FakeBin
from tests.fakes.ollama_state import State
from tests.ports import free_ports

pytestmark = pytest.mark.systemd


def write_config(home: Path) -> None:
    ollama, proxy, webui = free_ports(3)
    path = home / ".config/stackctl/stack.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f"models: [gemma3:1b]\nollama: {{port: {ollama}}}\n"
        # a short model-list cache: each run waits until the proxy lists the pulled model
        f"proxy: {{port: {proxy}, models_cache_seconds: 0.5}}\n"
        f"openwebui: {{port: {webui}}}\n"
    )


def fresh_machine(fake_bin: FakeBin, home: Path, stackctl) -> None:
    """Nothing of the stack left: units, data, config, pulled models; linger off."""
    assert stackctl("down", "--purge", "--yes").code == 0
    (fake_bin.state / "ollama" / "models.json").unlink(missing_ok=True)
    fake_bin.scenario(linger="no")
    write_config(home)


def interrupt_after_step(monkeypatch: pytest.MonkeyPatch, index: int) -> None:
    """Make step `index` raise KeyboardInterrupt right after it did its work (Ctrl-C)."""
    original = setup_package.build_steps

    def build_steps(ctx):
        steps = original(ctx)
        step = steps[index]
        apply = step.apply

        def apply_then_interrupt(progress: Progress) -> None:
            apply(progress)
            raise KeyboardInterrupt

        step.apply = apply_then_interrupt
        return steps

    monkeypatch.setattr(setup_package, "build_steps", build_steps)


def test_interrupted_after_each_step_then_rerun_converges(
    systemd_user, fake_bin: FakeBin, monkeypatch: pytest.MonkeyPatch, stackctl
) -> None:
    fake_bin.remove("nvidia-smi")
    write_config(systemd_user.home)
    plan = stackctl("up", "--dry-run")
    descriptions = re.findall(r"^ +\d+\. \[(?:todo|done)\] (.+)$", plan.out, re.M)
    total = len(descriptions)
    # config, dirs, linger, secrets, Ollama, pull | venv, install, units, health
    assert total == 10
    for index in range(1, total):  # the config step is done: the test wrote stack.yaml
        fresh_machine(fake_bin, systemd_user.home, stackctl)
        with monkeypatch.context() as patch:
            interrupt_after_step(patch, index)
            interrupted = stackctl("up", "--yes")
        assert interrupted.code == 130, interrupted.out + interrupted.err
        # the step interrupted first, then any that ran beside it (the pull, the install)
        assert interrupted.err.startswith(
            f"Error: interrupted during step {index + 1}/{total} ({descriptions[index]})"
        )
        assert interrupted.err.endswith(
            ": run `stackctl up` again to finish (steps already done are kept)\n"
        )
        again = stackctl("up", "--yes")
        assert again.code == 0, again.out + again.err
        # what was done before the interrupt is not done again
        applied = re.findall(r"^\[\d+/\d+\] (.+)$", again.out, re.M)
        assert descriptions[index] not in applied
        status = stackctl("status", "--json")
        assert status.code == 0, status.out
        assert json.loads(status.out)["healthy"] is True
        assert "Everything is in place: nothing to do." in stackctl("up", "--yes").out


def test_a_failed_step_then_rerun_converges(systemd_user, fake_bin: FakeBin, stackctl) -> None:
    fake_bin.remove("nvidia-smi")
    fake_bin.scenario(
        linger="yes",
        uv_fail={"open-webui": "error: Failed to download `torch==2.8.0`"},
        pip_fail={"open-webui": "ERROR: Could not find a version that satisfies the requirement"},
    )
    write_config(systemd_user.home)
    State(fake_bin.state / "ollama").install("gemma3:1b")  # no pull running beside the install
    venv = systemd_user.home / ".local/share/stackctl/venvs/openwebui"
    failed = stackctl("up", "--yes")
    assert failed.code == 1
    assert failed.err == (
        "Error: step 7/9 failed: Install Open WebUI into its venv (uv; about a minute)\n"
        f"  command: {venv}/bin/pip install open-webui (exit code 1)\n"
        "    Collecting open-webui\n"
        "      Downloading open_webui-1.0-py3-none-any.whl (120.4 MB)\n"
        "    ERROR: Could not find a version that satisfies the requirement\n"
        "  fix: check the network (the packages come from PyPI); then run `stackctl up` again "
        "to finish (steps already done are kept)\n"
    )
    assert (
        "uv failed (exit code 1: error: Failed to download `torch==2.8.0`); using pip\n"
        in failed.out
    )
    fake_bin.scenario(uv_fail={}, pip_fail={})
    again = stackctl("up", "--yes")
    assert again.code == 0, again.out + again.err
    assert "Plan: 9 steps, 3 to do" in again.out  # install, units, health
    assert stackctl("status").code == 0


def test_the_pull_overlaps_the_open_webui_install_a_failure_stops_it_and_rerun_converges(
    systemd_user, fake_bin: FakeBin, stackctl
) -> None:
    """Once Ollama answers, the model downloads while Open WebUI installs: when the install
    fails, the download is stopped and named; the next `up` does both, side by side."""
    fake_bin.remove("nvidia-smi")
    fake_bin.scenario(
        linger="yes",
        uv_fail={"open-webui": "error: Failed to download `torch==2.8.0`"},
        pip_fail={"open-webui": "ERROR: Could not find a version that satisfies the requirement"},
    )
    ollama = State(fake_bin.state / "ollama")
    ollama.set_behaviour(pull_seconds=60)
    write_config(systemd_user.home)
    started = time.monotonic()
    failed = stackctl("up", "--yes")
    assert failed.code == 1
    assert time.monotonic() - started < 45  # the 60 s download was stopped, not waited for
    assert failed.err.startswith(
        "Error: step 7/9 failed: Install Open WebUI into its venv (uv; about a minute)\n"
        "  stopped with it: step 5/9 (Pull gemma3:1b into Ollama), unfinished\n"
        "  command: "
    )
    assert ollama.find("gemma3:1b") is None

    fake_bin.scenario(uv_fail={}, pip_fail={}, install_seconds=4)
    ollama.set_behaviour(pull_seconds=6)
    again = stackctl("up", "--yes")
    assert again.code == 0, again.out + again.err
    assert "Plan: 9 steps, 4 to do" in again.out  # pull, install, units, health
    # both progress lines at once: each carries its step's number while the other runs
    assert re.search(r"^      \[5/9\] \| gemma3:1b \[#*-+\]", again.out, re.M)
    assert "      [7/9] | Downloading open-webui" in again.out
    assert json.loads(stackctl("status", "--json").out)["healthy"] is True
    assert "Everything is in place: nothing to do." in stackctl("up", "--yes").out
