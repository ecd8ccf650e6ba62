"""The launchd manager, driving the fake launchctl (tests/fakes/bin/launchctl): the exact
commands, in order, and what `launchctl print` says parsed into service states."""

from __future__ import annotations

import dataclasses
import os
import plistlib
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stackctl.config import load
from stackctl.errors import StackctlError
from stackctl.paths import paths_for
from stackctl.secrets import write_env_file
from stackctl.services.inputs import inputs_for_host
from stackctl.services.launchd import job_state, parse_print, tail
from stackctl.services.render import render_units
from stackctl.stack import resolve_stack

UID = os.getuid()
GUI = f"gui/{UID}"
STACK = ["ollama", "proxy", "openwebui"]


@dataclasses.dataclass
class Mac:
    config_path: Path
    home: Path
    fakes: object

    @property
    def agents(self) -> Path:
        return self.home / "Library/LaunchAgents"

    def plist(self, service: str) -> Path:
        return self.agents / f"dev.stackctl.{service}.plist"

    def units(self):
        config = load(self.config_path)
        inputs = inputs_for_host(resolve_stack(config, self.config_path))
        inputs = dataclasses.replace(inputs, ollama_bin=Path("/opt/homebrew/bin/ollama"))
        return config, render_units(config, inputs)

    def calls(self) -> list[list[str]]:
        """launchctl's calls, a run of the same `print` (polling) counted once."""
        calls = self.fakes.calls("launchctl")
        return [c for i, c in enumerate(calls) if c[1] != "print" or i == 0 or calls[i - 1] != c]

    def jobs(self) -> dict:
        import json

        return json.loads((self.fakes.state / "scenario.json").read_text())["launchd_jobs"]


@pytest.fixture
def mac(fake_bin, isolated_home, monkeypatch, tmp_path) -> Mac:
    monkeypatch.setenv("STACKCTL_PLATFORM", "macos")
    config_path = tmp_path / "stack.yaml"
    config_path.write_text("backend: ollama\nollama:\n  port: 11434\n")
    secrets = paths_for("macos", "user").secrets_file
    write_env_file(secrets, {"WEBUI_SECRET_KEY": "s3cret-webui", "OPENAI_API_KEYS": "sk-proxy-key"})
    return Mac(config_path, isolated_home, fake_bin)


def first_install(mac: Mac):
    config, units = mac.units()
    manager = resolve_stack(config).manager
    report = manager.install(units)
    mac.fakes.clear_calls()
    return manager, report


def test_install_bootstraps_each_job_in_start_order(mac):
    config, units = mac.units()
    report = resolve_stack(config).manager.install(units)
    expected = []
    for service in STACK:
        expected += [
            ["launchctl", "print", f"{GUI}/dev.stackctl.{service}"],
            ["launchctl", "enable", f"{GUI}/dev.stackctl.{service}"],
            ["launchctl", "bootstrap", GUI, str(mac.plist(service))],
        ]
    assert mac.calls() == expected
    assert report.started == STACK and report.written == [mac.plist(s) for s in STACK]
    # Open WebUI's plist holds its secrets (launchd has no EnvironmentFile): mode 0600
    modes = {s: mac.plist(s).stat().st_mode & 0o777 for s in STACK}
    assert modes == {"ollama": 0o644, "proxy": 0o644, "openwebui": 0o600}
    env = plistlib.loads(mac.plist("openwebui").read_bytes())["EnvironmentVariables"]
    assert (env["WEBUI_SECRET_KEY"], env["OPENAI_API_KEYS"]) == ("s3cret-webui", "sk-proxy-key")
    assert "s3cret-webui" not in mac.plist("proxy").read_text()
    assert (mac.home / "Library/Logs/stackctl").is_dir()


def test_reinstall_with_nothing_changed_only_looks(mac):
    manager, _ = first_install(mac)
    report = manager.install(mac.units()[1])
    assert not report.changed and report.unchanged == [mac.plist(s) for s in STACK]
    assert mac.calls() == [["launchctl", "print", f"{GUI}/dev.stackctl.{s}"] for s in STACK]


