"""`stackctl cluster status`, the head's view of its nodes in `status`, and the wait before
vLLM: against a stand-in for Ray's dashboard on a real loopback socket."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stackctl.cluster_join import wait_then_exec
from stackctl.cluster_state import ClusterView, RayNode, read_nodes
from stackctl.config import ClusterSection, load
from stackctl.secrets import write_env_file
from stackctl.stack import resolve_stack
from stackctl.status import StackStatus
from tests.fakes.asgi_server import ServerThread
from tests.fakes.ray_dashboard import dashboard, node
from tests.ports import free_ports

TOKEN = "cluster-token-0123456789"


@pytest.fixture
def head(tmp_path: Path, isolated_home: Path, monkeypatch):
    """A head's config and secrets, and Ray's dashboard where that config says it is."""
    (port,) = free_ports(1)
    nodes = [node("10.0.0.5:6380", head=True, gpus=2, services="ray.vllm.proxy"),
             node("10.0.0.6:6380", gpus=2)]  # fmt: skip
    config = tmp_path / "stack.yaml"
    config.write_text(
        f"backend: vllm\ncluster:\n  role: head\n  address: 10.0.0.5\n  nodes: 2\n"
        f"  node_ports: {port - 7}\n"
    )
    secrets = resolve_stack(load(config), config).paths.secrets_file
    write_env_file(secrets, {"RAY_AUTH_TOKEN": TOKEN})
    monkeypatch.setenv("STACKCTL_CONFIG", str(config))
    with ServerThread(dashboard(TOKEN, nodes), port=port):
        yield config, nodes


def test_every_node_alive(head, stackctl) -> None:
    result = stackctl("cluster", "status")
    assert result.code == 0, result.out
    assert result.out.splitlines() == [
        "NODE           ADDRESS   STATE  GPUS  RUNS",
        "10.0.0.5:6380  10.0.0.5  alive  2     head: ray, vllm, proxy",
        "10.0.0.6:6380  10.0.0.6  alive  2     ray",
        "2/2 nodes in the cluster",
    ]
    data = json.loads(stackctl("cluster", "status", "--json").out)
    assert (data["role"], data["alive"], data["expected"], data["missing"]) == ("head", 2, 2, [])
    assert [n["gpus"] for n in data["nodes"]] == [2, 2]


def test_a_node_that_left_is_named_and_exits_3(head, stackctl) -> None:
    _, nodes = head
    nodes[1] = node("10.0.0.6:6380", alive=False, gpus=2)
    result = stackctl("cluster", "status")
    assert result.code == 3
    assert result.out.splitlines()[3:] == [
        "1/2 nodes in the cluster",
        "node 10.0.0.6:6380 left the cluster (Terminated due to preemption: Node received "
        "SIGTERM; draining before shutdown.): on it, `stackctl status` and `stackctl logs ray` "
        "tell why",
        "1 of 2 nodes are in the cluster; the model starts once every node has joined "
        "(`stackctl cluster join-command` prints the command a new node runs)",
    ]
    # back under the same name: the dead entry Ray still lists is not missing any more
    nodes.append(node("10.0.0.6:6380", gpus=2))
    assert stackctl("cluster", "status").code == 0


def test_unequal_gpu_counts_are_refused(head, stackctl) -> None:
    _, nodes = head
    nodes[1] = node("10.0.0.6:6380", gpus=1)
    result = stackctl("cluster", "status")
    assert result.code == 3
    assert result.out.splitlines()[-1] == (
        "the nodes have unequal GPU counts (10.0.0.5:6380 2, 10.0.0.6:6380 1): vLLM splits "
        "the model over the same number of GPUs on every node (tensor parallel); give every "
        "node the same GPUs"
    )


def test_a_wrong_token_is_reported(head, stackctl) -> None:
    config, _ = head
    secrets = resolve_stack(load(config), config).paths.secrets_file
    write_env_file(secrets, {"RAY_AUTH_TOKEN": "not-the-token"})
    result = stackctl("cluster", "status")
    assert result.code == 3
    assert result.out.splitlines()[-1] == (
        "the head's Ray does not answer (HTTP 403: it wants the RAY_AUTH_TOKEN of "
        "secrets.env): see `stackctl logs ray`"
    )


def test_no_cluster(stackctl, isolated_home, tmp_path) -> None:
    config = tmp_path / "stack.yaml"
    config.write_text("backend: ollama\n")
    result = stackctl("--config", str(config), "cluster", "status")
    assert result.code == 1
    assert result.out.startswith(f"this machine is in no cluster ({config} has no cluster:")
    result = stackctl("--config", str(config), "cluster", "join-command")
    assert result.code == 1 and "this machine is in no cluster" in result.err


def test_a_worker_reports_its_own_ray_and_the_head(stackctl, isolated_home, tmp_path) -> None:
    (closed,) = free_ports(1)
    config = tmp_path / "stack.yaml"
    config.write_text(f"cluster: {{role: worker, head: 127.0.0.1, port: {closed}}}\n")
    result = stackctl("--config", str(config), "cluster", "status")
    assert result.code == 3
    lines = result.out.splitlines()
    assert lines[0] == f"a worker of the cluster at 127.0.0.1:{closed}"
    assert lines[2] == "the head: Connection refused"
    assert lines[-1] == "the whole cluster: `stackctl cluster status` on the head"


def test_status_is_degraded_while_a_node_is_missing() -> None:
    view = ClusterView(expected=2, nodes=[RayNode("h:1", "h", True, 1, True, ("ray",))])
    status = StackStatus(rows=[], installed=True, cluster=view)
    assert status.exit_code == 3
    assert status.hints == [
        "1 of 2 nodes are in the cluster; the model starts once every node has joined "
        "(`stackctl cluster join-command` prints the command a new node runs)"
    ]
    assert status.to_dict()["cluster"]["alive"] == 1


def test_vllm_starts_once_every_node_has_joined(head, capsys, monkeypatch) -> None:
    config, nodes = head
    nodes.pop()
    monkeypatch.setattr("stackctl.cluster_join.WAIT_POLL", 0.01)
    stack = resolve_stack(load(config), config)
    seen: list[int] = []
    ran: list[list[str]] = []
    section = stack.config.cluster
    assert isinstance(section, ClusterSection)

    def read(cluster: ClusterSection) -> ClusterView:
        view = read_nodes(cluster, {"RAY_AUTH_TOKEN": TOKEN})
        seen.append(len(view.alive))
        if len(seen) == 3:
            nodes.append(node("10.0.0.6:6380", gpus=2))  # the worker joins
        return view

    wait_then_exec(stack, ["/venv/bin/vllm", "serve", "m"], read=read,
                   execv=lambda path, argv: ran.append(argv))  # fmt: skip
    assert seen == [1, 1, 1, 2]
    assert ran == [["/venv/bin/vllm", "serve", "m"]]
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("stackctl: waiting before vllm: 1 of 2 nodes are in the cluster")
    assert out[-1] == "stackctl: 2/2 nodes in the cluster; starting vllm"
