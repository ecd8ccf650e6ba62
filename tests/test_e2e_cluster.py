"""A real two-node Ray cluster on this one machine (issue 12): two stackctl "machines", each
with its own home, STACKCTL_HOME and real systemd user manager, and Ray 2.60 from PyPI
installed by `up`'s install step into vLLM's venv (the fake uv installs the real `ray` of the
test's Ray venv, STACKCTL_TEST_RAY_PYTHON, next to the fake vLLM; .ci/run builds that venv).
The fake vLLM does what vLLM's Ray executor does: it joins the cluster with the token,
reserves tensor x pipeline parallel GPUs in a placement group (declared by `ray start
--num-gpus` from the fake nvidia-smi), so a missing node really blocks it.

head `up` -> `cluster join-command` -> a wrong token is refused, nothing written -> the
worker's `up --join` -> the head's vLLM healthy, the proxy lists and answers -> `cluster
status` 2/2 -> the worker's Ray stopped: head `status` exits 3 naming it -> started: it
rejoins, healthy again.

Without STACKCTL_TEST_RAY_PYTHON it is skipped locally and fails in CI.
Both nodes run on this host's address, so each gets its own block of Ray ports
(cluster.node_ports), which the worker's stack.yaml names before it joins.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from stackctl.secrets import read_env_file
from tests.fakes.installer import FakeBin
from tests.ports import free_ports
from tests.systemd_user import ManagerProcess, SystemdUser, _start_manager, _stop_manager

pytestmark = pytest.mark.systemd
RAY_PYTHON = os.environ.get("STACKCTL_TEST_RAY_PYTHON")
GPU = {"name": "NVIDIA GeForce RTX 4090", "memory_total_mib": 24564}
MODEL, SERVED = "Qwen/Qwen2.5-0.5B-Instruct", "qwen2.5:0.5b"


def free_blocks(count: int, size: int = 1000) -> list[int]:
    """Starts of `count` blocks of Ray ports whose fixed ports (the first 8) are free now."""
    found = []
    for start in range(20000, 32000 - size, size):
        taken = False
        for port in range(start, start + 8):
            with socket.socket() as sock:
                try:
                    sock.bind(("0.0.0.0", port))
                except OSError:
                    taken = True
                    break
        if not taken:
            found.append(start)
        if len(found) == count:
            return found
    raise AssertionError("no free blocks of Ray ports")


def ports_outside(count: int, *blocks: range) -> list[int]:
    """`count` free ports, none in the nodes' blocks of Ray ports (Ray refuses a port that
    one of its own components uses, e.g. a worker process's)."""
    while True:
        ports = free_ports(count)
        if not any(port in block for port in ports for block in blocks):
            return ports


@pytest.fixture
def worker_manager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ManagerProcess]:
    """The second machine's own systemd user manager (when there is a Ray to run)."""
    if RAY_PYTHON is None:
        if os.environ.get("CI"):
            pytest.fail("STACKCTL_TEST_RAY_PYTHON is not set: .ci/run builds the Ray venv")
        pytest.skip("set STACKCTL_TEST_RAY_PYTHON to a venv with ray[default]==2.60.0")
    manager = _start_manager(tmp_path_factory.mktemp("worker"))
    try:
        yield manager
    finally:
        _stop_manager(manager)


class Machine:
    """`stackctl` on one of the two machines, as a subprocess with that machine's env."""

    def __init__(self, env: dict[str, str], home: Path):
        self.env, self.home = env, home

    @classmethod
    def second(cls, manager: ManagerProcess) -> Machine:
        """The other machine: its own systemd user manager, STACKCTL_HOME and PATH shims."""
        env = {
            **os.environ,
            **manager.env(),
            "STACKCTL_HOME": str(manager.home),
            "PATH": f"{manager.shim_dir}{os.pathsep}{os.environ['PATH']}",
        }
        return cls(env, manager.home)

    def write_config(self, text: str) -> Path:
        """This machine's stack.yaml."""
        path = self.home / ".config/stackctl/stack.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def run(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "stackctl", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def status(self) -> tuple[int, dict]:
        done = self.run("status", "--json", timeout=60)
        return done.returncode, json.loads(done.stdout)

    def wait_status(self, want: int, timeout: float, proxy_lists: str | None = None) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            code, data = self.status()
            rows = {row["service"]: row for row in data["services"]}
            listed = proxy_lists is None or proxy_lists in rows.get("proxy", {}).get("models", [])
            if code == want and listed:
                return data
            if time.monotonic() > deadline:
                raise AssertionError(f"status never exited {want}: {json.dumps(data, indent=2)}")
            time.sleep(1)