def test_changed_plist_is_reloaded_and_a_busy_bootstrap_retried(mac):
    manager, _ = first_install(mac)
    mac.config_path.write_text("backend: ollama\nollama:\n  port: 11500\n")
    # launchd tears a job down asynchronously: the first bootstrap after bootout can fail
    mac.fakes.scenario(launchctl_failures={"bootstrap": [5]})
    report = manager.install(mac.units()[1])
    target = f"{GUI}/dev.stackctl.ollama"
    assert mac.calls() == [
        ["launchctl", "print", target],
        ["launchctl", "bootout", target],
        ["launchctl", "print", target],  # until launchd no longer lists the job (113)
        ["launchctl", "enable", target],
        ["launchctl", "bootstrap", GUI, str(mac.plist("ollama"))],
        ["launchctl", "bootstrap", GUI, str(mac.plist("ollama"))],
        ["launchctl", "print", f"{GUI}/dev.stackctl.proxy"],
        ["launchctl", "print", f"{GUI}/dev.stackctl.openwebui"],
    ]
    assert (report.written, report.restarted) == ([mac.plist("ollama")], ["ollama"])
    env = plistlib.loads(mac.plist("ollama").read_bytes())["EnvironmentVariables"]
    assert env["OLLAMA_HOST"] == "127.0.0.1:11500"


def test_a_reload_waits_until_the_old_job_has_left_launchd(mac):
    # `bootout` returns before launchd has torn the job down: a bootstrap right after it
    # fails with 5 for seconds (3-5 s in public reports, more while the job drains)
    manager, _ = first_install(mac)
    mac.config_path.write_text("backend: ollama\nollama:\n  port: 11500\n")
    mac.fakes.scenario(launchd_drain_seconds=3.0)
    started = time.monotonic()
    report = manager.install(mac.units()[1])
    assert time.monotonic() - started >= 3.0
    assert report.restarted == ["ollama"]
    target = f"{GUI}/dev.stackctl.ollama"
    assert mac.calls()[:5] == [
        ["launchctl", "print", target],
        ["launchctl", "bootout", target],
        ["launchctl", "print", target],
        ["launchctl", "enable", target],
        ["launchctl", "bootstrap", GUI, str(mac.plist("ollama"))],
    ]
    assert mac.jobs()[target]["state"] == "running"


def test_a_lasting_input_output_error_names_both_causes(mac, monkeypatch):
    from stackctl.services import launchd

    monkeypatch.setattr(launchd, "BUSY_RETRY_SECONDS", 1.0)
    mac.fakes.scenario(launchd_background_off=["dev.stackctl.ollama"])
    config, units = mac.units()
    with pytest.raises(StackctlError) as failure:
        resolve_stack(config).manager.install(units)
    plist = mac.plist("ollama")
    assert failure.value.format_message() == (
        f"`launchctl bootstrap {GUI} {plist}` failed with exit code 5:\n"
        "    Bootstrap failed: 5: Input/output error\n"
        "launchd refuses to load dev.stackctl.ollama. Either it is switched off in System "
        "Settings > General > Login Items & Extensions > Allow in the Background (switch on "
        "the entry for ollama, then run `stackctl up` again), or its plist is invalid "
        f"(`plutil -lint {plist}` says why)"
    )


def test_a_job_that_never_leaves_launchd_is_reported(mac, monkeypatch):
    from stackctl.services import launchd

    monkeypatch.setattr(launchd, "DRAIN_SECONDS", 0.5)
    manager, _ = first_install(mac)
    mac.fakes.scenario(launchd_drain_seconds=60)
    with pytest.raises(StackctlError) as failure:
        manager.stop(["proxy"])
    assert failure.value.format_message() == (
        f"launchd still lists {GUI}/dev.stackctl.proxy 0.5s after `launchctl bootout`: its "
        "process has not exited yet; `stackctl status` shows it, and `stackctl stop proxy` "
        "tries again"
    )


def test_a_job_that_is_loaded_but_not_running_is_kickstarted(mac):
    manager, _ = first_install(mac)
    jobs = mac.jobs()
    jobs[f"{GUI}/dev.stackctl.proxy"].update(state="not running", last_exit="1")
    mac.fakes.scenario(launchd_jobs=jobs)
    report = manager.install(mac.units()[1])
    assert report.started == ["proxy"]
    assert ["launchctl", "kickstart", f"{GUI}/dev.stackctl.proxy"] in mac.calls()


def test_status_parses_launchctl_print(mac):
    manager, _ = first_install(mac)
    jobs = mac.jobs()
    jobs[f"{GUI}/dev.stackctl.ollama"].update(
        state="not running", runs=3, last_exit="78: EX_CONFIG", pid=None
    )
    jobs[f"{GUI}/dev.stackctl.openwebui"].update(state="spawn scheduled", runs=2)
    mac.fakes.scenario(launchd_jobs=jobs)
    states = {s.service: s for s in manager.status([])}
    ollama, proxy, webui = states["ollama"], states["proxy"], states["openwebui"]
    assert (ollama.state, ollama.sub_state, ollama.pid, ollama.last_exit, ollama.restarts) == (
        "failed",
        "not running",
        None,
        78,
        2,
    )
    assert ollama.result == "exit-code"
    assert (proxy.state, proxy.sub_state, proxy.restarts, proxy.last_exit) == (
        "active",
        "running",
        0,
        None,
    )
    assert proxy.pid == jobs[f"{GUI}/dev.stackctl.proxy"]["pid"]
    assert (webui.state, webui.restarts) == ("activating", 1)
    assert [s.state for s in manager.status(["vllm"])] == ["not-installed"]


