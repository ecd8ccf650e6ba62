"""Probe facts about installed tools: Homebrew, Ollama, vLLM and Open WebUI in their venvs,
a Python that Open WebUI accepts, and uv. Missing tools are None, never an error."""

from __future__ import annotations

import os
import re
from pathlib import Path

from stackctl import proc

TIMEOUT = 10  # seconds for any probe command


def read_brew_prefix() -> str | None:
    """`brew --prefix` (/opt/homebrew on Apple Silicon, /usr/local on Intel), or None.
    Homebrew answers this one as root too (brew.sh `check-run-command-as-root`)."""
    from stackctl.homebrew import brew_executable

    brew = brew_executable()
    if brew is None:
        return None
    return proc.output([brew, "--prefix"], timeout=TIMEOUT) or None


def find_ollama(brew_prefix: str | None, *, prefer_brew: bool = False) -> str | None:
    """The `ollama` on PATH, else Homebrew's (PATH may lack it, e.g. in a bare SSH session).

    `prefer_brew` (macOS): Homebrew's first, since the `ollama` on PATH may be Ollama.app's
    link in /usr/local/bin (ollama docs/macos.mdx), which the app replaces as it updates."""
    brews = Path(brew_prefix, "bin", "ollama") if brew_prefix else None
    if prefer_brew and brews is not None and brews.is_file():
        return str(brews)
    found = proc.which("ollama")
    if found:
        return found
    return str(brews) if brews is not None and brews.is_file() else None


def read_ollama_version(ollama: str, port: int = 11434) -> str | None:
    """The installed Ollama's version, from `ollama --version`.

    It prints `ollama version is 0.12.10` when a server answers on OLLAMA_HOST, and with
    none `Warning: could not connect to a running Ollama instance` then `Warning: client
    version is 0.12.10` (ollama/ollama cmd/cmd.go `versionHandler`). The client version is
    the installed binary's, so it wins when both are printed.
    """
    result = proc.run(
        [ollama, "--version"],
        check=False,
        timeout=TIMEOUT,
        env={"OLLAMA_HOST": f"127.0.0.1:{port}"},
    )
    return parse_ollama_version(result.stdout + "\n" + result.stderr)


def parse_ollama_version(text: str) -> str | None:
    client = re.search(r"client version is (\S+)", text)
    server = re.search(r"ollama version is (\S+)", text)
    match = client or server
    return match.group(1) if match else None


def read_venv_version(venv: Path, distribution: str) -> str | None:
    """A package's version in a venv, from its dist-info (no interpreter started: fast)."""
    normalized = re.sub(r"[-_.]+", "_", distribution).lower()
    for metadata in sorted(venv.glob("lib/python3*/site-packages/*.dist-info/METADATA")):
        name, _, version = metadata.parent.name[: -len(".dist-info")].partition("-")
        if re.sub(r"[-_.]+", "_", name).lower() == normalized:
            return version or _metadata_version(metadata)
    return None


def _metadata_version(metadata: Path) -> str | None:
    try:
        text = metadata.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    match = re.search(r"^Version:\s*(\S+)", text, re.M)
    return match.group(1) if match else None


OPENWEBUI_PYTHONS = ("3.11", "3.12")  # open-webui's requires-python: >=3.11, <3.13


def find_venv_python(brew_prefix: str | None) -> str | None:
    """An absolute Python 3.11 or 3.12 (Open WebUI refuses others), or None.

    Tried in order: python3.11 and python3.12 on PATH, Homebrew's python@3.11/@3.12, then
    python3. Each candidate is run once to confirm its version and resolve shims (pyenv).
    """
    candidates: list[str] = []
    for version in OPENWEBUI_PYTHONS:
        found = proc.which(f"python{version}")
        if found:
            candidates.append(found)
    if brew_prefix:
        for version in OPENWEBUI_PYTHONS:
            keg = Path(brew_prefix, "opt", f"python@{version}", "bin", f"python{version}")
            if keg.is_file():
                candidates.append(str(keg))
    python3 = proc.which("python3")
    if python3:
        candidates.append(python3)
    for candidate in dict.fromkeys(candidates):
        lines = proc.output(
            [
                candidate,
                "-c",
                "import sys; print(sys.executable); print('%d.%d' % sys.version_info[:2])",
            ],
            timeout=TIMEOUT,
        )
        if lines and len(lines.splitlines()) == 2:
            executable, version = lines.splitlines()
            if version in OPENWEBUI_PYTHONS:
                return executable
    return None


UV_ENV = "STACKCTL_UV"  # the uv binary to run instead of the bundled one


def find_uv() -> str | None:
    """The uv binary stackctl makes venvs with: $STACKCTL_UV when set (None when that file is
    missing), else the one the `uv` package (a dependency of stackctl) installed next to
    stackctl, else a `uv` on PATH."""
    chosen = os.environ.get(UV_ENV)
    if chosen:
        return chosen if os.access(chosen, os.X_OK) else None
    try:
        from uv import find_uv_bin

        return find_uv_bin()
    except (ImportError, FileNotFoundError):  # uv's UvNotFound is a FileNotFoundError
        return proc.which("uv")
