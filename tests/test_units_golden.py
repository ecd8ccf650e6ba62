"""The golden examples in launchd/ and systemd/ are exactly what the renderer produces for
the default config (placeholder home and user). Regenerate them after a template change:

    STACKCTL_UPDATE_GOLDEN=1 pytest tests/test_units_golden.py
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import replace
from pathlib import Path

import pytest

from stackctl.config import ClusterSection, Config
from stackctl.config.model import ProxySection
from stackctl.registry import NAMES, info
from stackctl.services.inputs import inputs_for_golden, placeholder_secrets
from stackctl.services.render import render_units

ROOT = Path(__file__).resolve().parent.parent
MANAGER_DIR = {"linux": "systemd", "macos": "launchd"}
CASES = [(platform, scope) for platform in ("linux", "macos") for scope in ("user", "system")]
REGENERATE = "STACKCTL_UPDATE_GOLDEN=1 pytest tests/test_units_golden.py"


def exposed(platform: str) -> Config:
    """The exposed variant (`<manager>/user-exposed/`): the front, Open WebUI's admin and
    signup settings; the proxy's key file where `config init` would name it."""
    keys = "/Users/alice/Library/Application Support" if platform == "macos" else "/home/alice"
    keys += "/stackctl/proxy-keys" if platform == "macos" else "/.config/stackctl/proxy-keys"
    return Config(expose=True, proxy=ProxySection(api_keys_file=keys))


VARIANTS = [(p, s, s) for p, s in CASES] + [(p, "user", "user-exposed") for p in MANAGER_DIR]
# A two-node cluster (README, "A cluster"): the head at 10.0.0.5, a worker at 10.0.0.6.
CLUSTER_NODES = {
    "cluster-head": ClusterSection(role="head", address="10.0.0.5", nodes=2),
    "cluster-worker": ClusterSection(role="worker", head="10.0.0.5", address="10.0.0.6"),
}


@pytest.mark.parametrize(("platform", "scope", "folder"), VARIANTS)
def test_golden_examples_match_the_renderer(platform: str, scope: str, folder: str) -> None:
    directory = ROOT / MANAGER_DIR[platform] / folder
    inputs = inputs_for_golden(platform, scope)
    if folder.endswith("exposed"):
        config = exposed(platform)
        secrets = placeholder_secrets(config, inputs.paths) if platform == "macos" else {}
        inputs = dataclasses.replace(inputs, secrets=secrets)
        units = render_units(config, inputs)  # the exposed stack's own units
    else:
        units = render_units(Config(), inputs, every_service=True)
    rendered = {unit.filename: unit.content for unit in units}
    _compare(directory, rendered)


@pytest.mark.parametrize("node", list(CLUSTER_NODES))
@pytest.mark.parametrize(("platform", "scope"), CASES)
def test_cluster_golden_examples_match_the_renderer(platform: str, scope: str, node: str) -> None:
    """A cluster's head and worker: the units each node's stack runs."""
    config = Config(cluster=CLUSTER_NODES[node])
    directory = ROOT / MANAGER_DIR[platform] / node / scope
    inputs = inputs_for_golden(platform, scope, config)
    rendered = {unit.filename: unit.content for unit in render_units(config, inputs)}
    _compare(directory, rendered)


# --- a Linux head with Ollama: Ray Serve in front of every node's Ollama (issue 12) -------
@pytest.mark.parametrize("scope", ["user", "system"])
def test_ollama_cluster_head_golden_examples_match_the_renderer(scope: str) -> None:
    """A Linux head with Ollama (a Mac's head runs Ollama in cluster-head already)."""
    config = Config(backend="ollama", cluster=CLUSTER_NODES["cluster-head"])
    inputs = replace(inputs_for_golden("linux", scope, config), backend="ollama")
    rendered = {unit.filename: unit.content for unit in render_units(config, inputs)}
    _compare(ROOT / "systemd" / "cluster-head-ollama" / scope, rendered)


# -----------------------------------------------------------------------------------------


def _compare(directory: Path, rendered: dict[str, str]) -> None:
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
    # ray and ray-serve: in the cluster examples
    services = [name for name in NAMES if info(name).section != "cluster"]
    for scope in ("user", "system"):
        systemd = {p.name for p in (ROOT / "systemd" / scope).iterdir()}
        launchd = {p.name for p in (ROOT / "launchd" / scope).iterdir()}
        assert systemd == {f"stackctl-{s}.service" for s in services} | {"stackctl.target"}
        assert launchd == {f"dev.stackctl.{s}.plist" for s in services}
        # a cluster's worker runs Ray (and, with Ollama, its own Ollama), nothing clients reach
        worker = ROOT / "systemd" / "cluster-worker" / scope
        assert {p.name for p in worker.iterdir()} == {"stackctl-ray.service", "stackctl.target"}
        worker = ROOT / "launchd" / "cluster-worker" / scope
        assert {p.name for p in worker.iterdir()} == {
            "dev.stackctl.ray.plist",
            "dev.stackctl.ollama.plist",
        }
