"""A cluster's units: `ray start` on the head and on a worker, vLLM across the nodes on the
head, and what the config cannot override there."""

from __future__ import annotations

import dataclasses
import plistlib
import sys
from pathlib import Path

import pytest

from stackctl.cluster import ray_ports, ray_temp_dir
from stackctl.config import ClusterSection, Config, VllmSection
from stackctl.errors import StackctlError
from stackctl.services.inputs import inputs_for_golden
from stackctl.services.render import render_units
from tests.test_units_render import LAUNCHD_KEYS, fake_executables, systemd_analyze_verify

HEAD = ClusterSection(role="head", address="10.0.0.5", nodes=3, node_ports=20000)
WORKER = ClusterSection(role="worker", head="10.0.0.5", address="10.0.0.6", port=7000)


def units(config: Config, platform: str = "linux", scope: str = "user") -> dict[str, str]:
    inputs = inputs_for_golden(platform, scope, config)  # type: ignore[arg-type]
    return {u.service: u.content for u in render_units(config, inputs)}


def exec_start(unit: str) -> list[str]:
    line = next(x for x in unit.splitlines() if x.startswith("ExecStart="))
    return line.removeprefix("ExecStart=").split()


def test_ray_ports_are_one_block_per_node() -> None:
    ports = ray_ports(20000)
    assert (ports.first, ports.dashboard_agent, ports.dashboard, ports.last) == (
        20000,
        20002,
        20007,
        20999,
    )
    assert (ports.min_worker, ports.max_worker) == (20100, 20999)


def test_the_head_starts_ray_then_vllm_across_the_nodes() -> None:
    rendered = units(Config(cluster=HEAD))
    assert list(rendered) == ["ray", "vllm", "proxy", "openwebui", "target"]
    ray = exec_start(rendered["ray"])
    assert ray[1:5] == ["start", "--block", "--head", "--port"]
    flags = dict(zip(ray[4:-1:2], ray[5:-1:2], strict=True))
    assert flags["--port"] == "6379"
    assert flags["--dashboard-host"] == "127.0.0.1"
    assert flags["--dashboard-port"] == "20007"
    assert flags["--node-ip-address"] == "10.0.0.5"
    assert flags["--num-gpus"] == "2"
    assert (flags["--min-worker-port"], flags["--max-worker-port"]) == ("20100", "20999")
    assert ray[-1] == "--disable-usage-stats"
    assert "Environment=RAY_AUTH_MODE=token" in rendered["ray"]
    assert "Environment=RAY_USAGE_STATS_ENABLED=0" in rendered["ray"]
    assert "EnvironmentFile=-/home/alice/.config/stackctl/secrets.env" in rendered["ray"]
    vllm = rendered["vllm"]
    assert "After=stackctl-ray.service" in vllm
    argv = exec_start(vllm)
    assert argv[:8] == [
        "/usr/bin/python3", "-m", "stackctl", "--config",
        "/home/alice/.config/stackctl/stack.yaml", "cluster", "wait", "--",
    ]  # fmt: skip
    assert argv[-6:] == [
        "--distributed-executor-backend", "ray",
        "--tensor-parallel-size", "2",  # the GPUs of each node
        "--pipeline-parallel-size", "3",  # the nodes
    ]  # fmt: skip
    assert "Environment=RAY_ADDRESS=10.0.0.5:6379" in vllm
    assert "Environment=RAY_AUTH_MODE=token" in vllm


def test_a_worker_runs_ray_only_and_joins_the_head() -> None:
    rendered = units(Config(cluster=WORKER))
    assert list(rendered) == ["ray", "target"]
    ray = exec_start(rendered["ray"])
    assert ray[1:5] == ["start", "--block", "--address", "10.0.0.5:7000"]
    assert "--head" not in ray and "--dashboard-host" not in ray
    assert ray[ray.index("--node-ip-address") + 1] == "10.0.0.6"


def test_without_an_address_a_node_uses_its_route_to_the_head() -> None:
    worker = dataclasses.replace(WORKER, head="127.0.0.1", address="")
    ray = exec_start(units(Config(cluster=worker))["ray"])
    assert ray[ray.index("--node-ip-address") + 1] == "127.0.0.1"


