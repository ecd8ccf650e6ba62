"""Which service manager runs the units: launchd on macOS, systemd on Linux."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from stackctl.paths import Paths
    from stackctl.services.base import ServiceManager


def manager_for(paths: Paths) -> ServiceManager:
    """The service manager for these locations' platform (launchd on macOS, systemd on
    Linux) and scope."""
    if paths.platform == "macos":
        from stackctl.services.launchd import LaunchdManager

        return LaunchdManager(paths)
    from stackctl.services.systemd import SystemdManager

    return SystemdManager(paths)
