"""A real systemd *system* manager for tests: PID 1 of a private PID and mount namespace.

`sudo stackctl up` writes system units (User=stackctl, ProtectSystem=strict, ReadWritePaths,
PrivateTmp, ...) into /etc/systemd/system. To run them for real without touching the host,
`boot()` does, as root:

    unshare --pid --fork --mount --propagation private --mount-proc BOOT WORKDIR

and BOOT, inside the new namespaces:

- mounts a tmpfs over /tmp FIRST, then one over /run: a system manager that reaches
  systemd-tmpfiles empties /tmp, and on the host's /tmp that is every other test's files,
  venvs and sockets (it happened once);
- moves itself into its own cgroup (`stackctl-system-<workdir name>` in the name=systemd and
  unified hierarchies), so its units never share a cgroup with the host's or another run's;
- mounts overlays over /etc, /var and /dev, the upper and work dirs in WORKDIR: `useradd`,
  /etc/systemd/system, /var/lib/stackctl, and what PID 1 adds to /dev (the /dev/log symlink,
  mount points, fake GPU nodes) stay in the namespace;
- masks the tmpfiles units (systemd-tmpfiles-setup, -clean, -clean.timer, -setup-dev*,
  tmp.mount) by linking them to /dev/null in the overlay's /etc/systemd/system;
- writes a bare target there (DefaultDependencies=no, wants only journald), then
  `exec /lib/systemd/systemd --system --unit=stackctl-test.target`.

Commands run inside with `nsenter -t PID -m -p ...` (`SystemdSystem.run`); the namespace ends
with `kill -9 PID`, which kills everything in it and drops its mounts.

Nothing here lives in /tmp: WORKDIR goes under STACKCTL_TEST_SYSTEM_DIR (default
/opt/stackctl-tests), which must not be under /etc, /var or /tmp. A canary file in the host's
/tmp is checked after every boot and every stop; a test fails if it vanished, or if the
host's /dev gained an entry.

The interpreter: the proxy unit runs `<python> -m stackctl` as the `stackctl` account, so the
stackctl under test must run from a Python every account can read (the test's own may live
under /root, mode 0700). `boot()` builds one per run: a venv of Debian's /usr/bin/python3
(without pip) whose .pth adds a copy of this checkout (stackctl/, templates/, tests/fakes/) in
WORKDIR and stackctl's dependencies, installed once into a venv cached in
STACKCTL_TEST_SYSTEM_DIR/python-deps-<hash of the dependency list and the Python version>.

Fixture: `systemd_system` (function scope) is a `boot(nvidia_devices=False)` factory; every
system it booted is stopped and removed afterwards. Each run dir names its test session and
its PID 1 (pid and start time) in owner.json, so a later session stops and removes the systems
of a session that was killed before it could (never those of one still running). `nvidia_devices` adds /dev/nvidia0 and
/dev/nvidiactl (nodes of /dev/null's kind, 1:3) to the namespace's /dev, for a fake vLLM.
Needs root; skipped without /lib/systemd/systemd, unshare or /usr/bin/python3 (a failure
under CI, which must run it).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.fakes.installer import FakeBin, install_fakes
from tests.systemd_user import UnitQueries, remove_cgroup

REPO = Path(__file__).resolve().parent.parent
SYSTEMD = Path("/lib/systemd/systemd")
SYSTEM_PYTHON = Path("/usr/bin/python3")
BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
TARGET = "test-boot.target"
MASKED = (
    "systemd-tmpfiles-setup.service",
    "systemd-tmpfiles-clean.service",
    "systemd-tmpfiles-clean.timer",
    "systemd-tmpfiles-setup-dev.service",
    "systemd-tmpfiles-setup-dev-early.service",
    "tmp.mount",
)

BOOT = r"""#!/bin/sh
set -eu
W="$1"
# /tmp first: whatever happens below must never reach the host's /tmp.
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp
mount -t tmpfs -o mode=755,nosuid,nodev tmpfs /run
CG="stackctl-system-$(basename "$W")"
for h in /sys/fs/cgroup/systemd /sys/fs/cgroup/unified; do
  if [ -w "$h/cgroup.procs" ]; then mkdir -p "$h/$CG" && echo $$ > "$h/$CG/cgroup.procs"; fi
