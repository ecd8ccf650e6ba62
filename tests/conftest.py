"""Fixtures shared by every test: an isolated home, fake executables, the CLI runner."""

from __future__ import annotations

import json
import os
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

FAKES = Path(__file__).parent / "fakes"


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point every stackctl location at a temp dir; plan as a normal user on this platform."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("STACKCTL_HOME", str(home))
    monkeypatch.setenv("STACKCTL_AS_ROOT", "0")
    for name in ("STACKCTL_CONFIG", "STACKCTL_PLATFORM", "STACKCTL_DEBUG"):
        monkeypatch.delenv(name, raising=False)
    from stackctl.probe import has_nvidia_gpu

    has_nvidia_gpu.cache_clear()  # each test brings its own GPUs (or none)
    return home


@dataclass
class FakeBin:
    """Fake executables on PATH that record their argv and follow a scenario."""

    bin: Path
    state: Path

    def scenario(self, **values: object) -> None:
        """Merge values into the scenario the fakes read."""
        path = self.state / "scenario.json"
        data = json.loads(path.read_text()) if path.exists() else {}
        data.update(values)
        path.write_text(json.dumps(data, indent=2))

    def calls(self, name: str | None = None) -> list[list[str]]:
        """The argv of every recorded call (of one fake, when named), in order."""
        path = self.state / "calls.jsonl"
        if not path.exists():
            return []
        entries = [json.loads(line) for line in path.read_text().splitlines() if line]
        return [[e["name"], *e["argv"]] for e in entries if name is None or e["name"] == name]

    def clear_calls(self) -> None:
        (self.state / "calls.jsonl").unlink(missing_ok=True)

    def remove(self, name: str) -> None:
        """Make a fake disappear from PATH (e.g. no nvidia-smi on this host)."""
        (self.bin / name).unlink(missing_ok=True)


def install_fakes(target: Path, names: list[str] | None = None) -> FakeBin:
    """Copy the fakes into target/bin with the test interpreter as their shebang."""
    bin_dir = target / "bin"
    state = target / "fake-state"
    bin_dir.mkdir(parents=True, exist_ok=True)
    state.mkdir(parents=True, exist_ok=True)
    for source in sorted((FAKES / "bin").iterdir()):
        if source.name.startswith((".", "_")) or (names is not None and source.name not in names):
            continue
        body = source.read_text()
        if body.startswith("#!"):
            body = body.split("\n", 1)[1]
        header = (
            f"#!{sys.executable}\nimport sys; sys.path.insert(0, {str(FAKES.parent.parent)!r})\n"
        )
        script = bin_dir / source.name
        script.write_text(header + body)
        script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return FakeBin(bin=bin_dir, state=state)


@pytest.fixture
def fake_bin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeBin:
    """Every fake executable first on PATH (the real ones stay reachable after them)."""
    fakes = install_fakes(tmp_path / "fakes")
    monkeypatch.setenv("PATH", f"{fakes.bin}{os.pathsep}{os.environ['PATH']}")
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


# The real systemd user manager fixtures (tests/systemd_user.py documents them).
from systemd_user import systemd_user, systemd_user_manager  # noqa: E402, F401
