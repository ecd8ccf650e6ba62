"""Fake virtual environments for the fake `python3.x -m venv`, `uv venv` and `pip install`.

A fake venv holds small wrapper scripts (`bin/python`, `bin/pip`, later `bin/open-webui`...)
that exec the fake of the same job in the fakes' bin directory with FAKE_VENV set, so every
call is still recorded in the one calls.jsonl (with the path it was called by) and the fake
knows which venv it acts on.
"""

from __future__ import annotations

import os
import re
import stat
import sys
from pathlib import Path

PYTHON_VERSIONS = {"python3.11": "3.11.9", "python3.12": "3.12.4"}
# What the fakes install: the fake vLLM (tests/fakes/bin/vllm --version), and the real Ray of
# the test's Ray venv (tests/fakes/bin/ray), whose wheel is 2.60.0
INSTALLABLE = {"vllm": "0.10.1.1", "ray": "2.60.0"}


def fakes_bin() -> Path:
    """The directory of the installed fakes (this call's own script lives there)."""
    return Path(sys.argv[0]).resolve().parent


def current_venv() -> Path | None:
    """The venv a wrapper called us from, or None when called directly from PATH."""
    value = os.environ.get("FAKE_VENV")
    return Path(value) if value else None


def called_as() -> str:
    """The path this fake was invoked by: the venv wrapper's path, or the fake itself."""
    return os.environ.get("FAKE_EXE") or sys.argv[0]


def add_wrapper(venv: Path, name: str, target: str) -> Path:
    """Write `<venv>/bin/<name>`, which runs the fake `target` for this venv."""
    fake = fakes_bin() / target
    script = venv / "bin" / name
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(
        f"#!{sys.executable}\n"
        "import os, sys\n"
        f"os.environ['FAKE_VENV'] = {str(venv)!r}\n"
        f"os.environ['FAKE_EXE'] = {str(script)!r}\n"
        f"os.execv({str(fake)!r}, [{str(fake)!r}, *sys.argv[1:]])\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return script


def make_venv(venv: Path, python: str, *, pip: bool = True, home: Path | None = None) -> None:
    """What `python -m venv DIR` leaves behind: pyvenv.cfg, bin/python, bin/pip (`uv venv`
    leaves no pip unless --seed). `home` is where the interpreter lives (a managed Python)."""
    version = PYTHON_VERSIONS.get(python, "3.12.4")
    venv.mkdir(parents=True, exist_ok=True)
    (venv / "pyvenv.cfg").write_text(f"home = {home or fakes_bin()}\nversion = {version}\n")
    add_wrapper(venv, "python", python)
    add_wrapper(venv, "python3", python)
    if pip:
        add_wrapper(venv, "pip", "pip")


def install_package(venv: Path, package: str) -> None:
    """The console scripts a package leaves in a venv (the ones stackctl runs)."""
    name = package.split("==")[0].split(">")[0].split("[")[0].lower()
    if name == "open-webui":
        add_wrapper(venv, "open-webui", "open-webui")
    elif name == "vllm":
        add_wrapper(venv, "vllm", "vllm")
        add_wrapper(venv, "hf", "hf")  # huggingface_hub, a dependency of vLLM
        add_dist_info(venv, "vllm", INSTALLABLE["vllm"])
    elif name == "ray":
        add_wrapper(venv, "ray", "ray")
        add_dist_info(venv, "ray", INSTALLABLE["ray"])
        if "[serve]" in package:  # Serve's application runs under the venv's Python: the real
            add_wrapper(venv, "python", "ray-python")  # one of the test's Ray venv


def unavailable_version(package: str) -> str | None:
    """The version asked for (`name==V`) when the fakes cannot install it, else None."""
    name, _, version = package.partition("==")
    name = name.split("[")[0].lower()
    if version and name in INSTALLABLE and version != INSTALLABLE[name]:
        return version
    return None


def add_dist_info(venv: Path, name: str, version: str) -> None:
    """The package's .dist-info in the venv's site-packages, as pip and uv leave it."""
    cfg = (venv / "pyvenv.cfg").read_text()
    match = re.search(r"^version\s*=\s*(\d+\.\d+)", cfg, re.M)
    site = venv / f"lib/python{match.group(1) if match else '3.12'}/site-packages"
    info = site / f"{name}-{version}.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")


def intel_mac(behaviour: dict) -> bool:
    """An Intel Mac: STACKCTL_PLATFORM=macos and the scenario's sysctl without
    hw.optional.arm64, as tests/fakes/bin/sysctl reads it."""
    sysctl = behaviour.get("sysctl", {})
    return (
        os.environ.get("STACKCTL_PLATFORM") == "macos"
        and "hw.optional.arm64" in sysctl
        and sysctl["hw.optional.arm64"] is None
    )


def installable_on_intel_macs(package: str) -> bool:
    """`open-webui` after 0.7.2 cannot be installed on an Intel Mac: its pinned onnxruntime
    has no macosx x86_64 wheel and the torch its transformers needs (>= 2.4) was never built
    for macOS x86_64 (open-webui/open-webui issue 28609, which names 0.7.2 as the last
    release that installs there)."""
    name, _, version = package.partition("==")
    if name.lower() != "open-webui":
        return True
    numbers = tuple(int(n) for n in re.findall(r"\d+", version)[:3])
    return bool(numbers) and numbers <= (0, 7, 2)
