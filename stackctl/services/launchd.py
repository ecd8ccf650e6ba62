"""The launchd service manager: `launchctl bootstrap/bootout/enable/kickstart/print`.

User scope uses the `gui/<uid>` domain (the person's login session, plists in
~/Library/LaunchAgents); system scope the `system` domain (/Library/LaunchDaemons, jobs run
as their plist's UserName). Logs are the files named by StandardOutPath/StandardErrorPath.
"""

from __future__ import annotations

import os
import plistlib
import re
import shlex
import time
from datetime import datetime, timezone
from pathlib import Path

from stackctl import proc
from stackctl.errors import CommandFailed, StackctlError
from stackctl.paths import Paths
from stackctl.services import state
from stackctl.services.base import InstallReport, ServiceState, Unit
from stackctl.services.names import (
    launchd_filename,
    launchd_label,
    launchd_log_file,
    start_order,
)

NOT_LOADED = (3, 113)  # "Boot-out failed: 3: No such process"; print: 113 "Could not find service"
# bootstrap while launchd still tears the old job down: "5: Input/output error",
# "37: Operation already in progress"
BUSY = (5, 37)
IO_ERROR = 5
NO_GUI_SESSION = 125  # "Bootstrap failed: 125: Domain does not support specified action"
# `bootout` returns before the job has left its domain (public reports: 3-5 s, more while
# the job handles SIGTERM): wait this long for `print` to stop listing it...
DRAIN_SECONDS = 30.0
# ...then retry a bootstrap that still finds it busy this long.
BUSY_RETRY_SECONDS = 15.0
POLL_SECONDS = 0.25
_FIELD = re.compile(r"^\t([a-z][a-z ]*?) = (.*)$")