def test_a_two_node_cluster_serves_one_model_across_both(
    worker_manager: ManagerProcess, systemd_user: SystemdUser, fake_bin: FakeBin
) -> None:
    fake_bin.remove("ollama")
    fake_bin.scenario(gpus=[GPU], linger="yes", ray_python=RAY_PYTHON)
    head_ports, worker_ports = free_blocks(2)
    vllm_port, proxy_port, gcs_port = ports_outside(
        3, range(head_ports, head_ports + 1000), range(worker_ports, worker_ports + 1000)
    )
    head_config = systemd_user.home / ".config/stackctl/stack.yaml"
    head_config.parent.mkdir(parents=True, exist_ok=True)
    head_config.write_text(
        f"backend: vllm\n"
        f'vllm: {{port: {vllm_port}, model: {MODEL}, served_model_name: "{SERVED}"}}\n'
        f"proxy: {{port: {proxy_port}}}\nopenwebui: {{enabled: false}}\n"
        f"cluster: {{role: head, nodes: 2, port: {gcs_port}, node_ports: {head_ports}}}\n"
    )
    head = Machine({**os.environ}, systemd_user.home)
    worker = Machine.second(worker_manager)

    # the head: Ray up, vLLM waiting for the second node; `up` does not wait for it
    done = head.run("up", "--yes")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "vLLM starts once all 2 nodes have joined" in done.stdout
    venv = systemd_user.home / ".local/share/stackctl/venvs/vllm"
    assert ["uv", "pip", "install", "--python", str(venv / "bin/python"), "vllm", "ray[default]",
            "--torch-backend=auto"] in fake_bin.calls("uv")  # fmt: skip
    code, data = head.status()
    assert code == 3 and data["cluster"]["alive"] == 1

    done = head.run("cluster", "join-command")
    assert done.returncode == 0, done.stderr
    join = shlex.split(done.stdout.strip())
    token = read_env_file(systemd_user.home / ".config/stackctl/secrets.env")["RAY_AUTH_TOKEN"]
    host = join[3].rsplit(":", 1)[0]
    assert join[:3] == ["stackctl", "up", "--join"] and join[3] == f"{host}:{gcs_port}"
    assert join[4:] == ["--token", token, "--vllm-version", "0.10.1.1", "--ray-version",
                        "2.60.0", "--python-version", "3.11", "--gpus", "1"]  # fmt: skip

    # the worker: its own block of Ray ports on this shared host
    worker_config = worker.home / ".config/stackctl/stack.yaml"
    worker_config.parent.mkdir(parents=True, exist_ok=True)
    worker_config.write_text(
        f"cluster: {{role: worker, head: {host}, port: {gcs_port}, node_ports: {worker_ports}}}\n"
    )
    wrong = [*join[1:5], "not-the-cluster-token-0000", *join[6:]]
    done = worker.run(*wrong, "--yes")
    assert done.returncode == 1
    assert (
        f"the head at {host}:{gcs_port} refuses this token: copy the command `stackctl cluster "
        "join-command` prints on the head, whole, and run it here" in done.stderr
    )
    assert not (worker.home / ".config/stackctl/secrets.env").exists()

    done = worker.run(*join[1:], "--yes")
    assert done.returncode == 0, done.stdout + done.stderr
    secrets = worker.home / ".config/stackctl/secrets.env"
    assert read_env_file(secrets)["RAY_AUTH_TOKEN"] == token
    assert secrets.stat().st_mode & 0o777 == 0o600
    unit_dir = worker.home / ".config/systemd/user"
    units = sorted(p.name for p in unit_dir.glob("stackctl*") if p.is_file())
    assert units == ["stackctl-ray.service", "stackctl.target"]
    doctor = worker.run("doctor").stdout
    assert f"the head's Ray at {host}:{gcs_port} is reachable" in doctor
    assert "vLLM 0.10.1.1, as on the head" in doctor and "Ray 2.60.0, as on the head" in doctor

    # the head's vLLM runs across both nodes; the proxy lists it and answers
    data = head.wait_status(0, timeout=240, proxy_lists=SERVED)
    assert data["cluster"]["alive"] == 2
    reply = httpx.post(
        f"http://127.0.0.1:{proxy_port}/v1/chat/completions",
        json={"model": SERVED, "messages": [{"role": "user", "content": "hi"}]},
        timeout=30,
    )
    assert reply.status_code == 200 and reply.json()["choices"][0]["message"]["content"]
    done = head.run("cluster", "status")
    assert done.returncode == 0, done.stdout
    assert "2/2 nodes in the cluster" in done.stdout
    worker_node = f"{host}:{worker_ports}"
    assert worker_node in done.stdout

    # the worker's Ray goes: the head names the node that left, and exits 3
    assert worker.run("stop", "ray").returncode == 0
    data = head.wait_status(3, timeout=60)
    assert any(
        f"node {worker_node} left the cluster" in line for line in data["message"].split("\n")
    )
    # and comes back: it rejoins, vLLM starts again, all healthy
    assert worker.run("start", "ray").returncode == 0
    head.wait_status(0, timeout=240, proxy_lists=SERVED)