def test_the_head_sets_the_parallelism_and_refuses_it_in_vllm_args() -> None:
    for flag in ("--tensor-parallel-size", "--pipeline-parallel-size=1"):
        config = Config(cluster=HEAD, vllm=VllmSection(args=[flag, "1"]))
        with pytest.raises(StackctlError) as err:
            units(config)
        assert str(err.value) == (
            f"vllm.args: {flag.split('=')[0]} is set by stackctl in a cluster (tensor parallel "
            "= GPUs per node, pipeline parallel = cluster.nodes): remove it from vllm.args"
        )
    # on one machine a person may set them
    alone = units(Config(vllm=VllmSection(args=["--tensor-parallel-size", "2"])))
    assert exec_start(alone["vllm"])[-2:] == ["--tensor-parallel-size", "2"]


def test_a_head_without_gpus_is_refused() -> None:
    config = Config(cluster=HEAD)
    inputs = dataclasses.replace(inputs_for_golden("linux", "user", config), gpu_count=0)
    with pytest.raises(StackctlError) as err:
        render_units(config, inputs)
    assert str(err.value) == (
        "vLLM on a cluster needs NVIDIA GPUs on the head, and nvidia-smi finds none here"
    )


@pytest.mark.parametrize("scope", ["user", "system"])
@pytest.mark.parametrize("node", [HEAD, WORKER])
def test_cluster_units_pass_systemd_analyze_verify(tmp_path, scope, node):
    exe = fake_executables(tmp_path)
    (exe["vllm_venv"].parent / "ray").write_text("#!/bin/sh\n")
    (exe["vllm_venv"].parent / "ray").chmod(0o755)
    config = Config(cluster=node)
    inputs = dataclasses.replace(
        inputs_for_golden("linux", scope, config),
        python=Path(sys.executable),
        openwebui_venv=exe["openwebui_venv"].parent.parent,
        vllm_venv=exe["vllm_venv"].parent.parent,
    )
    assert systemd_analyze_verify(tmp_path, render_units(config, inputs), scope) == (0, "")


def test_the_ray_plist_holds_the_token_and_is_private() -> None:
    config = Config(cluster=WORKER)
    rendered = render_units(config, inputs_for_golden("macos", "user", config))
    ray = next(u for u in rendered if u.service == "ray")
    plist = plistlib.loads(ray.content.encode())
    assert set(plist) <= set(LAUNCHD_KEYS)
    assert plist["EnvironmentVariables"]["RAY_AUTH_MODE"] == "token"
    assert plist["EnvironmentVariables"]["RAY_AUTH_TOKEN"] == (
        "*** RAY_AUTH_TOKEN from secrets.env ***"
    )
    assert ray.secret and ray.mode == 0o600


def test_ray_sockets_stay_within_the_socket_path_limit() -> None:
    short = Path("/home/alice/.local/share/stackctl")
    assert ray_temp_dir(short) == short / "ray"
    deep = Path("/Users/alice/Library/Application Support/stackctl")
    moved = ray_temp_dir(deep)
    assert moved.parent == Path("/tmp") and moved.name.startswith("stackctl-ray-")
    assert moved == ray_temp_dir(deep) != ray_temp_dir(deep / "other")  # its own, stable
    longest = "/session_2026-12-02_09-23-46_811875_4194304/sockets/plasma_store"
    assert len(str(moved) + longest) <= 103


def test_an_ollama_node_tells_its_serve_replica_where_its_ollama_is() -> None:
    config = Config(cluster=WORKER)
    inputs = dataclasses.replace(inputs_for_golden("linux", "user", config), backend="ollama")
    ray = {u.service: u.content for u in render_units(config, inputs)}["ray"]
    assert "Environment=STACKCTL_OLLAMA_URL=http://127.0.0.1:11434" in ray


def test_units_render_previews_a_head_on_a_machine_without_gpus(
    stackctl, fake_bin, isolated_home, tmp_path
) -> None:
    fake_bin.remove("nvidia-smi")
    config = tmp_path / "stack.yaml"
    config.write_text("backend: vllm\ncluster: {role: head, address: 10.0.0.5}\n")
    result = stackctl("--config", str(config), "units", "render", "--platform", "linux")
    assert result.code == 0, result.err
    assert "--tensor-parallel-size 1 --pipeline-parallel-size 2" in result.out
    assert "==> " in result.out and "stackctl-ray.service <==" in result.out