class LaunchdManager(state.RecordedUnits):
    """ServiceManager for launchd."""

    def __init__(self, paths: Paths):
        self.paths = paths
        self.unit_dir = paths.unit_dir
        self.domain = "system" if paths.scope == "system" else f"gui/{os.getuid()}"

    def _target(self, service: str) -> str:
        return f"{self.domain}/{launchd_label(service)}"

    def _plist(self, service: str) -> Path:
        return self.unit_dir / launchd_filename(service)

    def _launchctl(self, *args: str, check: bool = True) -> proc.Result:
        return proc.run(["launchctl", *args], check=check)

    def _print(self, service: str) -> dict[str, str] | None:
        """The job's `launchctl print` fields, or None when it is not loaded."""
        result = self._launchctl("print", self._target(service), check=False)
        if result.code in NOT_LOADED:
            return None
        if not result.ok:
            raise CommandFailed(result.argv, result.code, result.stderr or result.stdout)
        return parse_print(result.stdout)

    def _load_commands(self, service: str) -> tuple[list[str], list[str]]:
        """`enable` (clears a disabled override, which would make bootstrap fail), then
        `bootstrap`: the launchctl arguments that load a job."""
        return ["enable", self._target(service)], [
            "bootstrap",
            self.domain,
            str(self._plist(service)),
        ]

    def planned_commands(self, units: list[Unit]) -> list[list[str]]:
        """What `install` runs to load units that are not loaded yet (for --dry-run)."""
        return [
            ["launchctl", *args] for unit in units for args in self._load_commands(unit.service)
        ]

    def _load(self, service: str) -> None:
        """Load a job: enable + bootstrap, the bootstrap retried while launchd still
        finishes tearing down an earlier instance."""
        enable, bootstrap = self._load_commands(service)
        self._launchctl(*enable)
        deadline = time.monotonic() + BUSY_RETRY_SECONDS
        while True:
            result = self._launchctl(*bootstrap, check=False)
            if result.ok:
                return
            if result.code not in BUSY or time.monotonic() > deadline:
                hint = self._bootstrap_hint(service, result.code)
                raise CommandFailed(result.argv, result.code, result.stderr, hint=hint)
            time.sleep(POLL_SECONDS)

    def _bootstrap_hint(self, service: str, code: int) -> str:
        """What to do about a bootstrap that keeps failing."""
        if code == NO_GUI_SESSION:
            return (
                f"the {self.domain} domain exists only while you are logged in at the "
                "Mac's screen; for a headless Mac use `scope: system` (sudo stackctl up)"
            )
        if code == IO_ERROR:
            # A lasting 5, once the old job is gone: launchd will not load this one. The
            # Background Task Management switch (macOS 13+) and a bad plist both look so.
            plist = self._plist(service)
            program = _program_name(plist) or service
            return (
                f"launchd refuses to load {launchd_label(service)}. Either it is switched off "
                "in System Settings > General > Login Items & Extensions > Allow in the "
                f"Background (switch on the entry for {program}, then run `stackctl up` "
                f"again), or its plist is invalid (`plutil -lint {shlex.quote(str(plist))}` "
                "says why)"
            )
        return ""

    def _unload(self, service: str) -> None:
        """bootout, then wait until launchd no longer lists the job: bootout returns while
        the job is still being torn down, and loading it again meanwhile fails."""
        result = self._launchctl("bootout", self._target(service), check=False)
        if not result.ok and result.code not in NOT_LOADED:
            raise CommandFailed(result.argv, result.code, result.stderr)
        deadline = time.monotonic() + DRAIN_SECONDS
        while self._print(service) is not None:
            if time.monotonic() > deadline:
                raise StackctlError(
                    f"launchd still lists {self._target(service)} {DRAIN_SECONDS:g}s after "
                    "`launchctl bootout`: its process has not exited yet; `stackctl status` "
                    f"shows it, and `stackctl stop {service}` tries again"
                )
            time.sleep(POLL_SECONDS)

    def install(self, units: list[Unit], *, prune: bool = True) -> InstallReport:
        """Write the plists; bootstrap new ones, reload changed ones (bootout + bootstrap),
        kickstart loaded ones that are not running; leave the rest alone."""
        record = state.UnitRecord(self.paths)
        report = InstallReport()
        self.paths.log_dir.mkdir(parents=True, exist_ok=True)  # launchd does not create it
        # Saved once at the end, also when a launchctl command fails part way: the state
        # then still records every plist written so far.
        try:
            wanted = {self.unit_dir / unit.filename for unit in units}
            for entry in reversed(record.records):
                if prune and entry.path not in wanted:
                    self._unload(entry.service)
                    report.add_file(entry.path, "removed", state.remove_unit(record, entry.path))
            for unit in units:
                self._install_one(record, unit, report)
        finally:
            record.save()
        return report

    def _install_one(self, record: state.UnitRecord, unit: Unit, report: InstallReport) -> None:
        """Write one plist and load, reload or kickstart its job as needed."""
        label = launchd_label(unit.service)
        change = state.write_unit(record, self.unit_dir / unit.filename, unit, label)
        report.add_file(change.path, change.status, change.backup)
        job = self._print(unit.service)
        if change.status == "unchanged":
            if job is None:
                self._load(unit.service)
                report.started.append(unit.service)
            elif job.get("state") != "running":
                self._launchctl("kickstart", self._target(unit.service))
                report.started.append(unit.service)
            return
        if job is not None:
            self._unload(unit.service)  # launchd reads a plist only when it loads it
            self._load(unit.service)
            report.restarted.append(unit.service)
        else:
            self._load(unit.service)
            report.started.append(unit.service)

    def uninstall(self) -> list[Path]:
        """bootout every recorded job (Open WebUI first) and delete exactly those plists."""
        record = state.UnitRecord(self.paths)
        removed = []
        for entry in reversed(record.records):
            self._unload(entry.service)
            if entry.path.exists():
                removed.append(entry.path)
            state.remove_unit(record, entry.path)
        record.save()
        return removed

    def start(self, services: list[str]) -> list[str]:
        """kickstart loaded jobs; load (bootstrap) the ones `stop` unloaded."""
        selected = state.UnitRecord(self.paths).select(services)
        for service in selected:
            if self._print(service) is None:
                self._load(service)
            else:
                self._launchctl("kickstart", self._target(service))
        return selected

    def stop(self, services: list[str]) -> list[str]:
        """bootout: with KeepAlive, killing a job only makes launchd start it again. The
        plist stays, so the job loads again at the next login (or boot)."""
        selected = list(reversed(state.UnitRecord(self.paths).select(services)))
        for service in selected:
            self._unload(service)
        return selected

    def restart(self, services: list[str]) -> list[str]:
        selected = state.UnitRecord(self.paths).select(services)
        for service in selected:
            if self._print(service) is None:
                self._load(service)
            else:
                self._launchctl("kickstart", "-k", self._target(service))
        return selected

    def status(self, services: list[str]) -> list[ServiceState]:
        installed = self.installed_services()
        wanted = start_order(list(services)) if services else installed
        states = []
        for service in wanted:
            label = launchd_label(service)
            if service not in installed:
                states.append(ServiceState(service, label, False, "not-installed"))
                continue
            job = self._print(service)
            if job is None:
                states.append(ServiceState(service, label, True, "inactive", "not loaded"))
            else:
                states.append(job_state(service, label, job))
        return states

    def logs(self, service: str | None = None, lines: int = 50, follow: bool = False) -> str | None:
        """The last lines of the services' log files; with follow, `tail -F` them."""
        selected = state.UnitRecord(self.paths).select([service] if service else [])
        files = [launchd_log_file(self.paths, s) for s in selected]
        if follow:
            proc.follow(["tail", "-n", str(lines), "-F", *map(str, files)])
            return None
        texts = ["".join(tail(path, lines)) if path.exists() else "" for path in files]
        if len(files) == 1:
            return texts[0]
        # like `tail` with several files: a header per file
        empty = "(nothing logged yet)\n"
        return "\n".join(
            f"==> {path} <==\n{text or empty}" for path, text in zip(files, texts, strict=True)
        )


