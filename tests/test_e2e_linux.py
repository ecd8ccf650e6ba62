"""End to end on Linux: `stackctl up` under a REAL systemd user manager, with fakes only for
what cannot run here (ollama, open-webui, uv/pip/venv, loginctl), then the stack's lifecycle:

up --yes -> status --json all healthy -> kill the proxy -> it comes back -> restart ->
a hanging service makes status exit 3 -> down -> no unit files left -> up again (the venv and
models are kept, only the units come back) -> up once more is a no-op.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from tests.fakes.installer import FakeBin
from tests.ports import free_ports
from tests.systemd_user import SystemdUser

pytestmark = pytest.mark.systemd


def write_config(home: Path, models: str = "[gemma3:1b]") -> tuple[Path, list[int]]:
    """A stack.yaml on free ports (the usual 11434/4000/3000 may be taken on a test box)."""
    ollama, proxy, webui = free_ports(3)
    path = home / ".config/stackctl/stack.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f"models: {models}\n"
        f"ollama: {{port: {ollama}}}\n"
        f"proxy: {{port: {proxy}}}\n"
        f"openwebui: {{port: {webui}}}\n"
    )
    return path, [ollama, proxy, webui]


def status_json(stackctl) -> tuple[int, dict]:
    result = stackctl("status", "--json")
    return result.code, json.loads(result.out)


def wait_healthy(stackctl, timeout: float = 30, proxy_lists: str | None = None) -> dict:
    """Poll `status --json` until the stack is healthy (services restart in the background)
    and, optionally, the proxy lists a model (it caches /v1/models for a few seconds)."""
    deadline = time.monotonic() + timeout
    while True:
        code, data = status_json(stackctl)
        proxy = {row["service"]: row for row in data["services"]}.get("proxy", {})
        if code == 0 and (proxy_lists is None or proxy_lists in proxy.get("models", [])):
            return data
        if time.monotonic() > deadline:
            raise AssertionError(f"the stack never became healthy: {json.dumps(data, indent=2)}")
        time.sleep(0.2)


def commands(fake_bin: FakeBin, *names: str) -> list[list[str]]:
    """Recorded calls as [path it was called by, *argv] (venv wrappers record their path)."""
    path = fake_bin.state / "calls.jsonl"
    entries = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    return [
        [e.get("exe") or e["name"], *e["argv"]] for e in entries if not names or e["name"] in names
    ]


@pytest.fixture
def linux_stack(systemd_user: SystemdUser, fake_bin: FakeBin) -> tuple[SystemdUser, FakeBin]:
    fake_bin.remove("nvidia-smi")  # no NVIDIA GPU: backend auto is Ollama
    fake_bin.scenario(linger="yes")
    return systemd_user, fake_bin


def test_up_status_crash_restart_down_and_up_again(linux_stack, stackctl) -> None:
    systemd_user, fake_bin = linux_stack
    config, (ollama_port, proxy_port, webui_port) = write_config(systemd_user.home)
    paths_home = systemd_user.home
    venv = paths_home / ".local/share/stackctl/venvs/openwebui"

    result = stackctl("up", "--yes")
    assert result.code == 0, result.out + result.err
    assert "Plan: 9 steps, 8 to do" in result.out
    assert commands(fake_bin, "uv", "pip") == [
        [
            "uv",
            "venv",
            "--seed",
            "--clear",
            "--python",
            str(fake_bin.bin / "python3.11"),
            str(venv),
        ],
        ["uv", "pip", "install", "--python", str(venv / "bin/python"), "open-webui"],
    ]
    assert result.out.splitlines()[-7:] == [
        "Your stack is up.",
        f"  Open WebUI:       http://127.0.0.1:{webui_port}",
        "    the first account you create becomes its admin",
        f"  OpenAI base URL:  http://127.0.0.1:{proxy_port}/v1",
        "  API key:          any (the proxy listens on 127.0.0.1 only and needs none)",
        "  Models:           gemma3:1b",
        "Next: `stackctl status` (is it up? why not?), `stackctl logs SERVICE`",
    ]
    units = sorted(p.name for p in systemd_user.unit_dir.glob("*") if p.is_file())
    assert units == [
        "stackctl-ollama.service",
        "stackctl-openwebui.service",
        "stackctl-proxy.service",
        "stackctl.target",
    ]
    secrets = paths_home / ".config/stackctl/secrets.env"
    assert secrets.stat().st_mode & 0o777 == 0o600
    webui_calls = [
        json.loads(line)
        for line in (fake_bin.state / "calls.jsonl").read_text().splitlines()
        if json.loads(line)["name"] == "open-webui"
    ]
    assert webui_calls[-1]["env_set"]["WEBUI_SECRET_KEY"] is True  # via EnvironmentFile=
    assert webui_calls[-1]["env"]["OPENAI_API_BASE_URLS"] == f"http://127.0.0.1:{proxy_port}/v1"

    code, data = status_json(stackctl)
    assert code == 0 and data["healthy"] is True
    rows = {row["service"]: row for row in data["services"]}
    assert list(rows) == ["ollama", "proxy", "openwebui"]
    assert all(row["state"] == "active" and row["health"] == "ok" for row in rows.values())
    assert rows["ollama"]["models"] == ["gemma3:1b"] and rows["proxy"]["models"] == ["gemma3:1b"]
    assert rows["openwebui"]["version"] == "0.6.5" and rows["ollama"]["port"] == ollama_port

    # the proxy crashes: systemd brings it back
    proxy_pid = systemd_user.main_pid("stackctl-proxy.service")
    os.kill(proxy_pid, signal.SIGKILL)
    systemd_user.wait_for(
        "stackctl-proxy.service",
        lambda s: s["ActiveState"] == "active" and s["MainPID"] not in ("0", str(proxy_pid)),
    )
    data = wait_healthy(stackctl)
    assert {row["service"]: row for row in data["services"]}["proxy"]["restarts"] >= 1

    before = {name: systemd_user.main_pid(f"stackctl-{name}.service") for name in rows}
    result = stackctl("restart")
    assert result.code == 0, result.err
    assert result.out.startswith("restarted: ollama, proxy, openwebui\n")
    assert result.out.endswith("healthy: ollama, proxy, openwebui\n")
    after = {name: systemd_user.main_pid(f"stackctl-{name}.service") for name in rows}
    assert all(after[name] != before[name] for name in rows)
    wait_healthy(stackctl)

    # Open WebUI hangs: status says degraded (exit 3) instead of hanging with it
    fake_bin.scenario(openwebui_hang=True)
    result = stackctl("status")
    assert result.code == 3
    assert "no answer (timed out)" in result.out and result.out.endswith("degraded\n")
    fake_bin.scenario(openwebui_hang=False)

    result = stackctl("down")
    assert result.code == 0
    assert sorted(systemd_user.unit_dir.rglob("*")) == []
    assert config.exists() and (venv / "bin/open-webui").exists() and secrets.exists()
    code, data = status_json(stackctl)
    assert code == 1 and data["message"] == "the stack is not installed: run `stackctl up`"

    fake_bin.clear_calls()
    result = stackctl("up", "--yes")
    assert result.code == 0, result.out + result.err
    # Ollama, the units and the health wait; whether Ollama has the model is known once it runs
    assert "Plan: 9 steps, 4 to do" in result.out  # Ollama's unit is started first again
    assert "[5/9] Pull gemma3:1b into Ollama: already in place" in result.out
    assert commands(fake_bin, "uv", "pip") == []
    wait_healthy(stackctl)

    fake_bin.clear_calls()
    result = stackctl("up", "--yes")
    assert result.code == 0
    assert "Everything is in place: nothing to do." in result.out
    assert commands(fake_bin, "uv", "pip", "python3.11", "ollama", "open-webui") == [
        c for c in commands(fake_bin, "python3.11", "ollama") if c[1:2] in (["-c"], ["--version"])
    ]


def test_a_service_that_crash_loops_after_a_config_change_fails_up_start_and_restart(
    linux_stack, stackctl, monkeypatch: pytest.MonkeyPatch
) -> None:
    """up waits for every service its run restarted, however healthy the stack was before;
    a crash loop fails up (and restart) naming the service, its log lines and a fix."""
    systemd_user, fake_bin = linux_stack
    monkeypatch.setenv("STACKCTL_HEALTH_BUDGET", "60")
    config, (_, _, webui_port) = write_config(systemd_user.home)
    assert stackctl("up", "--yes").code == 0
    wait_healthy(stackctl)

    # a setting Open WebUI cannot start with: its unit changes, up restarts it, it crashes
    fake_bin.scenario(openwebui_exit=True)
    text = config.read_text().replace(
        f"openwebui: {{port: {webui_port}}}",
        f"openwebui: {{port: {webui_port}, env: {{WEBUI_AUTH: not-a-bool}}}}",
    )
    config.write_text(text)
    started = time.monotonic()
    result = stackctl("up", "--yes")
    assert result.code == 1, result.out
    assert "Your stack is up." not in result.out
    assert "step 9/9 failed: Wait until every service answers its health check" in result.err
    assert "  Open WebUI stopped: it keeps crashing (restarted 3 times while waiting)" in (
        result.err
    )
    assert "    its last log lines:" in result.err
    assert "open-webui: fake start failure" in result.err
    assert (
        "  fix: `stackctl logs openwebui` shows why; correct what it shows (often a "
        f"setting in {config}), then run `stackctl up` again" in result.err
    )
    assert time.monotonic() - started < 45  # stopped early, not at the end of its budget

    result = stackctl("restart", "openwebui")
    assert result.code == 1 and result.out.startswith("restarted: openwebui\n")
    assert "Error: Open WebUI stopped: " in result.err
    assert "then `stackctl restart openwebui`" in result.err
    assert stackctl("restart", "--no-wait", "openwebui").code == 0

    fake_bin.scenario(openwebui_exit=False)
    result = stackctl("start", "openwebui")
    assert result.code == 0, result.err
    assert result.out.endswith("healthy: openwebui\n")
