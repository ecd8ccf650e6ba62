"""What a Mac allows the stack, checked by `up` (which refuses) and `doctor` (which reports):
the macOS version Ollama needs, what Open WebUI can install on an Intel Mac, folders macOS
keeps from background services, and FileVault's locked disk at boot."""

from __future__ import annotations

import re
from pathlib import Path
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

OPENWEBUI = "open-webui"
# Open WebUI 0.8 and later pin onnxruntime 1.26, which has no macOS x86_64 wheel, and
# transformers 5, which needs torch >= 2.4, never built for macOS x86_64 (PyTorch's last
# Intel-Mac wheels are 2.2.2). open-webui/open-webui issue 28609 names 0.7.2 (onnxruntime
# 1.23.2, which has x86_64 wheels) as the last release that installs on an Intel Mac.
INTEL_MAC_OPENWEBUI = "0.7.2"


def intel_mac(facts: HostFacts) -> bool:
    return facts.platform == "macos" and not facts.apple_silicon


def openwebui_requirement(facts: HostFacts) -> str:
    """What to install Open WebUI from: the newest release, or on an Intel Mac the last one
    that installs there (pinned, so pip neither backtracks for many minutes through releases
    it cannot install nor an --upgrade moves past it)."""
    if intel_mac(facts):
        return f"{OPENWEBUI}=={INTEL_MAC_OPENWEBUI}"
    return OPENWEBUI


def intel_mac_openwebui_note() -> str:
    """Why an Intel Mac gets an older Open WebUI (for doctor and the README)."""
    return (
        "Open WebUI 0.8 and later cannot be installed on an Intel Mac (no onnxruntime or torch "
        "builds for macOS x86_64, open-webui issue 28609): stackctl installs "
        f"{INTEL_MAC_OPENWEBUI}, the last release that can, and --upgrade keeps it there; or "
        "set openwebui.enabled: false"
    )


# macOS's privacy protection (TCC, "Files and Folders") keeps a LaunchAgent or LaunchDaemon out
# of these folders of a home unless the person grants it access: a read fails with EPERM,
# "Operation not permitted". The proxy runs `<python> -m stackctl --config <path>`.
PROTECTED_FOLDERS = ("Documents", "Desktop", "Downloads")
ALL_PROTECTED = "~/Documents, ~/Desktop and ~/Downloads"
KEPT_OUT = (
    "a folder macOS keeps from background services unless you grant them access (they fail "
    'with "Operation not permitted")'
)


def protected_folder(path: Path, home: Path) -> str | None:
    """`~/Documents` (etc.) when path, or what it resolves to, lies in a protected folder."""
    for candidate in dict.fromkeys([path.absolute(), path.resolve()]):
        for name in PROTECTED_FOLDERS:
            for folder in dict.fromkeys([home / name, (home / name).resolve()]):
                if candidate.is_relative_to(folder):
                    return f"~/{name}"
    return None
