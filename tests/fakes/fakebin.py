"""Shared helpers for the fake executables in tests/fakes/bin.

Each fake is installed by the `fake_bin` fixture into `<tmp>/bin/` with its shebang set to
the test interpreter. It records how it was called into `<tmp>/fake-state/calls.jsonl` and
reads how to behave from `<tmp>/fake-state/scenario.json`, both found relative to the
script itself, so fakes started by a service manager (with a bare environment) work too.
A fake run where it cannot write calls.jsonl (a hardened system service) logs the call to
stderr instead; what such a fake writes goes where the real program writes it.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any


def state_dir() -> Path:
    return Path(sys.argv[0]).resolve().parent.parent / "fake-state"


def record(extra: dict[str, Any] | None = None) -> None:
    """Append this call's name and argv (one JSON line) to calls.jsonl."""
    entry = {"name": Path(sys.argv[0]).name, "argv": sys.argv[1:], "pid": os.getpid()}
    if extra:
        entry.update(extra)
    directory = state_dir()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with open(directory / "calls.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(entry) + "\n")
    except OSError as exc:
        # A system-scope service runs as the service account under ProtectSystem=strict: the
        # test's state dir is not its to write. The call goes to its log (the journal).
        sys.stderr.write(f"fake call not recorded ({exc.strerror}): {json.dumps(entry)}\n")


def scenario() -> dict[str, Any]:
    """The scenario the test set (empty when none)."""
    path = state_dir() / "scenario.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return {}


def save_scenario(data: dict[str, Any]) -> None:
    """Let a fake remember something across calls (e.g. `brew install` made ollama present)."""
    path = state_dir() / "scenario.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(path)


def runs_as_root() -> bool:
    """Whether this call runs as root, as the test pretends it: STACKCTL_AS_ROOT (the switch
    stackctl itself honours, see stackctl.paths.is_root), else the real effective uid. The
    fake `sudo -u USER` clears it, as the real one drops root."""
    forced = os.environ.get("STACKCTL_AS_ROOT")
    if forced in ("0", "1"):
        return forced == "1"
    return os.geteuid() == 0


def fail(message: str, code: int = 1) -> None:
    sys.stderr.write(message.rstrip("\n") + "\n")
    sys.exit(code)
