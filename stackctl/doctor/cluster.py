"""doctor in a cluster: a worker reaches its head and runs the head's Ray, vLLM and Python."""

from __future__ import annotations

from collections.abc import Iterator

from stackctl.cluster import join_address
from stackctl.cluster_join import read_head_versions, stack_ray_venv, venv_versions
from stackctl.cluster_report import head_reachable
from stackctl.doctor.base import Context, Finding

LABELS = {"vllm": "vLLM", "ray": "Ray", "python": "Python"}
REJOIN = (
    "run `stackctl cluster join-command` on the head and the command it prints here (it "
    "installs the head's versions)"
)


def check_cluster(ctx: Context) -> Iterator[Finding]:
    cluster = ctx.config.cluster
    if cluster is None or cluster.is_head:
        return
    head = join_address(cluster.head, cluster.port)
    unreachable = head_reachable(cluster)
    if unreachable:
        yield Finding(
            "error",
            "cluster",
            f"the head's Ray at {head} cannot be reached from here ({unreachable})",
            f"check `stackctl status` on the head, and open TCP port {cluster.port} (and the "
            "head's cluster.node_ports block) to this machine in the head's firewall",
        )
    else:
        yield Finding("ok", "cluster", f"the head's Ray at {head} is reachable")
    wanted = read_head_versions(ctx.paths.data_dir)
    here = venv_versions(stack_ray_venv(ctx.stack))
    if not wanted:
        yield Finding(
            "warn", "cluster", "the head's versions were not recorded here (joined by hand?)",
            REJOIN,
        )  # fmt: skip
        return
    for name, version in wanted.items():
        have = here.get(name)
        if have == version:
            yield Finding("ok", "cluster", f"{LABELS[name]} {version}, as on the head")
        else:
            yield Finding(
                "error",
                "cluster",
                f"{LABELS[name]} {have or 'is missing'} here, the head runs {version} (Ray "
                "refuses a node whose Ray or Python differs; vLLM's workers must match)",
                REJOIN,
            )
