"""Checks of the config, the host and its service manager."""

from __future__ import annotations

import shlex
from collections.abc import Iterator

from stackctl.doctor.base import Context, Finding
from stackctl.mac_limits import UPDATE_MACOS, macos_too_old
from stackctl.probe import describe_host


def check_config(ctx: Context) -> Iterator[Finding]:
    if ctx.config_problems:
        for problem in ctx.config_problems:
            yield Finding("error", "config", problem, "fix it, then run `stackctl config validate`")
    elif ctx.config.source is None:
        yield Finding(
            "ok", "config", f"no config file at {ctx.config_path}: the built-in defaults apply"
        )
    else:
        yield Finding("ok", "config", f"{ctx.config_path} is valid")


def check_host(ctx: Context) -> Iterator[Finding]:
    facts = ctx.facts
    yield Finding("ok", "host", describe_host(facts))
    too_old = macos_too_old(facts)
    if too_old:
        yield Finding("error", "host", too_old, UPDATE_MACOS)
    if facts.platform == "macos" and not facts.apple_silicon:
        yield Finding(
            "warn",
            "host",
            "Intel Mac: Ollama runs on the CPU only (its Metal acceleration needs Apple Silicon)",
            "expect slow answers; prefer small models",
        )


def check_services(ctx: Context) -> Iterator[Finding]:
    facts = ctx.facts
    scope = ctx.paths.scope
    if facts.init_system == "none":
        yield Finding(
            "error",
            "services",
            "no service manager: this Linux was not booted with systemd (no /run/systemd/system)",
            "run stackctl on a host booted with systemd (on WSL: set systemd=true in /etc/wsl.conf)",
        )
        return
    yield Finding("ok", "services", f"{facts.init_system} runs the stack ({scope} scope)")
    if scope == "system" and not facts.is_root:
        yield Finding(
            "warn",
            "services",
            "scope system installs services for the whole machine and needs root",
            "run `sudo stackctl up`",
        )
    if facts.platform == "macos" and scope == "system" and facts.filevault is not None:
        yield _filevault_finding(facts.filevault)
    if facts.platform == "linux" and scope == "user" and facts.linger is False:
        yield Finding(
            "warn",
            "linger",
            "user services stop when you log out (linger off)",
            f"run `{shlex.join(['loginctl', 'enable-linger', facts.user])}`",
        )


def _filevault_finding(on: bool) -> Finding:
    """System scope on a Mac means services at boot, which FileVault delays until a login:
    the data volume (and /Library, the users' homes) stays locked until someone unlocks it
    at the login window. fdesetup(8): `authrestart` restarts without that unlock, once."""
    if not on:
        return Finding("ok", "filevault", "FileVault is off: the services start at boot")
    return Finding(
        "warn",
        "filevault",
        "FileVault is on: after a restart the disk stays locked until someone logs in at the "
        "Mac's screen, so the services start only then",
        "log in once after each restart, or restart with `sudo fdesetup authrestart`, which "
        "unlocks the disk for that one restart",
    )
