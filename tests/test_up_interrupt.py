"""`stackctl up` interrupted after each step in turn (Ctrl-C), or failing in one, then run
again: it always converges to a healthy stack. Under the real systemd user manager."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import stackctl.setup.steps as setup_package
from stackctl.plan import Progress
from tests.fakes.installer import FakeBin
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
    assert total == 9  # config, dirs, linger, secrets, venv, pip, units, health, pull
    for index in range(1, total):  # the config step is done: the test wrote stack.yaml
        fresh_machine(fake_bin, systemd_user.home, stackctl)
        with monkeypatch.context() as patch:
            interrupt_after_step(patch, index)
            interrupted = stackctl("up", "--yes")
        assert interrupted.code == 130, interrupted.out + interrupted.err
        assert interrupted.err == (
            f"Error: interrupted during step {index + 1}/{total} ({descriptions[index]}): run "
            "`stackctl up` again to finish (steps already done are kept)\n"
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
        pip_fail={"open-webui": "ERROR: Could not find a version that satisfies the requirement"},
    )
    write_config(systemd_user.home)
    venv = systemd_user.home / ".local/share/stackctl/venvs/openwebui"
    failed = stackctl("up", "--yes")
    assert failed.code == 1
    assert failed.err == (
        "Error: step 5/8 failed: Install Open WebUI into its venv (pip; takes a few minutes)\n"
        f"  command: {venv}/bin/pip install open-webui (exit code 1)\n"
        "    Collecting open-webui\n"
        "      Downloading open_webui-1.0-py3-none-any.whl (120.4 MB)\n"
        "    ERROR: Could not find a version that satisfies the requirement\n"
        "  fix: check the network (pip downloads from PyPI); then run `stackctl up` again to "
        "finish (steps already done are kept)\n"
    )
    fake_bin.scenario(pip_fail={})
    again = stackctl("up", "--yes")
    assert again.code == 0, again.out + again.err
    assert "Plan: 8 steps, 4 to do" in again.out
    assert stackctl("status").code == 0
