"""A real Ray cluster of several nodes on this one host, for tests: each node is a
`ray start --block` process with its own ports and temp dir, in its own process group so a
test stops exactly its own nodes (`ray stop` would stop every Ray on the machine).

The Ray comes from STACKCTL_TEST_RAY_PYTHON, a venv's Python with `ray[serve]` (.ci/run
builds it); tests that need it are skipped without it locally, and fail without it in CI.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.ports import free_ports

RAY_PYTHON_ENV = "STACKCTL_TEST_RAY_PYTHON"
TOKEN = "0123456789abcdef0123456789abcdef"  # Ray's token auth (RAY_AUTH_MODE=token)
# ray start's flags for a node's fixed ports (Ray 2.60 `ray start --help`), one free port each
PORT_FLAGS = (
    "--node-manager-port",
    "--object-manager-port",
    "--dashboard-agent-listen-port",
    "--dashboard-agent-grpc-port",
    "--runtime-env-agent-port",
    "--metrics-export-port",
)
WORKER_PORTS = 40
STARTED = "Ray runtime started."  # ray/scripts/scripts.py, once the node is up  # each node's range of worker process ports


def ray_python() -> str:
    """The Ray venv's Python; skips the test without one (fails it in CI, which builds one)."""
    python = os.environ.get(RAY_PYTHON_ENV, "")
    if python and Path(python).exists():
        return python
    if os.environ.get("CI"):
        pytest.fail(f"{RAY_PYTHON_ENV} is not set: .ci/run builds a venv with ray[serve]")
    pytest.skip(f"set {RAY_PYTHON_ENV} to a venv's Python with ray[serve]==2.60.0")


def cluster_env(**extra: str) -> dict[str, str]:
    """The environment every node and driver of the test cluster shares."""
    return {
        **os.environ,
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": TOKEN,
        **extra,
    }


class RayNode:
    """One node: `ray start --block`, head or joining `address`."""

    def __init__(self, python: str, *, head: bool, address: str, env: dict[str, str]):
        self.temp_dir = Path(tempfile.mkdtemp(prefix="rt", dir=_short_root()))
        head_port = int(address.rsplit(":", 1)[1])
        workers = _worker_range(besides=head_port)
        ports = _fixed_ports(len(PORT_FLAGS) + 2, besides={*workers, head_port})
        argv = [str(Path(python).parent / "ray"), "start", "--block", "--disable-usage-stats"]
        argv += ["--node-ip-address", "127.0.0.1", "--temp-dir", str(self.temp_dir)]
        argv += ["--num-cpus", "1", "--num-gpus", "0"]
        for flag, port in zip(PORT_FLAGS, ports, strict=False):
            argv += [flag, str(port)]
        argv += ["--min-worker-port", str(workers[0]), "--max-worker-port", str(workers[-1])]
        if head:
            argv += ["--head", "--port", str(head_port), "--dashboard-host", "127.0.0.1"]
            argv += ["--dashboard-port", str(ports[-1])]
            argv += ["--ray-client-server-port", str(ports[-2])]
        else:
            argv += ["--address", address]
        self.log = self.temp_dir.with_suffix(".log")
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    def wait_started(self, timeout: float = 180.0) -> None:
        """Until `ray start` says the node runs (it prints this once the raylet is up)."""
        deadline = time.monotonic() + timeout
        while STARTED not in self.log.read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"ray start failed:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.2)

    def stop(self) -> None:
        """SIGTERM to the node's process group, then SIGKILL to what is left of it."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=3)  # `ray start --block` takes 10 s and more to stop itself
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        shutil.rmtree(self.temp_dir, ignore_errors=True)
        self.log.unlink(missing_ok=True)


class RayCluster:
    """A head, then one worker per further entry of `node_envs` (each node's env additions)."""

    def __init__(self, python: str, node_envs: list[dict[str, str]]):
        (port,) = free_ports(1)
        self.address = f"127.0.0.1:{port}"
        self.nodes: list[RayNode] = []
        try:
            for i, extra in enumerate(node_envs):
                node = RayNode(python, head=i == 0, address=self.address, env=cluster_env(**extra))
                self.nodes.append(node)
                node.wait_started()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for node in reversed(self.nodes):
            node.stop()


def _short_root() -> str:
    """Ray's Unix sockets live in the temp dir, and a socket path has at most 107 bytes:
    a short directory outside /tmp (a booted systemd in another test may clear /tmp)."""
    root = Path(os.environ.get("STACKCTL_TEST_RAY_ROOT", "/var/tmp/stackctl-ray"))
    root.mkdir(parents=True, exist_ok=True)
    return str(root)


def _worker_range(besides: int) -> range:
    """WORKER_PORTS consecutive ports that are all free now (and not `besides`, the head's
    port, which may not be taken yet)."""
    while True:
        first = free_ports(1)[0]
        ports = range(first, first + WORKER_PORTS)
        if ports[-1] < 32768 and besides not in ports and all(_free(p) for p in ports):
            return ports


def _fixed_ports(count: int, besides: set[int]) -> list[int]:
    """`count` free ports, none of them in `besides` (the node's worker range, the head's
    port)."""
    while True:
        ports = free_ports(count)
        if not any(port in besides for port in ports):
            return ports


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
