"""What a Mac allows the stack, checked by `up` (which refuses) and `doctor` (which reports):
the macOS version Ollama needs, what Open WebUI can install on an Intel Mac, folders macOS
keeps from background services, and FileVault's locked disk at boot."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from stackctl.probe import HostFacts

# Ollama's docs/macos.mdx: "MacOS Sonoma (v14) or newer"; Homebrew's ollama formula has
# bottles from Sonoma on only, and the ollama-app cask depends_on macos >= :sonoma.
MIN_MACOS = (14, 0)


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", text)[:3])


def macos_too_old(facts: HostFacts) -> str | None:
    """Why this Mac cannot run Ollama (None: it can, or the version is unknown)."""
    version = _version(facts.os_version)
    if facts.platform != "macos" or not version or version >= MIN_MACOS:
        return None
    return (
        f"Ollama needs macOS {MIN_MACOS[0]} (Sonoma) or later and this Mac runs macOS "
        f"{facts.os_version} (Homebrew has no ollama bottle for it either)"
    )


UPDATE_MACOS = "update macOS (System Settings > General > Software Update)"
