"""systemctl output parsing, and the error when no systemd manager can be reached."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from stackctl.config import Config
from stackctl.errors import StackctlError
from stackctl.paths import paths_for
from stackctl.services.inputs import inputs_for_golden
from stackctl.services.managers import manager_for
from stackctl.services.render import render_units
from stackctl.services.systemd import parse_state, parse_timestamp


def test_parse_running_service():
    state = parse_state(
        "ollama",
        "stackctl-ollama.service",
        {
            "Id": "stackctl-ollama.service",
            "LoadState": "loaded",
            "ActiveState": "active",
            "SubState": "running",
            "MainPID": "4242",
            "ExecMainStartTimestamp": "Thu 2026-11-26 01:33:53 UTC",
            "StateChangeTimestamp": "Thu 2026-11-26 01:33:54 UTC",
            "NRestarts": "2",
            "Result": "success",
            "ExecMainCode": "0",
            "ExecMainStatus": "0",
        },
    )
    assert (state.installed, state.state, state.sub_state, state.pid) == (
        True,
        "active",
        "running",
        4242,
    )
    assert state.since == datetime(2026, 11, 26, 1, 33, 53, tzinfo=timezone.utc)
    assert (state.restarts, state.last_exit, state.result) == (2, None, "success")


def test_parse_failed_and_killed_services():
    failed = parse_state(
        "vllm",
        "stackctl-vllm.service",
        {
            "LoadState": "loaded",
            "ActiveState": "failed",
            "SubState": "failed",
            "MainPID": "0",
            "StateChangeTimestamp": "Fri 2026-11-27 08:00:00 UTC",
            "Result": "exit-code",
            "ExecMainCode": "1",
            "ExecMainStatus": "1",
            "NRestarts": "5",
        },
    )
    assert (failed.state, failed.pid, failed.last_exit, failed.result) == (
        "failed",
        None,
        1,
        "exit-code",
    )
    assert failed.since == datetime(2026, 11, 27, 8, 0, tzinfo=timezone.utc)
    killed = parse_state(
        "proxy",
        "stackctl-proxy.service",
        {
            "LoadState": "loaded",
            "ActiveState": "activating",
            "ExecMainCode": "2",
            "ExecMainStatus": "9",
        },
    )
    assert killed.last_exit == 137  # SIGKILL, as a shell reports it
    gone = parse_state("proxy", "stackctl-proxy.service", {"LoadState": "not-found"})
    assert (gone.installed, gone.state) == (False, "not-installed")


def test_parse_timestamp_tolerates_empty_and_odd_values():
    assert parse_timestamp("") is None
    assert parse_timestamp("n/a") is None


def test_no_user_manager_says_what_to_do(tmp_path, monkeypatch):
    empty = tmp_path / "runtime"
    empty.mkdir()
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(empty))
    units = render_units(Config(backend="ollama"), inputs_for_golden("linux", "user"))
    with pytest.raises(StackctlError) as failure:
        manager_for(paths_for("linux", "user")).install(units)
    assert failure.value.format_message() == (
        "cannot reach your systemd user manager (Failed to connect to bus: No such file or "
        "directory): run stackctl in a login session, or keep the manager running without one "
        "with `sudo loginctl enable-linger $USER`; on a headless server use `scope: system`"
    )