done
for d in etc var dev; do
  mkdir -p "$W/$d.upper" "$W/$d.work"
  mount -t overlay overlay -o "lowerdir=/$d,upperdir=$W/$d.upper,workdir=$W/$d.work" "/$d"
done
# the overlay hides /dev's own mounts: give the namespace its own
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /dev/shm
mount -t devpts -o newinstance,ptmxmode=0666,mode=620 devpts /dev/pts
if [ "${NVIDIA_DEVICES:-}" = 1 ]; then
  for node in nvidia0 nvidiactl; do mknod -m 666 "/dev/$node" c 1 3; done
fi
S=/etc/systemd/system
for unit in {masked}; do ln -sfn /dev/null "$S/$unit"; done
cat > "$S/{target}" <<'UNIT'
[Unit]
Description=stackctl tests: a bare system
DefaultDependencies=no
Wants=systemd-journald.socket systemd-journald.service
UNIT
exec {systemd} --system --unit={target}
"""


def system_dir() -> Path:
    return Path(os.environ.get("STACKCTL_TEST_SYSTEM_DIR", "/opt/stackctl-tests"))


def _skip_reason() -> str | None:
    if not sys.platform.startswith("linux") or not SYSTEMD.exists():
        return "no /lib/systemd/systemd on this machine"
    if not shutil.which("unshare") or not shutil.which("nsenter"):
        return "no unshare/nsenter (util-linux)"
    if not SYSTEM_PYTHON.exists():
        return f"no {SYSTEM_PYTHON} to run stackctl as the service account"
    if os.geteuid() != 0:
        return "booting a system manager needs root"
    return None


# --- the interpreter every account can read -------------------------------------------------


def _runtime_dependencies() -> list[str]:
    """stackctl's dependencies, from pyproject.toml (this checkout's, not an install's; on
    Python 3.10, which has no tomllib, from the installed stackctl's metadata)."""
    try:
        import tomllib
    except ModuleNotFoundError:
        from importlib.metadata import requires

        return [r for r in requires("stackctl") or [] if "extra ==" not in r]
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]


def _site_packages(venv: Path) -> Path:
    return next((venv / "lib").glob("python3*/site-packages"))


