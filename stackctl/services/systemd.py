"""The systemd service manager: `systemctl [--user]` for units, `journalctl` for logs."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

from stackctl import proc
from stackctl.errors import CommandFailed, StackctlError
from stackctl.paths import Paths
from stackctl.services import state
from stackctl.services.base import InstallReport, ServiceState, Unit
from stackctl.services.names import SYSTEMD_TARGET, start_order, systemd_unit

RUNNING = ("active", "activating", "reloading")
STATUS_PROPERTIES = (
    "Id",
    "LoadState",
    "ActiveState",
    "SubState",
    "MainPID",
    "ExecMainStartTimestamp",
    "StateChangeTimestamp",
    "NRestarts",
    "Result",
    "ExecMainCode",
    "ExecMainStatus",
)
CLD_EXITED = "1"  # ExecMainCode: how the main process ended (siginfo si_code)


class SystemdManager(state.RecordedUnits):
    """ServiceManager for systemd, user scope (`systemctl --user`) or system scope."""

    def __init__(self, paths: Paths):
        self.paths = paths
        self.scope = paths.scope
        self.unit_dir = paths.unit_dir
        self._scope_flag = ["--user"] if paths.scope == "user" else []

    def _argv(self, *args: str) -> list[str]:
        return ["systemctl", *self._scope_flag, *args]

    def planned_commands(self, units: list[Unit]) -> list[list[str]]:
        """What `install` runs for units that are not installed yet (for --dry-run)."""
        return [self._argv("daemon-reload"), self._argv("enable", "--now", *self._names_of(units))]

    @staticmethod
    def _names_of(units: list[Unit]) -> list[str]:
        return [unit.filename for unit in units]

    def _systemctl(self, *args: str, check: bool = True, env: dict | None = None) -> proc.Result:
        result = proc.run(self._argv(*args), check=False, env=env)
        if result.ok or not check:
            return result
        unreachable(self.scope, result)
        raise CommandFailed(
            result.argv,
            result.code,
            result.stderr,
            hint="`stackctl logs SERVICE` shows what the service printed before it failed",
        )

    def install(self, units: list[Unit], *, prune: bool = True) -> InstallReport:
        """Write the units, remove stale ones, daemon-reload if anything changed, then
        `enable --now` what is not enabled and running, and restart what changed."""
        record = state.UnitRecord(self.paths)
        report = InstallReport()
        wanted = {self.unit_dir / unit.filename for unit in units}
        stale = [r for r in record.records if r.path not in wanted] if prune else []
        if stale:
            # Stop and disable first: a unit whose file is gone cannot be disabled any more.
            present = [r.name for r in stale if r.path.exists()]
            if present:
                self._systemctl("disable", "--now", *present)
            for entry in stale:
                report.add_file(entry.path, "removed", state.remove_unit(record, entry.path))
        changed: list[str] = []
        for unit in units:
            change = state.write_unit(record, self.unit_dir / unit.filename, unit, unit.filename)
            report.add_file(change.path, change.status, change.backup)
            if change.status != "unchanged":
                changed.append(unit.filename)
        record.save()
        if report.written or report.removed:
            self._systemctl("daemon-reload")
        if report.removed:
            self._systemctl("reset-failed", *[r.name for r in stale], check=False)
        names = self._names_of(units)
        now = self._show(names, ("Id", "UnitFileState", "ActiveState"))
        to_start = [
            name
            for name in names
            if now[name].get("UnitFileState") != "enabled"
            or now[name].get("ActiveState") not in RUNNING
        ]
        to_restart = [
            name
            for name in changed
            if name != SYSTEMD_TARGET
            and name not in to_start
            and now[name].get("ActiveState") in RUNNING
        ]
        if to_start:
            self._systemctl("enable", "--now", *to_start)
        if to_restart:
            self._systemctl("restart", *to_restart)
        by_name = {unit.filename: unit.service for unit in units}
        report.started = [by_name[n] for n in to_start if n != SYSTEMD_TARGET]
        report.restarted = [by_name[n] for n in to_restart]
        return report

    def uninstall(self) -> list[Path]:
        """Stop and disable every recorded unit, delete exactly those files, reload."""
        record = state.UnitRecord(self.paths)
        entries = record.records
        if not entries:
            return []
        present = [r.name for r in entries if r.path.exists()]
        if present:
            self._systemctl("disable", "--now", *present)
        removed = []
        for entry in entries:
            if entry.path.exists():
                removed.append(entry.path)
            state.remove_unit(record, entry.path)
        record.save()
        self._systemctl("daemon-reload")
        # A unit that failed stays listed (and in `systemctl --failed`) until reset.
        self._systemctl("reset-failed", *[r.name for r in entries], check=False)
        wants = self.unit_dir / f"{SYSTEMD_TARGET}.wants"
        if wants.is_dir() and not any(wants.iterdir()):
            wants.rmdir()  # systemctl disable leaves the emptied .wants directory behind
        return removed

    def _names(self, services: list[str]) -> tuple[list[str], list[str]]:
        """The selected services (see `UnitRecord.select`) and their unit names."""
        record = state.UnitRecord(self.paths)
        selected = record.select(services)
        return selected, [record.unit_name(s) for s in selected]

    def start(self, services: list[str]) -> list[str]:
        """Start services (all when none named); systemd orders them by their After=."""
        selected, names = self._names(services)
        self._systemctl("start", *names)
        return selected

    def stop(self, services: list[str]) -> list[str]:
        selected, names = self._names(services)
        self._systemctl("stop", *reversed(names))
        return list(reversed(selected))

    def restart(self, services: list[str]) -> list[str]:
        selected, names = self._names(services)
        self._systemctl("restart", *names)
        return selected

    def status(self, services: list[str]) -> list[ServiceState]:
        """State, sub-state, pid, since, restarts and last exit of each service."""
        record = state.UnitRecord(self.paths)
        installed = record.services()
        wanted = start_order(list(services)) if services else installed
        names = {s: record.unit_name(s) for s in wanted if s in installed}
        shown = self._show(list(names.values()), STATUS_PROPERTIES) if names else {}
        states = []
        for service in wanted:
            if service in names:
                states.append(parse_state(service, names[service], shown[names[service]]))
            else:
                states.append(ServiceState(service, systemd_unit(service), False, "not-installed"))
        return states

    def _show(self, names: list[str], properties: tuple[str, ...]) -> dict[str, dict[str, str]]:
        """`systemctl show -p … UNIT…` as {unit: {property: value}} (blocks come in order)."""
        if not names:
            return {}
        # TZ=UTC: timestamps are printed in the caller's zone, and only UTC parses reliably.
        result = self._systemctl("show", "-p", ",".join(properties), *names, env={"TZ": "UTC"})
        blocks = [b for b in result.stdout.strip().split("\n\n") if b.strip()]
        parsed = [
            dict(line.split("=", 1) for line in b.splitlines() if "=" in line) for b in blocks
        ]
        return dict(zip(names, parsed, strict=True))

    def logs(self, service: str | None = None, lines: int = 50, follow: bool = False) -> str | None:
        """The journal of one service (or the whole stack, interleaved)."""
        _, names = self._names([service] if service else [])
        views = self._journal_views(names)
        options = ["--no-pager", "-q", "-n", str(lines)]
        if follow:
            # -f never ends, so ask first (`-n 1`) which view holds the lines.
            view = views[0]
            if len(views) > 1:
                view = next((v for v in views if self._has_lines(v)), views[0])
            proc.follow(["journalctl", *view, *options, "-f"])
            return None
        results = []
        for view in views:
            result = proc.run(["journalctl", *view, *options], check=False)
            if result.ok and result.stdout.strip():
                return result.stdout
            results.append(result)
        first = results[0]  # nothing anywhere: the first view's (empty) answer, or its error
        if not first.ok:
            raise CommandFailed(first.argv, first.code, first.stderr)
        return first.stdout

    def _journal_views(self, names: list[str]) -> list[list[str]]:
        """Journal arguments that find these units' lines, the usual one first.

        `journalctl --user -u NAME` matches `_SYSTEMD_USER_UNIT=`, which journald derives
        from a cgroup path under user@UID.service. When a user manager runs elsewhere (root's
        manager in a container, as in CI) its services log as `_SYSTEMD_UNIT=NAME` in the
        system journal instead; then the system view, limited to our own uid, finds them.
        """
        units = [arg for name in names for arg in ("-u", name)]
        if self.scope == "system":
            return [units]
        return [["--user", *units], [*units, f"_UID={os.getuid()}"]]

    @staticmethod
    def _has_lines(view: list[str]) -> bool:
        probe = proc.run(["journalctl", *view, "--no-pager", "-q", "-n", "1"], check=False)
        return probe.ok and bool(probe.stdout.strip())


def unreachable(scope: str, result: proc.Result) -> None:
    """Raise a StackctlError saying what to do when systemctl cannot reach its manager."""
    reason = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else ""
    if "Failed to connect to bus" not in reason and "not been booted with systemd" not in reason:
        return
    if scope == "user":
        raise StackctlError(
            f"cannot reach your systemd user manager ({reason}): run stackctl in a login "
            "session, or keep the manager running without one with `sudo loginctl "
            "enable-linger $USER`; on a headless server use `scope: system`"
        )
    raise StackctlError(
        f"cannot reach systemd ({reason}): the Linux services need systemd as the init system"
    )


def parse_state(service: str, unit: str, props: dict[str, str]) -> ServiceState:
    """A ServiceState from `systemctl show` properties."""
    loaded = props.get("LoadState") == "loaded"
    active = props.get("ActiveState", "unknown")
    running = active in (*RUNNING, "deactivating")
    since = parse_timestamp(
        props.get("ExecMainStartTimestamp" if running else "StateChangeTimestamp", "")
    )
    code = props.get("ExecMainCode", "0")
    status = int(props.get("ExecMainStatus") or 0)
    last_exit = None
    if code == CLD_EXITED:
        last_exit = status
    elif code not in ("", "0"):
        last_exit = 128 + status  # killed or dumped by signal `status`, shell convention
    restarts = props.get("NRestarts", "")
    return ServiceState(
        service=service,
        unit=unit,
        installed=loaded,
        state=active if loaded else "not-installed",
        sub_state=props.get("SubState", ""),
        pid=int(props.get("MainPID") or 0) or None,
        since=since,
        restarts=int(restarts) if restarts.isdigit() else None,
        last_exit=last_exit,
        result=props.get("Result", ""),
    )


def parse_timestamp(value: str) -> datetime | None:
    """`Thu 2026-11-26 01:33:53 UTC` (systemctl show under TZ=UTC) -> aware datetime."""
    value = value.strip()
    if not value:
        return None
    try:
        parsed = datetime.strptime(value, "%a %Y-%m-%d %H:%M:%S %Z")
    except ValueError:
        return None
    return parsed.replace(tzinfo=timezone.utc)
