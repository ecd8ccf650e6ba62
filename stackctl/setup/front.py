"""Caddy for the HTTPS front (`expose: true`): installed from the system's packages.

Linux: Debian's and Ubuntu's `caddy` package (apt). Root (system scope) installs it as a step
of the plan; a person without root is told the command, as with Ollama. The package enables
its own caddy.service, which serves /etc/caddy/Caddyfile's `:80` welcome page over plain
HTTP on every address: the step (and the message) disables it; stackctl runs Caddy from its
own unit with its own Caddyfile (stackctl/front.py).
macOS: Homebrew's `caddy` formula, like Ollama (`--upgrade` upgrades it). `brew services`
would run a Caddy of its own; stackctl does not use it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from stackctl import homebrew
from stackctl.errors import StackctlError
from stackctl.homebrew import brew_argv
from stackctl.paths import is_root
from stackctl.plan import Step, command_step
from stackctl.services.inputs import DEFAULT_BREW_PREFIX
from stackctl.setup.context import Context

APT_INSTALL = ["apt-get", "install", "-y", "caddy"]
DISABLE_PACKAGED = ["systemctl", "disable", "--now", "caddy.service"]


def linux_install_command() -> str:
    """What a person runs to get Caddy on Debian/Ubuntu (and stop the package's own one)."""
    return f"sudo {' '.join(APT_INSTALL)} && sudo {' '.join(DISABLE_PACKAGED)}"


def require_caddy(ctx: Context) -> None:
    """Linux without root: stop with the install command when Caddy is missing."""
    if ctx.config.expose and not is_root() and shutil.which("caddy") is None:
        raise StackctlError(
            "expose: true serves the stack over HTTPS through Caddy, which is not installed: "
            f"run `{linux_install_command()}` (the package's own caddy.service would serve "
            "a welcome page over plain HTTP on port 80), then `stackctl up` again"
        )


def require_free_openwebui_front_port(ctx: Context) -> None:
    """The front's second port (Open WebUI's, not a service of its own) must be free too:
    `common.require_free_ports` checks every service's port, the front's first among them."""
    port = ctx.config.tls.openwebui_port
    holder = ctx.facts.ports.get(port)
    if not ctx.config.expose or not ctx.config.openwebui.enabled or holder is None or holder.ours:
        return
    who = f"{holder.name} (pid {holder.pid})" if holder.pid else "another user's process"
    raise StackctlError(
        f"port {port} (tls.openwebui_port, Open WebUI over HTTPS) is taken by {who}: stop "
        f"it, or give tls.openwebui_port another port in {ctx.config_path}, then run "
        "`stackctl up` again"
    )


def caddy_steps(ctx: Context) -> list[Step]:
    """Install Caddy when the stack is exposed and it is missing (see the module docstring)."""
    if not ctx.config.expose:
        return []
    if ctx.platform == "macos":
        return _brew_steps(ctx)
    if not is_root():
        return []  # require_caddy stopped the plan when it is missing
    return [
        command_step(
            description="Install Caddy (the HTTPS front) with apt",
            check=lambda: shutil.which("caddy") is not None,
            argv=APT_INSTALL,
            fix="check the network and apt's sources (`apt-get update`)",
        ),
        command_step(
            description="Disable the caddy package's own service (a plain-HTTP page on :80)",
            check=lambda: not _packaged_service_enabled(),
            argv=DISABLE_PACKAGED,
        ),
    ]


def _packaged_service_enabled() -> bool:
    unit = Path("/etc/systemd/system/multi-user.target.wants/caddy.service")
    return unit.is_symlink() or unit.exists()


def _brew_steps(ctx: Context) -> list[Step]:
    binary = Path(ctx.facts.brew_prefix or DEFAULT_BREW_PREFIX, "bin", "caddy")
    steps = [
        command_step(
            description="Install Caddy (the HTTPS front) with Homebrew",
            check=lambda: binary.exists() and homebrew.installed("caddy"),
            argv=brew_argv("install", "caddy"),
            fix="check the network, then `brew doctor`",
        )
    ]
    if ctx.options.upgrade:
        steps.append(
            command_step(
                description="Upgrade Caddy with Homebrew",
                check=lambda: False,
                argv=brew_argv("upgrade", "caddy"),
            )
        )
    return steps
