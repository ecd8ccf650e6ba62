"""Probe facts about other processes: who listens on the stack's ports, and which Ollama
that is not ours would fight ours for port 11434.

A listener is "ours" (a port held by our own running stack is fine) when its process
belongs to a stackctl unit: on Linux its cgroup path names the unit (`stackctl-ollama.service`,
see /proc/PID/cgroup), on macOS launchd sets `XPC_SERVICE_NAME` to the job's label
(`dev.stackctl.ollama`) in its environment; or when its command line mentions stackctl (the
proxy runs `python -m stackctl … proxy serve`, Open WebUI and vLLM run from venvs under
stackctl's data directory).
"""

from __future__ import annotations

import os
import shlex
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stackctl import paths as _paths
from stackctl import proc
from stackctl.errors import StackctlError
from stackctl.homebrew import brew_argv

if TYPE_CHECKING:
    from stackctl.paths import Platform

MARK = "stackctl"
OLLAMA_APP = "Ollama.app"
QUIT_OLLAMA_APP = "osascript -e 'quit app \"Ollama\"'"
BREW_OLLAMA_LABEL = "homebrew.mxcl.ollama"
# Ollama.app's bundled LaunchAgent (Contents/Library/LaunchAgents/com.ollama.ollama.plist,
# RunAtLoad), which the app registers with SMAppService (ollama/ollama app/cmd/app/
# app_darwin.m, registerSelfAsLoginItem). macOS lists it under Login Items & Extensions >
# Allow in the Background, not under Open at Login; quitting the app leaves it registered.
OLLAMA_APP_AGENT = "com.ollama.ollama"
ALLOW_IN_THE_BACKGROUND = (
    "System Settings > General > Login Items & Extensions > Allow in the Background > Ollama"
)
OLLAMA_DEFAULT_PORT = 11434  # where Ollama.app, brew services and install.sh's Ollama serve


def fights_other_ollamas(backend: str, ollama_port: int) -> bool:
    """True when our Ollama serves on Ollama's default port, which every other Ollama takes
    (so a conflict blocks our stack rather than merely sharing the machine)."""
    return backend == "ollama" and ollama_port == OLLAMA_DEFAULT_PORT


@dataclass
class Listener:
    """The process listening on a port (pid and name None: another user's, not visible)."""

    pid: int | None
    name: str | None
    ours: bool = False  # belongs to stackctl's own stack
    cmdline: list[str] = field(default_factory=list)


@dataclass
class Conflict:
    """Another Ollama that serves on port 11434, and the exact command that stops it."""

    name: str
    detail: str
    stop_command: str
    pid: int | None = None


def _psutil() -> Any:
    import psutil

    return psutil


def describe_process(process: Any) -> tuple[str | None, list[str]]:
    """A process's display name and command line ("Ollama.app" for the menu-bar app's server)."""
    psutil = _psutil()
    try:
        cmdline = process.cmdline()
    except (psutil.Error, OSError):
        cmdline = []
    try:
        name = process.name()
    except (psutil.Error, OSError):
        name = None
    if _paths.current_platform() == "macos" and _from_ollama_app(cmdline):
        name = OLLAMA_APP
    return name, cmdline


def _from_ollama_app(cmdline: list[str]) -> bool:
    """True for a process started from Ollama.app (the menu-bar app or its server). A macOS
    app bundle: on Linux such a path is some other program's business."""
    return any(f"/{OLLAMA_APP}/" in part for part in cmdline)


def owned_by_stackctl(process: Any, cmdline: list[str]) -> bool:
    """True when the process is part of stackctl's stack (the rule is in the module docstring)."""
    if any(MARK in part for part in cmdline):
        return True
    try:
        cgroup = Path(f"/proc/{process.pid}/cgroup").read_text(encoding="utf-8")
    except OSError:
        cgroup = ""
    if f"{MARK}-" in cgroup:
        return True
    psutil = _psutil()
    try:
        label = process.environ().get("XPC_SERVICE_NAME", "")
    except (psutil.Error, OSError):
        label = ""
    return f".{MARK}." in label


def _listener(pid: int | None) -> Listener:
    if pid is None:
        return Listener(None, None)
    psutil = _psutil()
    try:
        process = psutil.Process(pid)
    except psutil.Error:
        return Listener(pid, None)
    name, cmdline = describe_process(process)
    return Listener(pid, name, owned_by_stackctl(process, cmdline), cmdline)


def read_listeners(ports: list[int]) -> dict[int, Listener | None]:
    """Who listens on each port (TCP), None for a free port."""
    psutil = _psutil()
    wanted = set(ports)
    found: dict[int, int | None] = {}
    try:
        for conn in psutil.net_connections(kind="tcp"):
            # IPv4 and IPv6 sockets may both listen: keep one that names its process
            if _listening(conn, wanted) and found.get(conn.laddr.port) is None:
                found[conn.laddr.port] = conn.pid
    except psutil.AccessDenied:
        # macOS lets only root list every socket: look through our own processes instead,
        # then knock on the ports nobody we can see holds.
        found = _listeners_by_process(wanted)
        for port in wanted - set(found):
            if _answers(port):
                found[port] = None
    return {port: (_listener(found[port]) if port in found else None) for port in ports}


