"""`stackctl cluster status`: the nodes as the head sees them, or a worker's own view."""

from __future__ import annotations

import socket
from typing import Any

from stackctl.cluster import join_address
from stackctl.cluster_state import ClusterView, read_nodes
from stackctl.config.model import ClusterSection
from stackctl.errors import ExitCode
from stackctl.output import table
from stackctl.stack import Stack


def nodes_line(view: ClusterView) -> str:
    """`2/2 nodes`, as `status` shows it on the head."""
    return f"{len(view.alive)}/{view.expected} nodes"


def render_nodes(view: ClusterView) -> str:
    rows = [
        [
            node.name,
            node.address,
            "alive" if node.alive else "dead",
            node.gpus,
            ("head: " if node.is_head else "") + (", ".join(node.services) or "-"),
        ]
        for node in view.nodes
    ]
    lines = [table(["NODE", "ADDRESS", "STATE", "GPUS", "RUNS"], rows)] if rows else []
    lines.append(f"{nodes_line(view)} in the cluster")
    lines += view.problems()
    return "\n".join(lines)


def head_reachable(cluster: ClusterSection, timeout: float = 3.0) -> str:
    """ "" when the head's GCS port accepts a connection, else why not."""
    try:
        with socket.create_connection((cluster.head, cluster.port), timeout=timeout):
            return ""
    except OSError as exc:
        return exc.strerror or type(exc).__name__


def cluster_report(stack: Stack) -> tuple[str, dict[str, Any], int]:
    """(text, JSON data, exit code): 0 every node alive, 3 fewer, 1 no cluster."""
    cluster = stack.config.cluster
    if cluster is None:
        text = (
            f"this machine is in no cluster ({stack.config_path} has no cluster: section; "
            'README, "A cluster", shows how to make one)'
        )
        return text, {"cluster": None, "message": text}, ExitCode.ERROR
    if cluster.is_head:
        view = read_nodes(cluster, stack.services_environment)
        code = ExitCode.OK if not view.problems() else ExitCode.DEGRADED
        return render_nodes(view), {"role": "head", **view.to_dict()}, code
    return _worker_report(stack, cluster)


def _worker_report(stack: Stack, cluster: ClusterSection) -> tuple[str, dict[str, Any], int]:
    from stackctl.health import check

    head = join_address(cluster.head, cluster.port)
    service = stack.service("ray")
    ray = check(service) if service else None
    unreachable = head_reachable(cluster)
    lines = [f"a worker of the cluster at {head}"]
    lines.append(f"this node's Ray: {'ok' if ray and ray.ok else (ray.detail if ray else '-')}")
    lines.append(f"the head: {unreachable or 'reachable'}")
    problems = []
    if ray is None or not ray.ok:
        problems.append("this node's Ray is not running: `stackctl logs ray` shows why")
    if unreachable:
        problems.append(
            f"the head at {head} cannot be reached ({unreachable}): is its Ray up, and is the "
            "port open in its firewall? (`stackctl doctor`)"
        )
    lines += problems
    lines.append("the whole cluster: `stackctl cluster status` on the head")
    data = {
        "role": "worker",
        "head": head,
        "ray_healthy": bool(ray and ray.ok),
        "head_reachable": not unreachable,
        "problems": problems,
    }
    return "\n".join(lines), data, ExitCode.DEGRADED if problems else ExitCode.OK