def _program_name(plist: Path) -> str | None:
    """The name of the program a plist runs (what Login Items lists it under)."""
    try:
        with open(plist, "rb") as fh:
            argv = plistlib.load(fh).get("ProgramArguments") or []
    except (OSError, plistlib.InvalidFileException):
        return None
    return Path(argv[0]).name if argv else None


def tail(path: Path, lines: int, block: int = 8192) -> list[str]:
    """The last `lines` lines of a file, read from its end (log files grow without bound)."""
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        end = position = fh.tell()
        data = b""
        while position > 0 and data.count(b"\n") <= lines:
            position = max(0, position - block)
            fh.seek(position)
            data = fh.read(end - position)
    text = data.decode("utf-8", errors="replace").splitlines(keepends=True)
    return text[-lines:]


def parse_print(text: str) -> dict[str, str]:
    """The top-level `name = value` fields of `launchctl print` (nested blocks skipped)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        match = _FIELD.match(line)
        if match and match.group(1) not in fields:
            fields[match.group(1)] = match.group(2).strip()
    return fields


def _leading_int(value: str) -> int | None:
    match = re.match(r"-?\d+", value)
    return int(match.group()) if match else None


def job_state(service: str, label: str, job: dict[str, str]) -> ServiceState:
    """Map launchd's job state onto systemd's words (active/activating/inactive/failed)."""
    raw = job.get("state", "unknown")
    pid = _leading_int(job.get("pid", ""))
    last_exit = _leading_int(job.get("last exit code", ""))  # "(never exited)" -> None
    signal = job.get("last terminating signal")
    if signal is not None:
        number = re.search(r"(\d+)\s*$", signal)
        last_exit = 128 + int(number.group(1)) if number else last_exit
    if raw == "running":
        active = "active"
    elif raw in ("spawn scheduled", "spawning", "xpcproxy"):
        active = "activating"
    elif last_exit:
        active = "failed"
    else:
        active = "inactive"
    runs = _leading_int(job.get("runs", ""))
    return ServiceState(
        service=service,
        unit=label,
        installed=True,
        state=active,
        sub_state=raw,
        pid=pid,
        since=_started(pid),
        restarts=max(runs - 1, 0) if runs is not None else None,
        last_exit=last_exit,
        result="exit-code" if last_exit else "",
    )


def _started(pid: int | None) -> datetime | None:
    """launchctl print has no start time; the process's own creation time is it."""
    if not pid:
        return None
    import psutil

    try:
        return datetime.fromtimestamp(psutil.Process(pid).create_time(), tz=timezone.utc)
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
