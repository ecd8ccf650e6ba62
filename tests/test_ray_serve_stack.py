"""The Ray Serve application as part of a cluster head's stack with Ollama: its service, the
proxy's connection to it, `up`'s plan (each Ollama node's Ray venv with Serve), its config
key and the launcher its unit runs. (The application itself: tests/test_ray_serve_ollama.py.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from stackctl.config import load, validate_text
from stackctl.config.model import ClusterSection, Config, Connection, default_connections
from stackctl.ray_serve import OLLAMA_APP
from stackctl.registry import stack_services
from stackctl.setup import UpOptions, resolve_context
from stackctl.setup.steps import build_steps
from tests.fakes.installer import FakeBin
from tests.ports import free_ports

HEAD = ClusterSection(role="head", address="10.0.0.5", nodes=2)
WORKER = ClusterSection(role="worker", head="10.0.0.5", address="10.0.0.6")
TOKEN = "cluster-token-0123456789"


def test_an_ollama_head_runs_ray_serve_after_ray_and_ollama() -> None:
    names = [s.name for s in stack_services(Config(backend="ollama", cluster=HEAD), "ollama")]
    assert names == ["ray", "ollama", "ray-serve", "proxy", "openwebui"]
    serve = next(s for s in stack_services(Config(cluster=HEAD), "ollama") if s.port == 11500)
    assert (serve.name, serve.url) == ("ray-serve", "http://127.0.0.1:11500")


@pytest.mark.parametrize(
    ("config", "backend"),
    [
        (Config(cluster=HEAD), "vllm"),  # vLLM runs on Ray itself
        (Config(cluster=WORKER), "ollama"),  # a worker serves its replica, not the app
        (Config(), "ollama"),  # one machine
    ],
)
def test_no_ray_serve_elsewhere(config: Config, backend) -> None:
    assert "ray-serve" not in [s.name for s in stack_services(config, backend)]


def test_the_heads_proxy_connection_is_the_serve_application() -> None:
    head = Config(backend="ollama", cluster=HEAD)
    assert default_connections(head, "ollama") == [
        Connection(name="ollama", mode="ollama", base_url="http://127.0.0.1:11500")
    ]
    local = [Connection(name="ollama", mode="ollama", base_url="http://127.0.0.1:11434")]
    assert default_connections(Config(backend="ollama", cluster=WORKER), "ollama") == local
    assert default_connections(Config(backend="ollama"), "ollama") == local


def test_serve_port_is_checked_like_every_port() -> None:
    clash = "backend: ollama\ncluster: {role: head, serve_port: 4000}\n"
    assert validate_text(clash, "stack.yaml", "linux")[1] == [
        "stack.yaml:2: proxy.port and cluster.serve_port are both 4000: give each service its "
        "own port"
    ]
    wrong = "backend: ollama\ncluster: {role: head, serve_port: 70000}\n"
    assert validate_text(wrong, "stack.yaml", "linux")[1] == [
        "stack.yaml:2: cluster.serve_port: expected a port number from 1 to 65535, got int 70000"
    ]


@pytest.fixture
def ollama_node(fake_bin: FakeBin, isolated_home: Path) -> Path:
    """A Linux box without GPUs, with Ollama installed; returns where its stack.yaml goes."""
    fake_bin.scenario(linger="yes")
    path = isolated_home / ".config/stackctl/stack.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def plan(path: Path, options: UpOptions) -> tuple[list[str], list[str]]:
    ctx = resolve_context(load(path), path, options)
    steps = build_steps(ctx)
    return [s.description for s in steps], [c for s in steps for c in s.commands]


def test_an_ollama_head_installs_ray_with_serve(ollama_node: Path) -> None:
    ollama, serve, proxy, webui = free_ports(4)
    ollama_node.write_text(
        f"backend: ollama\nmodels: [gemma3:1b]\nollama: {{port: {ollama}}}\n"
        f"proxy: {{port: {proxy}}}\nopenwebui: {{port: {webui}}}\n"
        f"cluster: {{role: head, nodes: 2, serve_port: {serve}}}\n"
    )
    steps, commands = plan(ollama_node, UpOptions(yes=True))
    venv = ollama_node.parent.parent.parent / ".local/share/stackctl/venvs/ray"
    assert f"Create Ray's venv {venv}" in steps
    assert "Install Ray into its venv (uv; about 100 MB)" in steps
    assert any(c.endswith(f"--python {venv}/bin/python 'ray[serve]'") for c in commands), commands


def test_an_ollama_worker_installs_the_heads_ray_with_serve(ollama_node: Path) -> None:
    options = UpOptions(
        yes=True, join="10.0.0.5:6379", token=TOKEN, pins={"ray": "2.60.0", "python": "3.11"}
    )
    steps, commands = plan(ollama_node, options)
    assert any(c.endswith("'ray[serve]==2.60.0'") for c in commands), commands
    # Ray is installed before the head is asked whether it takes the token (with that Ray)
    install = steps.index("Install Ray into its venv (uv; about 100 MB)")
    assert install < steps.index("Ask the head's Ray at 10.0.0.5:6379 whether it takes the token")


def test_the_units_launcher_execs_the_app_under_the_ray_python(tmp_path: Path) -> None:
    """`python -m stackctl.ray_serve RAY_PYTHON ARG...` (the unit's ExecStart) replaces itself
    with RAY_PYTHON running the app's file: here a stand-in that prints its argv."""
    stand_in = tmp_path / "python"
    stand_in.write_text(f"#!{sys.executable}\nimport json, sys\nprint(json.dumps(sys.argv[1:]))\n")
    stand_in.chmod(0o755)
    done = subprocess.run(
        [sys.executable, "-m", "stackctl.ray_serve", str(stand_in), "--nodes", "2"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(done.stdout) == [str(OLLAMA_APP), "--nodes", "2"]
    assert OLLAMA_APP.is_file()
