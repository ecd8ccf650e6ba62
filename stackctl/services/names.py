"""What stackctl calls its units: systemd unit names and launchd labels, and service order."""

from __future__ import annotations

from stackctl.stack import SERVICES

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


def start_order(services: list[str]) -> list[str]:
    """Services sorted backend first, Open WebUI last (unknown names keep their place at the end)."""
    rank = {name: i for i, name in enumerate(SERVICES)}
    return sorted(services, key=lambda name: rank.get(name, len(rank)))
