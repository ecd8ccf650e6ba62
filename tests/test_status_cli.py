"""`stackctl status` and `stackctl models` as people see them: the table, the hints, the JSON,
--watch, and the exit codes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from stackctl.commands.status_cmd import render_status
from stackctl.status import ServiceRow, StackStatus
from tests.fakes.ollama_api import FakeOllama


def row(service: str, **changes) -> ServiceRow:
    values = dict(
        service=service,
        unit=f"stackctl-{service}.service",
        state="active",
        pid=4242,
        uptime_seconds=3725.0,
        restarts=0,
        port=11434,
        url="http://127.0.0.1:11434",
        healthy=True,
        health="ok",
        latency_ms=3.2,
        version="0.12.10",
        models=["gemma3:1b"],
    )
    values.update(changes)
    return ServiceRow(**values)


def down_row(service: str, state: str, sub_state: str, restarts: int) -> ServiceRow:
    return row(
        service,
        state=state,
        sub_state=sub_state,
        pid=None,
        uptime_seconds=None,
        restarts=restarts,
        port=3000,
        healthy=False,
        health="connection refused",
        latency_ms=0.4,
        version=None,
        models=[],
        url="http://127.0.0.1:3000",
    )


def test_the_table_and_the_hints() -> None:
    status = StackStatus(
        [
            row("ollama"),
            row("proxy", port=4000, restarts=2, version="0.1.0", url="http://127.0.0.1:4000"),
            down_row("openwebui", "failed", "failed", 0),
        ],
        installed=True,
    )
    assert render_status(status) == (
        "SERVICE    STATE   PID   UPTIME  RESTARTS  PORT   HEALTH              VERSION  MODELS\n"
        "ollama     active  4242  1h02m   0         11434  ok 3ms              0.12.10  gemma3:1b\n"
        "proxy      active  4242  1h02m   2         4000   ok 3ms              0.1.0    gemma3:1b\n"
        "openwebui  failed  -     -       0         3000   connection refused  -        -\n"
        "Open WebUI is failed: `stackctl logs openwebui` shows why; "
        "`stackctl restart openwebui` starts it again\n"
        "degraded"
    )
    assert status.exit_code == 3


def test_passing_states_are_named_not_sent_to_restart() -> None:
    """activating and auto-restart pass by themselves: say what is happening instead of
    advising a restart."""
    status = StackStatus(
        [
            down_row("openwebui", "activating", "auto-restart", 4),
            down_row("proxy", "activating", "start", 0),
        ],
        installed=True,
    )
    hints = [
        "Open WebUI is restarting after a crash: 4 restarts since it was last started; "
        "`stackctl logs openwebui` shows why it crashes",
        "the proxy is starting: `stackctl status` again in a moment; "
        "`stackctl logs proxy -f` follows it",
    ]
    assert render_status(status).splitlines()[-3:] == [*hints, "degraded"]
    assert status.to_dict()["message"] == "\n".join(hints)


def test_status_json_carries_the_hints_the_table_prints() -> None:
    status = StackStatus([row("ollama"), down_row("openwebui", "failed", "failed", 0)], True)
    hint = (
        "Open WebUI is failed: `stackctl logs openwebui` shows why; "
        "`stackctl restart openwebui` starts it again"
    )
    assert hint in render_status(status).splitlines()
    assert status.to_dict()["message"] == hint


def test_status_with_nothing_installed_exits_1_and_says_what_to_run(stackctl) -> None:
    result = stackctl("status")
    assert result.code == 1
    assert result.out.splitlines()[-1] == "the stack is not installed: run `stackctl up`"
    data = json.loads(stackctl("status", "--json").out)
    assert data["installed"] is False and data["exit_code"] == 1
    assert [r["state"] for r in data["services"]] == ["not-installed"] * 3


def test_watch_refreshes_until_ctrl_c(monkeypatch: pytest.MonkeyPatch, stackctl) -> None:
    import time

    ticks: list[float] = []

    def sleep(seconds: float) -> None:
        ticks.append(seconds)
        if len(ticks) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(time, "sleep", sleep)
    result = stackctl("status", "--watch")
    assert ticks == [2, 2]
    assert result.out.count("(Ctrl-C to stop)") == 2 and result.code == 1


@pytest.fixture
def ollama(tmp_path: Path) -> Iterator[FakeOllama]:
    with FakeOllama(tmp_path / "ollama") as server:
        server.install("gemma3:1b", "qwen3:0.6b")
        yield server


def test_models_lists_name_size_and_where(ollama: FakeOllama, tmp_path: Path, stackctl) -> None:
    port = int(ollama.url.rsplit(":", 1)[1])
    config = tmp_path / "stack.yaml"
    config.write_text(f"backend: ollama\nollama: {{port: {port}}}\n")
    result = stackctl("--config", str(config), "models")
    assert result.code == 0, result.err
    where = f"ollama (http://127.0.0.1:{port})"
    assert result.out.splitlines() == [
        "NAME        SIZE      WHERE",
        f"gemma3:1b   815.3 MB  {where}",
        f"qwen3:0.6b  522.7 MB  {where}",
    ]
    data = json.loads(stackctl("--config", str(config), "models", "--json").out)
    assert data["models"][0] == {"name": "gemma3:1b", "size_bytes": 815319791, "where": where}


def test_models_with_nothing_installed_exits_1_as_status_does(tmp_path: Path, stackctl) -> None:
    config = tmp_path / "stack.yaml"
    config.write_text("backend: ollama\nollama: {port: 9}\n")
    result = stackctl("--config", str(config), "models")
    assert result.code == 1 == stackctl("--config", str(config), "status").code
    assert result.err == (
        "ollama (http://127.0.0.1:9): not answering (connection refused)\n"
        "the stack is not installed: run `stackctl up`\n"
    )
    data = json.loads(stackctl("--config", str(config), "models", "--json").out)
    assert data["installed"] is False


def test_models_with_an_installed_backend_down_exits_3(tmp_path: Path, stackctl) -> None:
    from stackctl.config import load
    from stackctl.services import state
    from stackctl.services.base import Unit
    from stackctl.stack import resolve_stack

    config = tmp_path / "stack.yaml"
    config.write_text("backend: ollama\nollama: {port: 9}\n")
    paths = resolve_stack(load(config), config).paths
    record = state.UnitRecord(paths)
    unit = Unit("ollama", "stackctl-ollama.service", "[Service]\n")
    state.write_unit(record, paths.unit_dir / unit.filename, unit, unit.filename)
    record.save()
    result = stackctl("--config", str(config), "models")
    assert result.code == 3
    assert result.err == (
        "ollama (http://127.0.0.1:9): not answering (connection refused): `stackctl status` shows why\n"
    )
