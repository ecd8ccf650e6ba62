"""A real systemd user manager for tests, started the way this machine kind allows.

The test container has no systemd as PID 1, but `/lib/systemd/systemd --user` runs fine in a
private mount namespace once it believes the machine was booted with systemd:

    unshare --mount --propagation private sh launch.sh     (launch.sh, in that namespace:)
      move itself into its own cgroup  stackctl-test-<pid>.slice  (so two managers, or a
          manager and the host, never share /app.slice/<unit>; journald derives unit names
          from that path, and a *.slice parent keeps `_SYSTEMD_UNIT=<unit>` right)
      mount tmpfs on /run/systemd and /run/log; mkdir /run/systemd/system  (the marker)
      /lib/systemd/systemd-journald &                       (a private journal)
      XDG_RUNTIME_DIR=<tmp>/runtime XDG_CONFIG_HOME=<tmp>/home/.config \
          exec /lib/systemd/systemd --user

From the test process `XDG_RUNTIME_DIR=<tmp>/runtime systemctl --user …` then talks to it
over `$XDG_RUNTIME_DIR/systemd/private`, with units in `<tmp>/home/.config/systemd/user`.
Outside the namespace there is no /run/systemd/system, so systemctl thinks it is offline and
does `enable`/`disable` itself, in `$XDG_CONFIG_HOME/systemd/user`: the fixture sets
XDG_CONFIG_HOME for the test too.
Because STACKCTL_HOME stands for $HOME, pointing STACKCTL_HOME at `<tmp>/home` makes
stackctl's Linux user-scope `unit_dir` exactly that directory.

The journal lives in the namespace's private /run/log, so the fixture puts a `journalctl` on
PATH that runs the real /usr/bin/journalctl inside that namespace (`nsenter --mount`), with
the arguments unchanged. There, a user unit's lines carry `_SYSTEMD_UNIT=<unit>`: the
system view `journalctl -u NAME` finds them and `journalctl --user -u NAME` does not (the
quirk stackctl's logs command copes with).

Fixtures (import `systemd_user` in conftest.py to use them anywhere):

- `systemd_user_manager` (session scope): the running manager, started once; stopped by its
  pid (and its journald by pid) at the end of the session, its cgroups removed.
- `systemd_user` (function scope): a `SystemdUser` handle for one test. Sets STACKCTL_HOME,
  XDG_RUNTIME_DIR, XDG_CONFIG_HOME and PATH (journalctl shim) for the test; afterwards stops and disables every
  unit, empties the home and reloads, so the next test starts clean.

`SystemdUser`: `home`, `unit_dir`, `runtime_dir`, `systemctl(*args, check=True)`,
`show(unit, *props) -> dict`, `wait_for(unit, predicate, timeout=20)`, `main_pid(unit)`,
`journal(unit) -> str`, `env` (the variables a subprocess needs to reach the manager).

Needs root (mounts, cgroups, nsenter), as the tests run here. On a machine without
/lib/systemd/systemd the fixture skips; if systemd is there but will not start, it fails.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

SYSTEMD = Path("/lib/systemd/systemd")
JOURNALD = Path("/lib/systemd/systemd-journald")
# hybrid (v1 name=systemd + v2 "unified", as here) or pure cgroup v2
CGROUP_HIERARCHIES = (
    Path("/sys/fs/cgroup/systemd"),
    Path("/sys/fs/cgroup/unified"),
    Path("/sys/fs/cgroup"),
)

LAUNCH = r"""set -e
CG="stackctl-test-$$.slice"
for h in /sys/fs/cgroup/systemd /sys/fs/cgroup/unified /sys/fs/cgroup; do
  if [ -w "$h/cgroup.procs" ]; then
    mkdir -p "$h/$CG" && echo $$ > "$h/$CG/cgroup.procs" || true
  fi
