"""The systemd manager against a real systemd user manager (tests/systemd_user.py).

The units are the real rendered ones; only the programs they start are small stand-ins
(Ollama and the proxy's Python are HTTP servers written below), since neither can run here.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from stackctl.config import load
from stackctl.services.inputs import inputs_for_host
from stackctl.services.render import render_units
from stackctl.stack import resolve_stack
from tests.ports import free_port

pytestmark = pytest.mark.systemd

FAKE_OLLAMA = """#!{python}
# Stand-in for `ollama serve`: binds OLLAMA_HOST, answers /api/tags with a bit of its env.
import http.server, json, os, sys
host, port = os.environ["OLLAMA_HOST"].rsplit(":", 1)
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({{"models": [], "keep_alive": os.environ.get("OLLAMA_KEEP_ALIVE"),
                           "argv": sys.argv[1:], "cwd": os.getcwd()}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
print(f"fake-ollama pid {{os.getpid()}} listening on {{host}}:{{port}}", flush=True)
http.server.HTTPServer((host, int(port)), Handler).serve_forever()
"""

FAKE_PYTHON = """#!{python}
# Stand-in for the proxy's `python -m stackctl --config PATH proxy serve --backend ollama
# --usage-file PATH`: serves /health on proxy.port from that config, and refuses any other
# command line.
import http.server, sys, yaml
args = sys.argv[1:]
serve = ["proxy", "serve", "--backend", "ollama", "--usage-file"]
if args[:3] != ["-m", "stackctl", "--config"] or args[4:9] != serve or len(args) != 10:
    sys.exit(f"unexpected arguments: {{args}}")
port = yaml.safe_load(open(args[3]))["proxy"]["port"]
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, *args):
        pass
print(f"fake-proxy on 127.0.0.1:{{port}}", flush=True)
http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""


def get(port: int, path: str = "/", timeout: float = 15) -> str:
    """GET from a local port, waiting for the service to come up."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as resp:
                return resp.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def refuses(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


@dataclasses.dataclass
class Stack:
    config_path: Path
    ollama_port: int
    proxy_port: int
    bin_dir: Path

    def write_config(self, keep_alive: str = "30m") -> None:
        self.config_path.write_text(
            "backend: ollama\n"
            f"ollama:\n  port: {self.ollama_port}\n  env:\n    OLLAMA_KEEP_ALIVE: {keep_alive}\n"
            f"proxy:\n  port: {self.proxy_port}\n"
            "openwebui:\n  enabled: false\n"
        )

    def units(self):
        config = load(self.config_path)
        inputs = inputs_for_host(resolve_stack(config, self.config_path))
        inputs = dataclasses.replace(
            inputs, ollama_bin=self.bin_dir / "ollama", python=self.bin_dir / "python"
        )
        return config, render_units(config, inputs)


@pytest.fixture
def stack(tmp_path: Path, systemd_user) -> Stack:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("ollama", FAKE_OLLAMA), ("python", FAKE_PYTHON)):
        (bin_dir / name).write_text(text.format(python=sys.executable))
        (bin_dir / name).chmod(0o755)
    stack = Stack(tmp_path / "stack.yaml", free_port(), free_port(), bin_dir)
    stack.write_config()
    # What `stackctl up` creates before installing: the dirs the units run in.
    data = systemd_user.home / ".local/share/stackctl"
    data.mkdir(parents=True)
    return stack


def systemctl_calls(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage()[2:] for r in caplog.records if r.getMessage().startswith("$ systemctl")]


def test_install_start_crash_restart_stop_uninstall(stack, systemd_user, stackctl, caplog):
    caplog.set_level(logging.INFO, logger="stackctl.proc")
    config, units = stack.units()
    manager = resolve_stack(config).manager
    assert [u.filename for u in units] == [
        "stackctl-ollama.service",
        "stackctl-proxy.service",
        "stackctl.target",
    ]

    report = manager.install(units)
    assert report.started == ["ollama", "proxy"]
    assert report.written == [systemd_user.unit_dir / u.filename for u in units]
    assert systemctl_calls(caplog) == [
        "systemctl --user daemon-reload",
        "systemctl --user show -p Id,UnitFileState,ActiveState stackctl-ollama.service "
        "stackctl-proxy.service stackctl.target",
        "systemctl --user enable --now stackctl-ollama.service stackctl-proxy.service "
        "stackctl.target",
    ]
    tags = json.loads(get(stack.ollama_port, "/api/tags"))
    assert tags == {
        "models": [],
        "keep_alive": "30m",
        "argv": ["serve"],
        "cwd": str(systemd_user.home),
    }
    assert get(stack.proxy_port, "/health") == "ok"
    # enabled for boot: the target is wanted by default.target, the services by the target
    assert (systemd_user.unit_dir / "default.target.wants/stackctl.target").is_symlink()
    assert (systemd_user.unit_dir / "stackctl.target.wants/stackctl-proxy.service").is_symlink()

    before = {s.service: s for s in manager.status([])}
    assert before["ollama"].state == "active" and before["ollama"].sub_state == "running"
    assert before["ollama"].pid == systemd_user.main_pid("stackctl-ollama.service")
    assert before["ollama"].since is not None and before["ollama"].restarts == 0

    # A crash: systemd restarts it (Restart=always, RestartSec=3).
    os.kill(before["ollama"].pid, signal.SIGKILL)
    systemd_user.wait_for(
        "stackctl-ollama.service",
        lambda s: s["NRestarts"] == "1" and s["SubState"] == "running",
    )
    assert json.loads(get(stack.ollama_port, "/api/tags"))["models"] == []
    crashed = manager.status(["ollama"])[0]
    assert crashed.restarts == 1 and crashed.pid != before["ollama"].pid

    # Nothing changed: a second install runs nothing but the one `show`.
    caplog.clear()
    again = manager.install(stack.units()[1])
    assert not again.changed and len(again.unchanged) == 3
    assert systemctl_calls(caplog) == [
        "systemctl --user show -p Id,UnitFileState,ActiveState stackctl-ollama.service "
        "stackctl-proxy.service stackctl.target"
    ]

    result = stackctl("--config", str(stack.config_path), "restart", "--no-wait")
    assert (result.code, result.out) == (0, "restarted: ollama, proxy\n")
    after_restart = {s.service: s.pid for s in manager.status([])}
    assert after_restart["ollama"] not in (None, crashed.pid)
    get(stack.proxy_port, "/health")

    result = stackctl("--config", str(stack.config_path), "logs", "ollama", "-n", "3")
    assert result.code == 0
    assert (
        f"fake-ollama pid {after_restart['ollama']} listening on 127.0.0.1:{stack.ollama_port}"
        in result.out
    )

    result = stackctl("--config", str(stack.config_path), "stop")
    assert (result.code, result.out) == (0, "stopped: proxy, ollama\n")
    assert [s.state for s in manager.status([])] == ["inactive", "inactive"]
    assert refuses(stack.ollama_port) and refuses(stack.proxy_port)

    result = stackctl("--config", str(stack.config_path), "start", "--no-wait", "ollama")
    assert (result.code, result.out) == (0, "started: ollama\n")
    get(stack.ollama_port, "/api/tags")

    # A config change rewrites one unit and restarts only that service (and starts the
    # stopped proxy, as `up` brings the whole stack up).
    stack.write_config(keep_alive="1h")
    caplog.clear()
    changed = manager.install(stack.units()[1])
    assert changed.written == [systemd_user.unit_dir / "stackctl-ollama.service"]
    assert (changed.started, changed.restarted) == (["proxy"], ["ollama"])
    assert "systemctl --user restart stackctl-ollama.service" in systemctl_calls(caplog)
    assert json.loads(get(stack.ollama_port, "/api/tags"))["keep_alive"] == "1h"

    removed = manager.uninstall()
    assert sorted(p.name for p in removed) == sorted(u.filename for u in units)
    leftovers = [p for p in systemd_user.unit_dir.rglob("*") if "stackctl" in p.name]
    assert leftovers == []
    assert not (systemd_user.home / ".local/share/stackctl/state.json").exists()
    assert systemd_user.show("stackctl-ollama.service", "LoadState") == {"LoadState": "not-found"}
    assert refuses(stack.ollama_port) and refuses(stack.proxy_port)
    assert manager.uninstall() == []


def test_hand_edit_is_shown_by_units_diff_and_backed_up(stack, systemd_user, stackctl):
    config, units = stack.units()
    manager = resolve_stack(config).manager
    manager.install(units)
    unit = systemd_user.unit_dir / "stackctl-proxy.service"
    original = unit.read_text()
    unit.write_text(original.replace("RestartSec=3", "RestartSec=30"))

    result = stackctl("--config", str(stack.config_path), "units", "diff")
    assert result.code == 1  # diff(1): 1 when there are differences
    assert f"--- {unit} (written by stackctl)\n+++ {unit} (on disk)\n" in result.out
    assert "-RestartSec=3\n+RestartSec=30\n" in result.out

    report = manager.install(stack.units()[1])
    [(path, backup)] = report.backed_up
    assert path == unit and "RestartSec=30" in backup.read_text()
    assert backup.parent == systemd_user.home / ".local/share/stackctl/backups"
    assert unit.read_text() == original
    assert report.restarted == ["proxy"]
    result = stackctl("--config", str(stack.config_path), "units", "diff")
    assert result.code == 0
    assert result.out == "no unit was edited by hand: every file is as stackctl wrote it\n"


def test_failed_start_and_logs_follow(stack, systemd_user, stackctl):
    """A unit whose program exits is reported failed with its exit code; `logs -f` streams."""
    config, units = stack.units()
    (stack.bin_dir / "python").write_text(
        f"#!{sys.executable}\nimport sys\nprint('proxy cannot start: bad key file', flush=True)\nsys.exit(3)\n"
    )
    manager = resolve_stack(config).manager
    manager.install(units)
    # between a crash and its restart (RestartSec=3) systemd keeps the exit status
    systemd_user.wait_for("stackctl-proxy.service", lambda s: s["SubState"] == "auto-restart")
    proxy = manager.status(["proxy"])[0]
    assert (proxy.state, proxy.sub_state, proxy.last_exit, proxy.result) == (
        "activating",
        "auto-restart",
        3,
        "exit-code",
    )

    argv = ["logs", "proxy", "-f", "-n", "1"]
    with subprocess.Popen(
        [sys.executable, "-m", "stackctl", "--config", str(stack.config_path), *argv],
        env=systemd_user.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    ) as follower:
        try:
            first = follower.stdout.readline()  # the last line so far
            assert "proxy cannot start: bad key file" in first
            # tagged with the service (SyslogIdentifier=), not the interpreter's `python[pid]`
            assert " stackctl-proxy[" in first
            # each automatic restart prints the line again: follow shows new lines as they come
            assert "proxy cannot start: bad key file" in follower.stdout.readline()
        finally:
            # as Ctrl-C in a terminal: the whole process group, journalctl included
            os.killpg(follower.pid, signal.SIGINT)


def test_status_of_services_that_are_not_installed(systemd_user, stackctl, tmp_path):
    manager = resolve_stack(load(None)).manager
    states = manager.status(["ollama", "proxy"])
    assert [(s.service, s.unit, s.installed, s.state) for s in states] == [
        ("ollama", "stackctl-ollama.service", False, "not-installed"),
        ("proxy", "stackctl-proxy.service", False, "not-installed"),
    ]
    result = stackctl("logs")
    assert (result.code, result.err) == (
        1,
        "Error: no stackctl services are installed: run `stackctl up`\n",
    )
