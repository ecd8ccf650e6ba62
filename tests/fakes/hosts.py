"""Ready-made hosts for tests, built from the fake executables and a few file overrides.

- `mac_16gb`: an Apple M2 Mac with 16 GB, macOS 14.5, Homebrew (fake `sw_vers`, `sysctl`,
  `brew`), no Python 3.11/3.12 unless the test keeps them.
- `linux_gpu_24gb`: Ubuntu 22.04 with one NVIDIA GeForce RTX 4090 (24564 MiB), driver
  550.54.15 / CUDA 12.4, booted with systemd, user alice without linger.
- `linux_no_gpu`: this kind of machine: Debian 12, no nvidia-smi.

Each takes the `fake_bin` fixture and pytest's `monkeypatch`, and returns the fake_bin.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from stackctl import probe
from tests.ports import wait_for_port

RTX_4090 = {"name": "NVIDIA GeForce RTX 4090", "memory_total_mib": 24564, "memory_used_mib": 1}
UBUNTU = 'PRETTY_NAME="Ubuntu 22.04.4 LTS"\nNAME="Ubuntu"\nVERSION_ID="22.04"\nID=ubuntu\n'
DEBIAN = 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\nVERSION_ID="12"\n'
CPUINFO = "processor\t: 0\nmodel name\t: AMD EPYC 7763 64-Core Processor\n"


def only_fakes_on_path(fake_bin: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """PATH = the fakes alone, so no real python3.x, nvidia-smi or uv is found."""
    monkeypatch.setenv("PATH", str(fake_bin.bin))


def _linux_files(
    tmp: Path, monkeypatch: pytest.MonkeyPatch, os_release: str, systemd: bool
) -> None:
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "os-release").write_text(os_release)
    (tmp / "cpuinfo").write_text(CPUINFO)
    monkeypatch.setattr(probe, "OS_RELEASE", tmp / "os-release")
    monkeypatch.setattr(probe, "CPUINFO", tmp / "cpuinfo")
    marker = tmp / "run-systemd-system"
    if systemd:
        marker.mkdir(exist_ok=True)
    monkeypatch.setattr(probe, "SYSTEMD_MARKER", marker)


def _user(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    for variable in ("LOGNAME", "USER"):
        monkeypatch.setenv(variable, name)


def mac_16gb(fake_bin: Any, monkeypatch: pytest.MonkeyPatch, *, pythons: bool = False) -> Any:
    monkeypatch.setenv("STACKCTL_PLATFORM", "macos")
    _user(monkeypatch, "alice")
    if not pythons:
        fake_bin.remove("python3.11")
        fake_bin.remove("python3.12")
    only_fakes_on_path(fake_bin, monkeypatch)
    return fake_bin


def linux_gpu_24gb(fake_bin: Any, monkeypatch: pytest.MonkeyPatch, tmp: Path) -> Any:
    monkeypatch.setenv("STACKCTL_PLATFORM", "linux")
    _user(monkeypatch, "alice")
    _linux_files(tmp, monkeypatch, UBUNTU, systemd=True)
    fake_bin.scenario(gpus=[RTX_4090], linger={"alice": "no"})
    only_fakes_on_path(fake_bin, monkeypatch)
    return fake_bin


def linux_no_gpu(fake_bin: Any, monkeypatch: pytest.MonkeyPatch, tmp: Path) -> Any:
    monkeypatch.setenv("STACKCTL_PLATFORM", "linux")
    _user(monkeypatch, "alice")
    _linux_files(tmp, monkeypatch, DEBIAN, systemd=True)
    fake_bin.remove("nvidia-smi")
    only_fakes_on_path(fake_bin, monkeypatch)
    return fake_bin


LISTEN = (
    "import socket, sys, time\n"
    "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen(); time.sleep(120)\n"
)


def listen(port: int, *extra_args: str, script: Path | None = None) -> subprocess.Popen:
    """A process listening on 127.0.0.1:port until killed; extra args show in its cmdline.

    With `script`, that file (written with the listener code) is what python runs, so its
    path shows in the command line (e.g. under /Applications/Ollama.app/...).
    """
    if script is not None:
        script.parent.mkdir(parents=True, exist_ok=True)
        script.write_text(LISTEN)
        argv = [sys.executable, str(script), str(port), *extra_args]
    else:
        argv = [sys.executable, "-c", LISTEN, str(port), *extra_args]
    child = subprocess.Popen(argv, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    wait_for_port(port)
    return child


def stop(child: subprocess.Popen) -> None:
    child.kill()
    child.wait(timeout=10)
