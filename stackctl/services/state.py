"""The record of what stackctl wrote, so hand edits are noticed, shown and backed up.

`paths.state_file` (state.json) maps each unit file stackctl wrote to its service, unit name,
SHA-256 and text:

    {"version": 1,
     "units": {"/home/alice/.config/systemd/user/stackctl-ollama.service":
               {"service": "ollama", "name": "stackctl-ollama.service",
                "sha256": "…", "content": "[Unit]…"}}}

It keeps the text to show what changed (`stackctl units diff`), and because a launchd plist
may hold a secret the state file is mode 0600. Other top-level keys are kept as they are.
A unit file is only ever removed when it is recorded here: stackctl deletes nothing else.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stackctl.errors import StackctlError
from stackctl.fsutil import SECRET_MODE, atomic_write, backup
from stackctl.paths import Paths, paths_for
from stackctl.services.base import Drift, Unit
from stackctl.services.names import start_order

VERSION = 1


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Record:
    """One unit file stackctl wrote."""

    path: Path
    service: str  # ollama | vllm | proxy | openwebui | target
    name: str  # unit name or launchd label
    sha256: str
    content: str


@dataclass(frozen=True)
class FileChange:
    """What writing one unit file did: status new | changed | unchanged, and any backup."""

    path: Path
    status: str
    backup: Path | None = None


class NothingInstalled(StackctlError):
    """start/stop/restart/logs with no recorded units."""

    def __init__(self, paths: Paths):
        message = "no stackctl services are installed: run `stackctl up`"
        if paths.scope == "user" and paths_for(paths.platform, "system").state_file.exists():
            message = (
                "no stackctl services are installed for this user, but a system-wide stack "
                "is: run the command with sudo"
            )
        super().__init__(message)


class UnitRecord:
    """The state file: load, change, save."""

    def __init__(self, paths: Paths):
        self.paths = paths
        self.file = paths.state_file
        self._data: dict[str, Any] = self._load()

    def _load(self) -> dict[str, Any]:
        try:
            data = json.loads(self.file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {"version": VERSION, "units": {}}
        except (OSError, ValueError) as exc:
            raise StackctlError(
                f"cannot read {self.file} ({exc}): move it aside and run `stackctl up` "
                "to write the units again"
            ) from None
        data.setdefault("units", {})
        return data

    @property
    def records(self) -> list[Record]:
        return [
            Record(Path(path), e["service"], e["name"], e["sha256"], e["content"])
            for path, e in self._data["units"].items()
        ]

    def get(self, path: Path) -> Record | None:
        return next((r for r in self.records if r.path == path), None)

    def services(self) -> list[str]:
        """The installed services in start order (the systemd target is not a service)."""
        names = {r.service for r in self.records if r.service != "target"}
        return start_order(sorted(names))

    def unit_name(self, service: str) -> str:
        return next(r.name for r in self.records if r.service == service)

    def record(self, path: Path, unit: Unit, name: str) -> None:
        self._data["units"][str(path)] = {
            "service": unit.service,
            "name": name,
            "sha256": sha256(unit.content),
            "content": unit.content,
        }

    def forget(self, path: Path) -> None:
        self._data["units"].pop(str(path), None)

    def save(self) -> None:
        """Write the state file (mode 0600); with nothing recorded, remove it."""
        if not self._data["units"] and set(self._data) <= {"version", "units"}:
            self.file.unlink(missing_ok=True)
            return
        self._data["version"] = VERSION
        atomic_write(self.file, json.dumps(self._data, indent=2) + "\n", SECRET_MODE)

    def select(self, requested: list[str] | tuple[str, ...]) -> list[str]:
        """The requested services (all installed ones when none), checked, in start order."""
        installed = self.services()
        if not installed:
            raise NothingInstalled(self.paths)
        for name in requested:
            if name not in installed:
                raise StackctlError(
                    f"no service named '{name}' is installed: choose from {', '.join(installed)}"
                )
        return start_order(list(dict.fromkeys(requested))) if requested else installed


def read_unit(path: Path) -> str | None:
    """The text of a unit file, or None when there is none."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None


def edited_by_hand(current: str | None, recorded: Record | None) -> bool:
    """True when a unit file's text (None: no file) is not what stackctl last wrote there
    (or stackctl never wrote there)."""
    if current is None:
        return False
    return recorded is None or sha256(current) != recorded.sha256


def write_unit(record: UnitRecord, path: Path, unit: Unit, name: str) -> FileChange:
    """Write one unit atomically (0644; 0600 with a secret), backing up a hand-edited file."""
    current = read_unit(path)
    if current == unit.content:
        if path.stat().st_mode & 0o777 != unit.mode:
            path.chmod(unit.mode)
        record.record(path, unit, name)
        return FileChange(path, "unchanged")
    saved = None
    if edited_by_hand(current, record.get(path)):
        saved = backup(path, record.paths.backups_dir)
    atomic_write(path, unit.content, unit.mode)
    record.record(path, unit, name)
    return FileChange(path, "changed" if current is not None else "new", saved)


def remove_unit(record: UnitRecord, path: Path) -> Path | None:
    """Delete a recorded unit file (backing it up first if edited by hand); return the backup."""
    saved = None
    if edited_by_hand(read_unit(path), record.get(path)):
        saved = backup(path, record.paths.backups_dir)
    path.unlink(missing_ok=True)
    record.forget(path)
    return saved


def drift(record: UnitRecord) -> list[Drift]:
    """Recorded unit files whose text changed since stackctl wrote them (or that are gone)."""
    found = []
    for entry in record.records:
        current = read_unit(entry.path)
        if current is not None and not edited_by_hand(current, entry):
            continue
        diff = difflib.unified_diff(
            entry.content.splitlines(keepends=True),
            (current or "").splitlines(keepends=True),
            fromfile=f"{entry.path} (written by stackctl)",
            tofile=f"{entry.path} ({'on disk' if current is not None else 'deleted'})",
        )
        found.append(Drift(entry.path, "".join(diff)))
    return found


class RecordedUnits:
    """What both service managers answer from the state file alone."""

    paths: Paths

    def installed_services(self) -> list[str]:
        """The services stackctl installed, in start order (empty when none)."""
        return UnitRecord(self.paths).services()

    def drift(self) -> list[Drift]:
        """Installed unit files edited by hand; raises NothingInstalled when none are installed."""
        record = UnitRecord(self.paths)
        record.select([])  # raises NothingInstalled, as start/stop/logs do
        return drift(record)
