"""Fixtures shared by every test: an isolated home, fake executables, the CLI runner."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.fakes.installer import FakeBin, install_fakes

__all__ = ["FakeBin", "install_fakes"]


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point every stackctl location at a temp dir; plan as a normal user on this platform."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("STACKCTL_HOME", str(home))
    monkeypatch.setenv("STACKCTL_AS_ROOT", "0")
    for name in ("STACKCTL_CONFIG", "STACKCTL_PLATFORM", "STACKCTL_DEBUG", "STACKCTL_UV"):
        monkeypatch.delenv(name, raising=False)
    from stackctl.probe_nvidia import read_gpus

    read_gpus.cache_clear()  # each test brings its own GPUs (or none)
    # A host booted with systemd (this container's PID 1 is not): tests of `up` plan for
    # one; a test of a host without it points the marker elsewhere.
    marker = tmp_path / "run-systemd-system"
    marker.mkdir()
    monkeypatch.setattr("stackctl.probe.SYSTEMD_MARKER", marker)
    return home


@pytest.fixture
def fake_bin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeBin:
    """Every fake executable first on PATH (the real ones stay reachable after them)."""
    fakes = install_fakes(tmp_path / "fakes")
    monkeypatch.setenv("PATH", f"{fakes.bin}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("STACKCTL_UV", str(fakes.bin / "uv"))  # not the uv stackctl brings
    return fakes


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def stackctl():
    """Run the CLI in-process: stackctl('config', 'show') -> CliResult(code, out, err)."""
    from stackctl.cli import cli

    def run(*args: str, input: str | None = None) -> CliResult:
        runner = CliRunner()
        result = runner.invoke(cli, list(args), input=input, catch_exceptions=False)
        return CliResult(result.exit_code, result.stdout, result.stderr)

    return run


# The real systemd user manager fixtures (tests/systemd_user.py documents them) and the real
# system manager's (tests/systemd_system.py).
from tests.systemd_system import systemd_system  # noqa: E402, F401
from tests.systemd_user import systemd_user, systemd_user_manager  # noqa: E402, F401