def test_stop_start_restart_commands(mac, stackctl):
    first_install(mac)
    result = stackctl("--config", str(mac.config_path), "stop")
    assert (result.code, result.out) == (0, "stopped: openwebui, proxy, ollama\n")
    assert mac.calls() == [
        [*verb, f"{GUI}/dev.stackctl.{s}"]
        for s in reversed(STACK)
        for verb in (["launchctl", "bootout"], ["launchctl", "print"])
    ]
    assert all(mac.plist(s).exists() for s in STACK)  # loaded again at the next login
    status = resolve_stack(load(mac.config_path)).manager.status(["ollama"])[0]
    assert (status.installed, status.state, status.sub_state) == (True, "inactive", "not loaded")

    mac.fakes.clear_calls()
    result = stackctl("--config", str(mac.config_path), "start", "--no-wait", "proxy")
    assert (result.code, result.out) == (0, "started: proxy\n")
    target = f"{GUI}/dev.stackctl.proxy"
    assert mac.calls() == [
        ["launchctl", "print", target],
        ["launchctl", "enable", target],
        ["launchctl", "bootstrap", GUI, str(mac.plist("proxy"))],
    ]

    mac.fakes.clear_calls()
    result = stackctl(
        "--config", str(mac.config_path), "restart", "--no-wait", "openwebui", "proxy"
    )
    assert (result.code, result.out) == (0, "restarted: proxy, openwebui\n")
    assert mac.calls() == [
        ["launchctl", "print", target],
        ["launchctl", "kickstart", "-k", target],
        ["launchctl", "print", f"{GUI}/dev.stackctl.openwebui"],
        ["launchctl", "enable", f"{GUI}/dev.stackctl.openwebui"],
        ["launchctl", "bootstrap", GUI, str(mac.plist("openwebui"))],
    ]
    assert mac.jobs()[target]["runs"] == 2


def test_unknown_service_and_nothing_installed(mac, stackctl):
    result = stackctl("--config", str(mac.config_path), "start", "--no-wait")
    assert (result.code, result.err) == (
        1,
        "Error: no stackctl services are installed: run `stackctl up`\n",
    )
    first_install(mac)
    result = stackctl("--config", str(mac.config_path), "restart", "--no-wait", "vllm")
    assert (result.code, result.err) == (
        1,
        "Error: no service named 'vllm' is installed: choose from ollama, proxy, openwebui\n",
    )
    assert mac.calls() == []


def test_no_gui_session_says_what_to_do(mac):
    config, units = mac.units()
    mac.fakes.scenario(launchctl_failures={"bootstrap": [125]})
    with pytest.raises(StackctlError) as failure:
        resolve_stack(config).manager.install(units)
    assert failure.value.format_message() == (
        f"`launchctl bootstrap {GUI} {mac.plist('ollama')}` failed with exit code 125:\n"
        "    Bootstrap failed: 125: Domain does not support specified action\n"
        f"the {GUI} domain exists only while you are logged in at the Mac's screen; for a "
        "headless Mac use `scope: system` (sudo stackctl up)"
    )


def test_hand_edit_diff_backup_and_uninstall(mac, stackctl):
    manager, _ = first_install(mac)
    foreign = mac.agents / "homebrew.mxcl.ollama.plist"
    foreign.write_text("<plist/>")
    edited = mac.plist("openwebui")
    edited.write_text(edited.read_text().replace("<integer>10</integer>", "<integer>30</integer>"))

    result = stackctl("--config", str(mac.config_path), "units", "diff", "--json")
    assert result.code == 1 and '"path": "' + str(edited) in result.out
    assert "-\\t<integer>10</integer>\\n+\\t<integer>30</integer>" in result.out

    report = manager.install(mac.units()[1])
    [(path, backup)] = report.backed_up
    assert path == edited and backup.stat().st_mode & 0o777 == 0o600  # it holds secrets
    assert report.restarted == ["openwebui"] and manager.drift() == []

    mac.fakes.clear_calls()
    removed = manager.uninstall()
    assert removed == [mac.plist(s) for s in reversed(STACK)]
    assert mac.calls() == [
        [*verb, f"{GUI}/dev.stackctl.{s}"]
        for s in reversed(STACK)
        for verb in (["launchctl", "bootout"], ["launchctl", "print"])
    ]
    assert sorted(p.name for p in mac.agents.iterdir()) == ["homebrew.mxcl.ollama.plist"]
    assert not paths_for("macos", "user").state_file.exists()
    assert mac.jobs() == {}


