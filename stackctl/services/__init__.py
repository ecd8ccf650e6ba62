"""Service units (rendering) and the service managers that run them (launchd, systemd).

from stackctl.services import manager_for
from stackctl.services.inputs import inputs_for_host
from stackctl.services.render import render_units

units = render_units(config, inputs_for_host(config, config_path))
report = manager_for(config).install(units)   # InstallReport
manager_for(config).status([])                # [ServiceState], every installed service
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from stackctl.config import Config
    from stackctl.paths import Platform, Scope
    from stackctl.services.base import ServiceManager


def manager_for(
    config: Config, *, platform: Platform | None = None, scope: Scope | None = None
) -> ServiceManager:
    """The service manager for this platform (launchd on macOS, systemd on Linux) and the
    config's resolved scope (system when root unless the config says otherwise)."""
    from stackctl.config import resolve_scope
    from stackctl.paths import current_platform, paths_for

    platform = platform or current_platform()
    paths = paths_for(platform, scope or resolve_scope(config))  # type: ignore[arg-type]
    if platform == "macos":
        from stackctl.services.launchd import LaunchdManager

        return LaunchdManager(paths)
    from stackctl.services.systemd import SystemdManager

    return SystemdManager(paths)
