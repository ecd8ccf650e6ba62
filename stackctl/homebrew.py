"""Homebrew, run the way it allows: as the person who owns it, never as root.

Homebrew's Library/Homebrew/brew.sh (`check-run-command-as-root`) refuses every command run
as root except `--prefix` and `services` ("Running Homebrew as root is extremely dangerous
and no longer supported"). Under `sudo stackctl up` brew therefore runs as the account that
ran sudo: `sudo -u "$SUDO_USER" -H brew ...` (-H: that account's HOME, where brew keeps its
caches). `brew services` is allowed as root but then manages /Library/LaunchDaemons
(Library/Homebrew/services/system.rb: `path` is `boot_path` for root), so the user's own
`homebrew.mxcl.ollama` agent is asked about as that user too.

sudo's PATH (secure_path) lacks /opt/homebrew/bin, so brew is also looked for at Homebrew's
default prefixes: /opt/homebrew on Apple Silicon, /usr/local on Intel.
"""

from __future__ import annotations

import os
from pathlib import Path

from stackctl import proc
from stackctl.errors import StackctlError
from stackctl.paths import is_root

DEFAULT_BREWS = ("/opt/homebrew/bin/brew", "/usr/local/bin/brew")


def brew_executable(*, absolute: bool = False) -> str | None:
    """`brew` when it is on PATH (its absolute path when asked), else the one at Homebrew's
    default prefix, or None."""
    found = proc.which("brew")
    if found:
        return found if absolute else "brew"
    return next((brew for brew in DEFAULT_BREWS if Path(brew).is_file()), None)


def invoking_user() -> str | None:
    """The account that ran `sudo stackctl` (None when stackctl does not run as root, or was
    started from a root shell)."""
    name = os.environ.get("SUDO_USER", "")
    return name if is_root() and name and name != "root" else None


def brew_argv(*args: str) -> list[str]:
    """The argv that runs `brew ARGS...` as the person who owns Homebrew (see the module
    docstring); `brew` itself when stackctl does not run as root."""
    if not is_root():
        return [brew_executable() or "brew", *args]
    user = invoking_user()
    if user is None:
        raise StackctlError(
            "Homebrew refuses to run as root, and stackctl runs it as the account that ran "
            "sudo: run `sudo stackctl up` from the account that installed Homebrew (not from "
            "a root shell)"
        )
    # absolute: sudo looks a command up on its own PATH (secure_path), without Homebrew's bin
    return ["sudo", "-u", user, "-H", brew_executable(absolute=True) or "brew", *args]


def installed(name: str, *, cask: bool = False) -> bool:
    """True when `brew list --versions [--cask] NAME` lists it (asked as brew's owner)."""
    try:
        argv = brew_argv("list", "--versions", *(["--cask"] if cask else []), name)
    except StackctlError:
        return False
    result = proc.run(argv, check=False, timeout=60)
    return result.ok and bool(result.stdout.strip())


def in_cellar(binary: Path, prefix: Path, formula: str) -> bool:
    """True when a linked binary resolves into the formula's keg (<prefix>/Cellar/<formula>)."""
    return binary.resolve().is_relative_to((prefix / "Cellar" / formula).resolve())
