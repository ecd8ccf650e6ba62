"""The official install commands stackctl prints (it never pipes a script into a shell)."""

from __future__ import annotations

import platform as _platform

# https://brew.sh: the command Homebrew's own page gives.
HOMEBREW_INSTALL = '/bin/bash -c "$(curl -fsSL https://raw.githubusercontent.com/Homebrew/install/HEAD/install.sh)"'


def ollama_linux_install() -> str:
    """Ollama's manual Linux install (docs/linux.mdx): the binary only, for this architecture.

    Not install.sh: that one also installs and starts its own ollama.service on port 11434,
    which would fight the stack's own service.
    """
    arch = "arm64" if _platform.machine() in ("aarch64", "arm64") else "amd64"
    return (
        f"curl -fsSL https://ollama.com/download/ollama-linux-{arch}.tar.zst "
        "| zstd -d | sudo tar x -C /usr"
    )
