"""The one interface both service managers (launchd and systemd) implement."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from stackctl.fsutil import PUBLIC_MODE, SECRET_MODE

if TYPE_CHECKING:
    from stackctl.paths import Paths


@dataclass(frozen=True)
class Unit:
    """A unit file stackctl writes: which service it runs, its file name and its text."""

    service: str  # ollama | vllm | proxy | openwebui | target (systemd's stackctl.target)
    filename: str  # stackctl-ollama.service, dev.stackctl.ollama.plist, ...
    content: str
    secret: bool = False  # True: holds a secret, written with mode 0600

    @property
    def mode(self) -> int:
        """The file mode to write it with: 0600 when it holds a secret, else 0644."""
        return SECRET_MODE if self.secret else PUBLIC_MODE


@dataclass
class ServiceState:
    """What the service manager says about one service."""

    service: str
    unit: str  # unit name or launchd label
    installed: bool
    # active | activating | inactive | failed | not-installed (launchd's states mapped onto these)
    state: str
    sub_state: str = ""
    pid: int | None = None
    since: datetime | None = None
    restarts: int | None = None
    last_exit: int | None = None
    # systemd's Result (success, exit-code, signal, ...); launchd: "" or "exit-code"
    result: str = ""


@dataclass(frozen=True)
class Drift:
    """A unit file whose text differs from what stackctl last wrote (edited by hand)."""

    path: Path
    diff: str  # unified diff, recorded -> on disk


@dataclass
class InstallReport:
    """What `ServiceManager.install` did. Empty lists everywhere: nothing needed doing."""

    written: list[Path] = field(default_factory=list)  # new or changed unit files
    unchanged: list[Path] = field(default_factory=list)
    backed_up: list[tuple[Path, Path]] = field(default_factory=list)  # (unit file, its backup)
    removed: list[Path] = field(default_factory=list)  # units of services no longer in the stack
    started: list[str] = field(default_factory=list)  # services enabled/loaded and started
    restarted: list[str] = field(default_factory=list)  # running services whose unit changed

    @property
    def changed(self) -> bool:
        return bool(self.written or self.removed or self.started or self.restarted)

    def add_file(self, path: Path, status: str, backup: Path | None = None) -> None:
        """Count one unit file (status new | changed | unchanged | removed) and its backup."""
        if backup is not None:
            self.backed_up.append((path, backup))
        by_status = {"unchanged": self.unchanged, "removed": self.removed}
        by_status.get(status, self.written).append(path)


class ServiceManager(Protocol):
    """install(units), uninstall, start, stop, restart, status, logs, drift.

    Service names are the stack's (`ollama`, `vllm`, `proxy`, `openwebui`); an empty list
    means every installed service. start/stop/restart/logs/drift raise `StackctlError` ("run
    `stackctl up`") when nothing is installed; `status` reports `not-installed` instead.
    """

    paths: Paths  # the platform and scope's locations (unit_dir, state_file, log_dir, ...)

    def install(self, units: list[Unit], *, prune: bool = True) -> InstallReport:
        """Write units atomically (backing up hand-edited ones), load, enable and start them.

        Only services whose unit changed are restarted; a re-run with nothing changed runs
        no state-changing command. Units recorded earlier but absent now are removed, unless
        `prune` is False (`up` starts the backend alone first, then installs every unit).
        """
        ...

    def planned_commands(self, units: list[Unit]) -> list[list[str]]:
        """The commands `install` runs to load and start units that are not installed yet:
        what `up --dry-run` shows, from the same code that runs them."""
        ...

    def installed_services(self) -> list[str]:
        """The services stackctl installed, in start order (empty when none)."""
        ...

    def uninstall(self) -> list[Path]:
        """Stop and remove every unit stackctl installed (and only those); return the removed files."""
        ...

    def start(self, services: list[str]) -> list[str]:
        """Start services (all installed when empty); return those acted on, in order."""
        ...

    def stop(self, services: list[str]) -> list[str]:
        """Stop services in reverse start order; return those acted on, in order."""
        ...

    def restart(self, services: list[str]) -> list[str]: ...

    def status(self, services: list[str]) -> list[ServiceState]: ...

    def logs(self, service: str | None = None, lines: int = 50, follow: bool = False) -> str | None:
        """The last lines of a service's log (None: every installed service's); with follow,
        stream to the terminal until interrupted (returns None)."""
        ...

    def drift(self) -> list[Drift]:
        """Installed unit files edited by hand (or deleted) since stackctl wrote them."""
        ...
