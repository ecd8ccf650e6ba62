"""What stackctl calls its units: systemd unit names and launchd labels, and service order."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from stackctl.stack import SERVICES

if TYPE_CHECKING:
    from stackctl.paths import Paths

SYSTEMD_TARGET = "stackctl.target"  # groups the stack: `systemctl stop stackctl.target` stops all
LAUNCHD_PREFIX = "dev.stackctl."


def systemd_unit(service: str) -> str:
    """`stackctl-ollama.service`; the pseudo-service `target` is `stackctl.target`."""
    return SYSTEMD_TARGET if service == "target" else f"stackctl-{service}.service"


def launchd_label(service: str) -> str:
    """`dev.stackctl.ollama`."""
    return LAUNCHD_PREFIX + service


def launchd_filename(service: str) -> str:
    return launchd_label(service) + ".plist"


def launchd_log_file(paths: Paths, service: str) -> Path:
    """Where a launchd job's stdout and stderr go (one file, so the lines stay in order) and
    where `stackctl logs` reads them."""
    return paths.log_dir / f"{service}.log"


def start_order(services: list[str]) -> list[str]:
    """Services sorted backend first, Open WebUI last (unknown names keep their place at the end)."""
    rank = {name: i for i, name in enumerate(SERVICES)}
    return sorted(services, key=lambda name: rank.get(name, len(rank)))
