"""The cluster as Ray sees it: its nodes, from the head's dashboard (loopback, token auth).

`GET /api/v0/nodes` is the state API behind `ray list nodes` (Ray 2.60:
ray/dashboard/modules/state/state_head.py); with token auth it wants the cluster's token as
a Bearer token. Asking it costs one HTTP request, where `ray status` or `ray.init` would
start a Python with Ray in it for seconds: `stackctl status` stays fast.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from stackctl.cluster import NODE_SERVICES_LABEL, ray_ports
from stackctl.config.model import ClusterSection
from stackctl.localhttp import Unreachable, get_json
from stackctl.secret_names import RAY_AUTH_TOKEN

NODES_PATH = "/api/v0/nodes?limit=1000&detail=true"


@dataclass(frozen=True)
class RayNode:
    """One node the head knows: alive, or dead (Ray keeps dead nodes listed for a while)."""

    name: str  # `--node-name`: its address and raylet port
    address: str
    alive: bool
    gpus: int
    is_head: bool
    services: tuple[str, ...]  # what it runs (its stackctl-services label)
    message: str = ""  # why Ray marked it dead


@dataclass
class ClusterView:
    """The nodes the head reports, against how many the cluster should have."""

    expected: int
    nodes: list[RayNode] = field(default_factory=list)
    error: str = ""  # the head's Ray could not be asked: why

    @property
    def alive(self) -> list[RayNode]:
        return [n for n in self.nodes if n.alive]

    @property
    def missing(self) -> list[RayNode]:
        """Dead nodes that have not come back under the same name."""
        back = {n.name for n in self.alive}
        seen: dict[str, RayNode] = {}
        for node in self.nodes:
            if not node.alive and node.name not in back:
                seen[node.name] = node
        return list(seen.values())

    @property
    def gpu_counts(self) -> dict[str, int]:
        return {n.name: n.gpus for n in self.alive}

    @property
    def complete(self) -> bool:
        return not self.error and len(self.alive) >= self.expected

    def problems(self) -> list[str]:
        """What keeps the cluster from serving, each with what to do."""
        if self.error:
            return [f"the head's Ray does not answer ({self.error}): see `stackctl logs ray`"]
        found = []
        for node in self.missing:
            found.append(
                f"node {node.name} left the cluster ({node.message or 'dead'}): on it, "
                "`stackctl status` and `stackctl logs ray` tell why"
            )
        if len(self.alive) < self.expected:
            found.append(
                f"{len(self.alive)} of {self.expected} nodes are in the cluster; the model "
                "starts once every node has joined (`stackctl cluster join-command` prints "
                "the command a new node runs)"
            )
        if len(set(self.gpu_counts.values())) > 1:
            counts = ", ".join(f"{name} {gpus}" for name, gpus in self.gpu_counts.items())
            found.append(
                f"the nodes have unequal GPU counts ({counts}): vLLM splits the model over "
                "the same number of GPUs on every node (tensor parallel); give every node "
                "the same GPUs"
            )
        return found

    def to_dict(self) -> dict[str, Any]:
        return {
            "expected": self.expected,
            "alive": len(self.alive),
            "nodes": [asdict(n) for n in self.nodes],
            "missing": [n.name for n in self.missing],
            "problems": self.problems(),
        }


def dashboard_url(cluster: ClusterSection) -> str:
    return f"http://127.0.0.1:{ray_ports(cluster.node_ports).dashboard}"


def read_nodes(
    cluster: ClusterSection, environ: Mapping[str, str], timeout: float = 3.0
) -> ClusterView:
    """The head's view of the cluster (run on the head: its dashboard is on loopback)."""
    view = ClusterView(expected=cluster.nodes)
    token = environ.get(RAY_AUTH_TOKEN, "")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        status, body = get_json(
            dashboard_url(cluster) + NODES_PATH, headers=headers, timeout=timeout
        )
    except Unreachable as exc:
        view.error = exc.reason
        return view
    if status in (401, 403):  # no token, a wrong one
        view.error = f"HTTP {status}: it wants the {RAY_AUTH_TOKEN} of secrets.env"
        return view
    try:
        rows = body["data"]["result"]["result"]
        view.nodes = [_node(row) for row in rows]
    except (KeyError, TypeError):
        view.error = f"HTTP {status}, an answer of an unexpected shape"
    view.nodes.sort(key=lambda n: (not n.is_head, n.name, not n.alive))
    return view


def _node(row: dict[str, Any]) -> RayNode:
    resources = row.get("resources_total") or {}
    labels = row.get("labels") or {}
    services = str(labels.get(NODE_SERVICES_LABEL, ""))
    return RayNode(
        name=str(row.get("node_name") or row.get("node_ip") or row.get("node_id")),
        address=str(row.get("node_ip", "")),
        alive=row.get("state") == "ALIVE",
        gpus=int(resources.get("GPU", 0)),
        is_head=bool(row.get("is_head_node")),
        services=tuple(s for s in services.split(".") if s),
        message=str(row.get("state_message") or ""),
    )
