"""A Ray cluster's facts stackctl decides: each node's ports, its address, the join command.

Ray picks most of its ports at random unless told; stackctl gives every node one block of
1000 ports from `cluster.node_ports` (P), so the firewall rule between the nodes is one
range, and two nodes can share one host (the CI's two-node cluster):

    P     node manager (raylet)          P+4  runtime env agent
    P+1   object manager                 P+5  metrics export
    P+2   dashboard agent, HTTP          P+6  Ray client server (head)
    P+3   dashboard agent, gRPC          P+7  dashboard (head, 127.0.0.1 only)
    P+100 to P+999: worker processes

plus the head's GCS port (`cluster.port`, 6379). The flags are `ray start`'s (Ray 2.60:
`ray start --help`).
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import shlex
import socket
from dataclasses import dataclass
from pathlib import Path

from stackctl.errors import StackctlError
from stackctl.secret_names import RAY_AUTH_TOKEN
from stackctl.types import Backend

PORTS_IN_BLOCK = 1000
FIRST_WORKER_PORT = 100  # offset of the worker processes' range in the block
NODE_SERVICES_LABEL = "stackctl-services"  # a node's Ray label: the services it runs, by "."
RAY_PACKAGE = "ray[default]"  # the dashboard and `ray status` come with the default extra
RAY_SERVE_PACKAGE = "ray[serve]"  # an Ollama cluster: Serve's replicas on every node (default too)

__all__ = [
    "NODE_SERVICES_LABEL",
    "RAY_AUTH_TOKEN",
    "RAY_PACKAGE",
    "RAY_SERVE_PACKAGE",
    "RayPorts",
    "join_address",
    "join_command",
    "node_address",
    "parse_join",
    "ray_package",
    "ray_ports",
    "ray_temp_dir",
    "ray_venv",
]


@dataclass(frozen=True)
class RayPorts:
    """The ports of one node's block (see the module docstring)."""

    node_manager: int
    object_manager: int
    dashboard_agent: int
    dashboard_agent_grpc: int
    runtime_env_agent: int
    metrics_export: int
    client_server: int
    dashboard: int
    min_worker: int
    max_worker: int

    @property
    def first(self) -> int:
        return self.node_manager

    @property
    def last(self) -> int:
        return self.max_worker


def ray_ports(first: int) -> RayPorts:
    """The block of ports that starts at `first`."""
    return RayPorts(
        node_manager=first,
        object_manager=first + 1,
        dashboard_agent=first + 2,
        dashboard_agent_grpc=first + 3,
        runtime_env_agent=first + 4,
        metrics_export=first + 5,
        client_server=first + 6,
        dashboard=first + 7,
        min_worker=first + FIRST_WORKER_PORT,
        max_worker=first + PORTS_IN_BLOCK - 1,
    )


def ray_package(backend: Backend) -> str:
    """What a node's Ray venv installs: with vLLM the default extra; with Ollama, Serve."""
    return RAY_PACKAGE if backend == "vllm" else RAY_SERVE_PACKAGE


def ray_venv(venvs_dir: Path, vllm_venv: Path, backend: Backend) -> Path:
    """The venv Ray runs from: vLLM's (Ray is a vLLM dependency, and the driver, vLLM, must
    run the very same Ray), else a venv of its own next to the others."""
    return vllm_venv if backend == "vllm" else venvs_dir / "ray"


# AF_UNIX socket paths are at most 107 bytes on Linux and 103 on macOS (sun_path), and Ray
# puts its sockets at <temp dir>/session_<date>_<time>_<µs>_<pid>/sockets/plasma_store
_RAY_SOCKET_TAIL = len("/session_2026-12-02_09-23-46_811875_4194304/sockets/plasma_store")
SOCKET_PATH_MAX = 103
SHORT_TEMP = Path("/tmp")  # Ray's own default root (/tmp/ray); macOS's $TMPDIR is too deep


def ray_temp_dir(data_dir: Path) -> Path:
    """Ray's session files and sockets: in stackctl's data dir, unless that is too deep for
    a socket path (a Mac's ~/Library/Application Support, a long home); then a short
    directory of this data dir's own in /tmp (a user's services share /tmp; the system
    scope's /var/lib/stackctl is short)."""
    preferred = data_dir / "ray"
    if len(str(preferred)) + _RAY_SOCKET_TAIL <= SOCKET_PATH_MAX:
        return preferred
    digest = hashlib.sha256(str(data_dir).encode()).hexdigest()[:12]
    return SHORT_TEMP / f"stackctl-ray-{digest}"


def source_address(toward: str, port: int) -> str:
    """This machine's address on the route toward `toward` (a UDP "connect" sends nothing;
    it only makes the kernel pick the route), or 127.0.0.1 when there is no route."""
    try:
        family = socket.AF_INET6 if ":" in toward else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect((toward, port))
            return probe.getsockname()[0]
    except OSError:
        return "127.0.0.1"


def node_address(configured: str, head: str, port: int) -> str:
    """The address the other nodes reach this one at: `cluster.address`, else the source
    address of the route to the head (workers), else the primary interface's (the head: the
    route to a public address, which no packet takes)."""
    if configured:
        return configured
    return source_address(head or "192.0.2.1", port)  # 192.0.2.1: TEST-NET-1 (RFC 5737)


_JOIN = re.compile(r"^(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(?P<port>\d{1,5})$")


def parse_join(value: str) -> tuple[str, int]:
    """HOST:PORT (an IPv6 host in brackets) from `up --join`."""
    match = _JOIN.match(value.strip())
    port = int(match.group("port")) if match else 0
    if not match or not 1 <= port <= 65535:
        raise StackctlError(
            f"--join {value}: expected the head's HOST:PORT, e.g. --join 10.0.0.5:6379 "
            "(`stackctl cluster join-command` on the head prints the whole command)"
        )
    host = match.group("host").strip("[]")
    if ":" in host:
        ipaddress.IPv6Address(host)
    return host, port


def join_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def join_command(
    host: str,
    port: int,
    token: str,
    pins: dict[str, str],
    models: list[str] | None = None,
    gpus: int | None = None,
) -> str:
    """The one command a worker runs to join: the head's address and token, the versions
    the worker must install to match the head (Ray refuses a node whose Ray or Python
    differs; vLLM's workers must run the head's vLLM), on the vLLM path the head's GPU count
    (every node needs as many), and on the Ollama path the head's models (Serve may route
    any request to any node's Ollama)."""
    argv = ["stackctl", "up", "--join", join_address(host, port), "--token", token]
    for name, version in pins.items():
        argv += [f"--{name}-version", version]
    if gpus:
        argv += ["--gpus", str(gpus)]
    for model in models or []:
        argv += ["--model", model]
    return shlex.join(argv)