done
mount -t tmpfs tmpfs /run/systemd
mkdir -p /run/systemd/system /run/log
mount -t tmpfs tmpfs /run/log
if [ -d /var/log/journal ]; then mount -t tmpfs tmpfs /var/log/journal; fi
{journald} >"$BASE/journald.log" 2>&1 &
echo $! > "$BASE/journald.pid"
i=0
while [ ! -S /run/systemd/journal/stdout ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done
exec {systemd} --user
"""


@dataclass
class ManagerProcess:
    """The running manager: where it lives and its pid."""

    base: Path
    pid: int
    process: subprocess.Popen = field(repr=False)

    @property
    def home(self) -> Path:
        return self.base / "home"

    @property
    def runtime_dir(self) -> Path:
        return self.base / "runtime"

    @property
    def shim_dir(self) -> Path:
        return self.base / "shim"

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "XDG_RUNTIME_DIR": str(self.runtime_dir),
            "XDG_CONFIG_HOME": str(self.home / ".config"),
        }

    def systemctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run(
            ["systemctl", "--user", *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"systemctl --user {' '.join(args)}: {done.stderr.strip()}")
        return done


def _skip_or_fail_reason() -> str | None:
    if not sys.platform.startswith("linux") or not SYSTEMD.exists():
        return "no /lib/systemd/systemd on this machine"
    return None


def _start_manager(base: Path) -> ManagerProcess:
    for name in ("home/.config/systemd/user", "shim"):
        (base / name).mkdir(parents=True, exist_ok=True)
    runtime = base / "runtime"
    runtime.mkdir(mode=0o700, exist_ok=True)
    launch = base / "launch.sh"
    launch.write_text(
        LAUNCH.replace("{journald}", str(JOURNALD)).replace("{systemd}", str(SYSTEMD))
    )
    env = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": str(base / "home"),
        "XDG_RUNTIME_DIR": str(runtime),
        "XDG_CONFIG_HOME": str(base / "home/.config"),
        "BASE": str(base),
        "LANG": "C.UTF-8",
    }
    with open(base / "manager.log", "wb") as log:
        process = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", str(launch)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C in pytest must not hit the manager first
        )
    manager = ManagerProcess(base, process.pid, process)
    journalctl = shutil.which("journalctl") or "/usr/bin/journalctl"
    shim = manager.shim_dir / "journalctl"
    shim.write_text(f'#!/bin/sh\nexec nsenter --target {process.pid} --mount {journalctl} "$@"\n')
    shim.chmod(0o755)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        if (runtime / "systemd/private").exists():
            state = manager.systemctl("show", "-p", "SystemState", "--value", check=False)
            if state.stdout.strip() in ("running", "degraded"):
                return manager
        time.sleep(0.1)
    _stop_manager(manager)
    log_text = (base / "manager.log").read_text(errors="replace")[-3000:]
    pytest.fail(f"the systemd user manager did not start (needs root here):\n{log_text}")


def _stop_manager(manager: ManagerProcess) -> None:
    """SIGTERM the manager (it stops its units first), then its journald, by pid."""
    if manager.process.poll() is None:
        manager.process.send_signal(signal.SIGTERM)
        try:
            manager.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            manager.process.kill()
            manager.process.wait()
    pid_file = manager.base / "journald.pid"
    if pid_file.exists():
        _terminate(int(pid_file.read_text().strip() or 0))
    for hierarchy in CGROUP_HIERARCHIES:
        remove_cgroup(hierarchy / f"stackctl-test-{manager.pid}.slice")


def remove_cgroup(own: Path) -> None:
    """Remove a cgroup and those below it, deepest first, once their processes are gone."""
    if own.is_dir():
        dirs = sorted(own.rglob("*"), key=lambda p: len(p.parts), reverse=True)
        for directory in [*dirs, own]:
            if directory.is_dir():
                _rmdir(directory)


def _terminate(pid: int, timeout: float = 5) -> None:
    """SIGTERM a process that is not our child and wait until it is gone (or a zombie)."""
    if pid <= 0:
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return
        if fields[0] == "Z":
            return
        time.sleep(0.05)


def _rmdir(path: Path, timeout: float = 3) -> None:
    """Remove an empty cgroup; its last process may take a moment to leave it."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            if time.monotonic() > deadline:
                return
            time.sleep(0.05)


@pytest.fixture(scope="session")
def systemd_user_manager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ManagerProcess]:
    """One real systemd user manager for the whole test session."""
    reason = _skip_or_fail_reason()
    if reason and os.environ.get("CI"):
        pytest.fail(f"{reason}: CI must test against a real systemd (.ci/run installs it)")
    if reason:
        pytest.skip(reason)
    manager = _start_manager(tmp_path_factory.mktemp("systemd-user"))
    try:
        yield manager
    finally:
        _stop_manager(manager)