def _system_python_version() -> str:
    return subprocess.run(
        [str(SYSTEM_PYTHON), "-c", "import sys; print(sys.version)"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip


def cached_dependencies() -> Path:
    """The site-packages of a venv of /usr/bin/python3 holding stackctl's dependencies,
    built once per dependency list and Python version (concurrent runs: first one wins)."""
    deps = _runtime_dependencies()
    key = hashlib.sha256(json.dumps([deps, _system_python_version()]).encode()).hexdigest()
    final = system_dir() / f"python-deps-{key[:16]}"
    if (final / "complete").exists():
        return _site_packages(final)
    system_dir().mkdir(parents=True, exist_ok=True)
    system_dir().chmod(0o755)
    building = Path(tempfile.mkdtemp(prefix="building-", dir=system_dir()))
    try:
        subprocess.run(
            [str(SYSTEM_PYTHON), "-m", "venv", "--without-pip", str(building)], check=True
        )
        subprocess.run(
            [sys.executable, "-m", "pip", "--python", str(building / "bin/python"), "install",
             "-q", "--disable-pip-version-check", *deps],
            check=True,
        )  # fmt: skip
        (building / "complete").touch()
        building.chmod(0o755)
        try:
            building.rename(final)
        except OSError:  # another run finished first
            shutil.rmtree(building)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    return _site_packages(final)


def _copy_checkout(target: Path) -> None:
    """stackctl, its templates and the fakes, where the service account can read them."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(REPO / "stackctl", target / "stackctl", ignore=ignore)
    shutil.copytree(REPO / "templates", target / "templates", ignore=ignore)
    shutil.copytree(REPO / "tests/fakes", target / "tests/fakes", ignore=ignore)
    shutil.copy(REPO / "tests/ports.py", target / "tests/ports.py")


def add_checkout(venv: Path, workdir: Path) -> None:
    """Make the venv import the checkout's copy in workdir and the cached dependencies."""
    (_site_packages(venv) / "stackctl_tests.pth").write_text(
        f"import site; site.addsitedir({str(cached_dependencies())!r})\n{workdir / 'src'}\n"
    )


def readable_python(workdir: Path) -> Path:
    """A venv of /usr/bin/python3 in workdir that imports the checkout's copy and its deps."""
    _copy_checkout(workdir / "src")
    venv = workdir / "python"
    subprocess.run([str(SYSTEM_PYTHON), "-m", "venv", "--without-pip", str(venv)], check=True)
    add_checkout(venv, workdir)
    return venv / "bin/python"


# --- the manager ----------------------------------------------------------------------------


@dataclass
class SystemdSystem(UnitQueries):
    """One booted system: run commands in it, inspect its units, stop it."""

    workdir: Path
    pid: int  # systemd's pid, as the host sees it
    python: Path  # /usr/bin/python3's venv with this checkout's stackctl
    process: subprocess.Popen = field(repr=False)
    path: str = BASE_PATH

    def env(self) -> dict[str, str]:
        """A root login's plain environment, with the fakes (if installed) first on PATH."""
        return {"PATH": self.path, "HOME": "/root", "LANG": "C.UTF-8", "USER": "root"}

    def run(
        self, *argv: str, check: bool = False, timeout: float = 120, input: str | None = None
    ) -> subprocess.CompletedProcess:
        """argv as root inside the namespace (its mounts, its PID 1)."""
        done = subprocess.run(
            ["nsenter", "-t", str(self.pid), "-m", "-p", "--", *argv],
            env=self.env(),
            cwd="/",
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} exited {done.returncode}:\n{done.stderr}")
        return done

    def stackctl(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return self.run(str(self.python), "-m", "stackctl", *args, timeout=timeout)

    def systemctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.run("systemctl", *args, check=check)

    def journal(self, unit: str) -> str:
        return self.run("journalctl", "-u", unit, "--no-pager", "-q").stdout

    def install_fakes(self, names: list[str]) -> FakeBin:
        """The named fakes, run by this system's interpreter from the copied checkout, first
        on PATH for commands run here (services get the PATH stackctl writes)."""
        fakes = install_fakes(
            self.workdir / "fakes", names, python=str(self.python), checkout=self.workdir / "src"
        )
        self.path = f"{fakes.bin}:{BASE_PATH}"
        return fakes


def _child_pid(process: subprocess.Popen, timeout: float = 10) -> int:
    """unshare --fork's child (the shell that execs systemd): its pid on the host."""
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        pids = children.read_text().split() if children.exists() else []
        if pids:
            return int(pids[0])
        time.sleep(0.02)
    raise RuntimeError("unshare started no child")


class Canary:
    """A file in the host's /tmp and the names in the host's /dev: both must survive a boot."""

    def __init__(self) -> None:
        fd, name = tempfile.mkstemp(prefix="stackctl-system-canary-", dir="/tmp")
        os.close(fd)
        self.path = Path(name)
        self.dev = set(os.listdir("/dev"))

    def check(self, when: str) -> None:
        if not self.path.exists():
            pytest.fail(f"{when}: the host's /tmp lost {self.path}: a system manager reached it")
        added = set(os.listdir("/dev")) - self.dev
        if added:
            pytest.fail(f"{when}: the host's /dev gained {sorted(added)}")

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def boot(workdir: Path, nvidia_devices: bool = False, timeout: float = 30) -> SystemdSystem:
    """Boot a system manager in workdir (see the module docstring) and wait until it runs."""
    python = readable_python(workdir)
    script = workdir / "boot.sh"
    script.write_text(
        BOOT.replace("{masked}", " ".join(MASKED))
        .replace("{target}", TARGET)
        .replace("{systemd}", str(SYSTEMD))
    )
    script.chmod(0o755)
    env = {"PATH": BASE_PATH, "LANG": "C.UTF-8", "NVIDIA_DEVICES": "1" if nvidia_devices else ""}
    with open(workdir / "boot.log", "wb") as log:
        process = subprocess.Popen(
            ["unshare", "--pid", "--fork", "--mount", "--propagation", "private",
             "--mount-proc", str(script), str(workdir)],
            env=env, cwd="/", stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C in pytest must not reach PID 1 first
        )  # fmt: skip
    system = SystemdSystem(workdir, _child_pid(process), python, process)
    owner = {
        "pytest": [os.getpid(), _started(os.getpid())],
        "pid1": [system.pid, _started(system.pid)],
    }
    (workdir / "owner.json").write_text(json.dumps(owner))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        state = system.run("systemctl", "is-system-running", timeout=10).stdout.strip()
        if state in ("running", "degraded"):
            return system
        time.sleep(0.1)
    stop(system)
    log_text = (workdir / "boot.log").read_text(errors="replace")[-3000:]
    pytest.fail(f"the systemd system manager did not start (needs root):\n{log_text}")


def stop(system: SystemdSystem) -> None:
    """kill -9 PID 1 of the namespace (everything in it dies, its mounts go), then remove
    its cgroups and its workdir."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(system.pid, signal.SIGKILL)
    try:
        system.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        system.process.kill()
        system.process.wait()
    _remove_run(system.workdir)


def _remove_run(workdir: Path) -> None:
    for hierarchy in (Path("/sys/fs/cgroup/systemd"), Path("/sys/fs/cgroup/unified")):
        remove_cgroup(hierarchy / f"stackctl-system-{workdir.name}")
    shutil.rmtree(workdir, ignore_errors=True)


def _started(pid: int) -> str | None:
    """A process's start time (/proc/PID/stat field 22): with the pid, who it is."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def remove_stale_runs(base: Path) -> None:
    """Stop the systems a test session that no longer runs left behind (it was killed before
    its fixture could stop them); a live session's systems are left alone."""
    for owner_file in base.glob("run-*/owner.json"):
        try:
            owner = json.loads(owner_file.read_text())
        except (OSError, ValueError):
            continue
        session, session_started = owner["pytest"]
        if _started(session) == session_started:
            continue  # that session still runs
        pid1, pid1_started = owner["pid1"]
        if _started(pid1) == pid1_started:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid1, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while _started(pid1) == pid1_started and time.monotonic() < deadline:
                time.sleep(0.05)
        _remove_run(owner_file.parent)


@pytest.fixture
def systemd_system() -> Iterator[Callable[..., SystemdSystem]]:
    """`boot(nvidia_devices=False)`: a fresh system manager for this test (see above)."""
    reason = _skip_reason()
    if reason and os.environ.get("CI"):
        pytest.fail(f"{reason}: CI must test system scope under a real systemd")
    if reason:
        pytest.skip(reason)
    base = system_dir()
    if any(base.resolve().is_relative_to(p) for p in (Path("/tmp"), Path("/etc"), Path("/var"))):
        pytest.fail(f"STACKCTL_TEST_SYSTEM_DIR={base} must not be under /tmp, /etc or /var")
    base.mkdir(parents=True, exist_ok=True)
    base.chmod(0o755)
    remove_stale_runs(base)
    canary = Canary()
    booted: list[SystemdSystem] = []

    def start(nvidia_devices: bool = False) -> SystemdSystem:
        workdir = Path(tempfile.mkdtemp(prefix="run-", dir=base))
        workdir.chmod(0o755)  # the service account reads the interpreter and fakes in it
        system = boot(workdir, nvidia_devices)
        booted.append(system)
        canary.check("after booting the system manager")
        return system

    try:
        yield start
    finally:
        for system in booted:
            stop(system)
        canary.check("after stopping the system manager")
        canary.remove()


__all__ = ["SystemdSystem", "systemd_system"]