def test_system_scope_runs_as_the_sudo_user(mac, monkeypatch):
    monkeypatch.setenv("STACKCTL_AS_ROOT", "1")
    monkeypatch.setenv("SUDO_USER", "nobody")  # an account that exists on this Linux box
    config, units = mac.units()
    daemons = mac.home / "Library/LaunchDaemons"
    resolve_stack(config).manager.install(units)
    assert mac.calls()[:3] == [
        ["launchctl", "print", "system/dev.stackctl.ollama"],
        ["launchctl", "enable", "system/dev.stackctl.ollama"],
        ["launchctl", "bootstrap", "system", str(daemons / "dev.stackctl.ollama.plist")],
    ]
    plist = plistlib.loads((daemons / "dev.stackctl.ollama.plist").read_bytes())
    assert (plist["UserName"], plist["EnvironmentVariables"]["HOME"]) == ("nobody", str(mac.home))
    assert plist["StandardOutPath"] == str(mac.home / "Library/Logs/stackctl/ollama.log")

    monkeypatch.delenv("SUDO_USER")
    with pytest.raises(StackctlError) as failure:
        mac.units()
    assert failure.value.format_message() == (
        "system scope on macOS runs the services as the account that ran sudo: run "
        "`sudo stackctl up` from that account (not from a root shell)"
    )


def test_logs_from_the_log_files(mac, stackctl):
    first_install(mac)
    logs = mac.home / "Library/Logs/stackctl"
    (logs / "ollama.log").write_text("".join(f"line {i}\n" for i in range(1, 6)))
    result = stackctl("--config", str(mac.config_path), "logs", "ollama", "-n", "2")
    assert (result.code, result.out) == (0, "line 4\nline 5\n")

    (logs / "proxy.log").write_text("proxy up\n")
    result = stackctl("--config", str(mac.config_path), "logs", "-n", "1")
    assert result.out == (
        f"==> {logs / 'ollama.log'} <==\nline 5\n\n"
        f"==> {logs / 'proxy.log'} <==\nproxy up\n\n"
        f"==> {logs / 'openwebui.log'} <==\n(nothing logged yet)\n"
    )
    result = stackctl("--config", str(mac.config_path), "logs", "openwebui")
    assert (result.code, result.out, result.err) == (0, "", "no log lines yet for openwebui\n")


def test_logs_follow_tails_the_file(mac):
    first_install(mac)
    log = mac.home / "Library/Logs/stackctl/proxy.log"
    log.write_text("old line\nlast line\n")
    with subprocess.Popen(
        [
            sys.executable,
            "-m",
            "stackctl",
            "--config",
            str(mac.config_path),
            "logs",
            "proxy",
            "-f",
            "-n",
            "1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    ) as follower:
        try:
            assert follower.stdout.readline() == "last line\n"
            time.sleep(0.2)
            with open(log, "a") as fh:
                fh.write("new line\n")
            assert follower.stdout.readline() == "new line\n"
        finally:
            os.killpg(follower.pid, 2)


def test_tail_reads_from_the_end(tmp_path):
    log = tmp_path / "big.log"
    log.write_text("".join(f"{i:06d}\n" for i in range(20000)))
    assert tail(log, 3, block=64) == ["019997\n", "019998\n", "019999\n"]
    assert tail(log, 1, block=5) == ["019999\n"]
    small = tmp_path / "small.log"
    small.write_text("a\nb")
    assert tail(small, 10) == ["a\n", "b"]


def test_parse_print_reads_top_level_fields_only():
    text = (
        "gui/501/dev.stackctl.ollama = {\n"
        "\tactive count = 1\n"
        "\tpath = /Users/alice/Library/LaunchAgents/dev.stackctl.ollama.plist\n"
        "\tstate = running\n"
        "\n"
        "\tendpoints = {\n"
        '\t\t"com.example" = {\n'
        "\t\t\tstate = active\n"
        "\t\t}\n"
        "\t}\n"
        "\truns = 4\n"
        "\tpid = 812\n"
        "\tlast terminating signal = Killed: 9\n"
        "}\n"
    )
    fields = parse_print(text)
    assert fields["state"] == "running" and fields["pid"] == "812"
    state = job_state("ollama", "dev.stackctl.ollama", fields)
    assert (state.state, state.pid, state.restarts, state.last_exit) == ("active", 812, 3, 137)
