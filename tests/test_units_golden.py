"""The golden examples in launchd/ and systemd/ are exactly what the renderer produces for
the default config (placeholder home and user). Regenerate them after a template change:

    STACKCTL_UPDATE_GOLDEN=1 pytest tests/test_units_golden.py
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from stackctl.config import Config
from stackctl.registry import NAMES
from stackctl.services.inputs import inputs_for_golden
from stackctl.services.render import render_units

ROOT = Path(__file__).resolve().parent.parent
MANAGER_DIR = {"linux": "systemd", "macos": "launchd"}
CASES = [(platform, scope) for platform in ("linux", "macos") for scope in ("user", "system")]
REGENERATE = "STACKCTL_UPDATE_GOLDEN=1 pytest tests/test_units_golden.py"


@pytest.mark.parametrize(("platform", "scope"), CASES)
def test_golden_examples_match_the_renderer(platform: str, scope: str) -> None:
    directory = ROOT / MANAGER_DIR[platform] / scope
    rendered = {
        unit.filename: unit.content
        for unit in render_units(Config(), inputs_for_golden(platform, scope), every_service=True)
    }
    if os.environ.get("STACKCTL_UPDATE_GOLDEN") == "1":
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.iterdir():
            if stale.name not in rendered:
                stale.unlink()
        for name, text in rendered.items():
            (directory / name).write_text(text, encoding="utf-8")
    assert sorted(p.name for p in directory.iterdir()) == sorted(rendered), REGENERATE
    for name, text in rendered.items():
        assert (directory / name).read_text(encoding="utf-8") == text, f"{name}: {REGENERATE}"


def test_every_service_has_a_golden_example_on_both_platforms() -> None:
    services = NAMES
    for scope in ("user", "system"):
        systemd = {p.name for p in (ROOT / "systemd" / scope).iterdir()}
        launchd = {p.name for p in (ROOT / "launchd" / scope).iterdir()}
        assert systemd == {f"stackctl-{s}.service" for s in services} | {"stackctl.target"}
        assert launchd == {f"dev.stackctl.{s}.plist" for s in services}