def _listening(conn: Any, ports: set[int]) -> bool:
    return conn.status == _psutil().CONN_LISTEN and bool(conn.laddr) and conn.laddr.port in ports


def _listeners_by_process(ports: set[int]) -> dict[int, int | None]:
    psutil = _psutil()
    found: dict[int, int | None] = {}
    for process in psutil.process_iter():
        try:
            connections = process.net_connections(kind="tcp")
        except (psutil.Error, OSError):
            continue
        for conn in connections:
            if _listening(conn, ports):
                found[conn.laddr.port] = process.pid
    return found


def _answers(port: int) -> bool:
    """True when something accepts connections on 127.0.0.1:port."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.3):
            return True
    except OSError:
        return False


def read_conflicts(platform: Platform, brew_prefix: str | None) -> list[Conflict]:
    """Ollamas that are not ours: Ollama.app, Homebrew's service, Ollama's own systemd unit."""
    conflicts = []
    app_pid = _ollama_app_pid() if platform == "macos" else None
    if app_pid:
        conflicts.append(
            Conflict(
                OLLAMA_APP,
                f"the Ollama menu-bar app is running (pid {app_pid}); it serves on port 11434 "
                "and starts again at login unless you remove it from Login Items",
                QUIT_OLLAMA_APP,
                app_pid,
            )
        )
    if platform == "macos":
        target = f"gui/{session_uid()}/{OLLAMA_APP_AGENT}"
        if proc.run(["launchctl", "print", target], check=False, timeout=10).ok:
            conflicts.append(
                Conflict(
                    OLLAMA_APP_AGENT,
                    f"Ollama.app's login item {OLLAMA_APP_AGENT} is loaded; it starts Ollama on "
                    "port 11434 at every login, also after you quit the app. stackctl switches "
                    f"it off for good (`launchctl enable {target}` undoes that); the app's own "
                    f"switch is in {ALLOW_IN_THE_BACKGROUND}",
                    # launchctl(1): a disabled service cannot be loaded in that domain until it
                    # is enabled again, and that persists across boots; bootout stops it now.
                    f"launchctl disable {target} && launchctl bootout {target}",
                )
            )
    if brew_prefix and _brew_service_running("ollama"):
        conflicts.append(
            Conflict(
                BREW_OLLAMA_LABEL,
                "Homebrew's ollama service (brew services) is running; it serves on port 11434 "
                "and restarts at login",
                shlex.join(brew_argv("services", "stop", "ollama")),
            )
        )
    if platform == "linux" and _installer_unit_enabled():
        conflicts.append(
            Conflict(
                "ollama.service",
                "Ollama's install script enabled its own system service, ollama.service; it "
                "serves on port 11434 from boot",
                "sudo systemctl disable --now ollama",
            )
        )
    return conflicts


def session_uid() -> int:
    """The uid whose login session (launchd's gui/<uid> domain) holds the person's agents:
    who ran `sudo stackctl`, else our own."""
    uid = os.environ.get("SUDO_UID", "") if _paths.is_root() else ""
    return int(uid) if uid.isdigit() and uid != "0" else os.getuid()


def _ollama_app_pid() -> int | None:
    """The pid of a process running from Ollama.app (the app or the server it starts)."""
    psutil = _psutil()
    for process in psutil.process_iter(["pid", "name", "cmdline"], ad_value=None):
        cmdline = process.info.get("cmdline") or []
        if _from_ollama_app(cmdline):
            return process.info["pid"]
    return None


def _brew_service_running(formula: str) -> bool:
    """True when `brew services list` shows the formula's service started.

    The output is a table: `Name Status User File`, then e.g. `ollama started alice
    ~/Library/LaunchAgents/homebrew.mxcl.ollama.plist` (or `ollama none`). Asked as the
    person who owns Homebrew: as root brew lists the system's daemons instead.
    """
    try:
        argv = brew_argv("services", "list")
    except StackctlError:
        return False  # a root shell: there is no user whose services could be asked about
    for line in proc.lines(argv, timeout=30):
        parts = line.split()
        if len(parts) >= 2 and parts[0] == formula:
            return parts[1] in ("started", "scheduled")
    return False


def _installer_unit_enabled() -> bool:
    """True when /etc/systemd/system/ollama.service (from ollama's install.sh) is enabled.

    install.sh writes the unit and runs `systemctl enable ollama`, which links it into
    `<target>.wants/` (ollama/ollama `scripts/install.sh`, `configure_systemd`). Reading the links needs no
    running systemd.
    """
    units = _paths.system_path("/etc/systemd/system")
    return (units / "ollama.service").exists() and any(units.glob("*.wants/ollama.service"))
