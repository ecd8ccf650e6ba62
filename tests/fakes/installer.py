"""Installing the fake executables of tests/fakes/bin for a test: `install_fakes(dir)` copies
them with the test interpreter as their shebang, and the `FakeBin` it returns sets their
scenario and reads back how they were called."""

from __future__ import annotations

import json
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

FAKES = Path(__file__).parent


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


def install_fakes(
    target: Path,
    names: list[str] | None = None,
    python: str = sys.executable,
    checkout: Path = FAKES.parent.parent,
) -> FakeBin:
    """Copy the fakes into target/bin with `python` (default: the test interpreter) as their
    shebang, importing tests.fakes from `checkout`."""
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
        header = f"#!{python}\nimport sys; sys.path.insert(0, {str(checkout)!r})\n"
        script = bin_dir / source.name
        script.write_text(header + body)
        script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return FakeBin(bin=bin_dir, state=state)
