"""The one interface both service managers (launchd and systemd) implement."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class Unit:
    """A unit file stackctl writes: which service it runs, its file name and its text."""

    service: str  # ollama | vllm | proxy | openwebui | target (systemd's stackctl.target)
    filename: str  # stackctl-ollama.service, dev.stackctl.ollama.plist, ...
    content: str
    secret: bool = False  # True: holds a secret, written with mode 0600


@dataclass
class ServiceState:
    """What the service manager says about one service."""

    service: str
    unit: str  # unit name or launchd label
    installed: bool
    state: (
        str  # active | activating | inactive | failed | not-installed (launchd mapped onto these)
    )
    sub_state: str = ""
    pid: int | None = None
    since: datetime | None = None
    restarts: int | None = None
    last_exit: int | None = None


@dataclass(frozen=True)
class Drift:
    """A unit file whose text differs from what stackctl last wrote (edited by hand)."""

    path: Path
    diff: str  # unified diff, recorded -> on disk


class ServiceManager(Protocol):
    """install(units), uninstall, start, stop, restart, status, logs, drift."""

    def install(self, units: list[Unit]) -> list[Path]:
        """Write units atomically (backing up hand-edited ones) and load/enable them."""
        ...

    def uninstall(self) -> list[Path]:
        """Stop and remove every unit stackctl installed (and only those); return the removed files."""
        ...

    def start(self, services: list[str]) -> None: ...

    def stop(self, services: list[str]) -> None: ...

    def restart(self, services: list[str]) -> None: ...

    def status(self, services: list[str]) -> list[ServiceState]: ...

    def logs(self, service: str, lines: int = 50, follow: bool = False) -> str | None:
        """The last lines of a service's log; with follow, stream until interrupted (returns None)."""
        ...

    def drift(self) -> list[Drift]: ...