class UnitQueries(ABC):
    """`systemctl show` questions about units, asked through the subclass's `systemctl`."""

    @abstractmethod
    def systemctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess: ...

    def show(self, unit: str, *props: str) -> dict[str, str]:
        out = self.systemctl("show", "-p", ",".join(props), unit).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def main_pid(self, unit: str) -> int:
        return int(self.show(unit, "MainPID")["MainPID"])

    def wait_for(
        self,
        unit: str,
        predicate: Callable[[dict[str, str]], bool],
        timeout: float = 20,
        props: tuple[str, ...] = ("ActiveState", "SubState", "MainPID", "NRestarts"),
    ) -> dict[str, str]:
        """Poll `systemctl show` until predicate(props) holds; fail with the last props."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.show(unit, *props)
            if predicate(state):
                return state
            if time.monotonic() > deadline:
                raise AssertionError(f"{unit} never reached the wanted state: {state}")
            time.sleep(0.1)


@dataclass
class SystemdUser(UnitQueries):
    """One test's view of the manager (see the module docstring)."""

    manager: ManagerProcess

    @property
    def home(self) -> Path:
        return self.manager.home

    @property
    def unit_dir(self) -> Path:
        return self.manager.home / ".config/systemd/user"

    @property
    def runtime_dir(self) -> Path:
        return self.manager.runtime_dir

    @property
    def env(self) -> dict[str, str]:
        """Environment for a subprocess that should reach this manager (and its journal)."""
        env = self.manager.env()
        env["PATH"] = f"{self.manager.shim_dir}{os.pathsep}{env['PATH']}"
        env["STACKCTL_HOME"] = str(self.home)
        return env

    def systemctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.manager.systemctl(*args, check=check)

    def journal(self, unit: str) -> str:
        done = subprocess.run(
            ["journalctl", "-u", unit, "--no-pager", "-q"],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        return done.stdout

    def reset(self) -> None:
        """Stop and disable every unit, empty the home, reload: a clean manager again."""
        self.systemctl("stop", "*.service", "*.target", check=False)
        files = [p.name for p in self.unit_dir.glob("*") if p.is_file()]
        if files:
            self.systemctl("disable", *files, check=False)
        for child in self.home.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
        self.unit_dir.mkdir(parents=True)
        self.systemctl("daemon-reload", check=False)
        self.systemctl("reset-failed", check=False)


@pytest.fixture
def systemd_user(
    systemd_user_manager: ManagerProcess, monkeypatch: pytest.MonkeyPatch
) -> Iterator[SystemdUser]:
    """Point stackctl (and this test) at the real user manager; clean it up afterwards."""
    handle = SystemdUser(systemd_user_manager)
    handle.reset()
    monkeypatch.setenv("STACKCTL_HOME", str(handle.home))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(handle.runtime_dir))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(handle.home / ".config"))
    monkeypatch.setenv("PATH", f"{systemd_user_manager.shim_dir}{os.pathsep}{os.environ['PATH']}")
    try:
        yield handle
    finally:
        handle.reset()
