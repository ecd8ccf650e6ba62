"""What stackctl calls its units: systemd unit names and launchd labels, and service order."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from stackctl.registry import LAUNCHD_PREFIX, SYSTEMD_TARGET, start_order

if TYPE_CHECKING:
    from stackctl.paths import Paths

__all__ = [
    "LAUNCHD_PREFIX",
    "SYSTEMD_TARGET",
    "launchd_filename",
    "launchd_label",
    "launchd_log_file",
    "start_order",
    "systemd_unit",
]


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
