"""`stackctl up` in a cluster: the head's Ray token, and a worker's `up --join`.

A worker joins with the command the head prints (`stackctl cluster join-command`):
`stackctl up --join HOST:PORT --token T --vllm-version V --ray-version R --python-version P`.
It installs the head's versions into the backend's venv (Ray refuses a node whose Ray or
Python differs from the head's), asks the head's Ray whether it takes the token before it
writes its config, the token or its units, then records its `cluster:` section and the
token (secrets.env, 0600) and starts its Ray.
"""

from __future__ import annotations

import copy
import dataclasses
import re
import shlex
from pathlib import Path
from typing import TYPE_CHECKING

from stackctl.catalog import cluster_nodes, find, fits, memory_budget, recommend
from stackctl.cluster import RAY_PACKAGE, join_address, parse_join
from stackctl.cluster_join import (
    read_head_versions,
    record_head_versions,
    stack_ray_venv,
    venv_versions,
)
from stackctl.cluster_report import head_reachable
from stackctl.cluster_state import read_nodes
from stackctl.config import load
from stackctl.config.model import ClusterSection, Config
from stackctl.errors import CommandFailed, StackctlError
from stackctl.fsutil import atomic_write
from stackctl.output import gb
from stackctl.plan import Progress, Step
from stackctl.secret_names import RAY_AUTH_TOKEN
from stackctl.types import Backend, ServiceName

if TYPE_CHECKING:
    from stackctl.setup.context import Context, UpOptions
    from stackctl.setup.venv import VenvSpec

# What `ray status` prints when the head refuses the token (Ray 2.60's AuthenticationError,
# seen from a worker started with a wrong RAY_AUTH_TOKEN)
WRONG_TOKEN = re.compile(r"InvalidAuthToken|Authentication token is missing or incorrect")
TOKEN_PATTERN = re.compile(r"^[A-Za-z0-9_.~+/=-]{16,512}$")


def joined_config(
    config: Config, config_path: Path, options: UpOptions
) -> tuple[Config, UpOptions]:
    """The config of a worker joining HOST:PORT (its cluster section added in memory; the
    join steps write it), and the options with the backend the head runs."""
    if not options.token:
        raise StackctlError(
            "--join needs the cluster's --token: `stackctl cluster join-command` on the head "
            "prints the whole command"
        )
    if not TOKEN_PATTERN.match(options.token):
        raise StackctlError(
            "--token: that is not a cluster token (16 to 512 letters, digits and -_.~+/=): "
            "copy it whole from `stackctl cluster join-command` on the head"
        )
    host, port = parse_join(options.join or "")
    cluster = config.cluster
    if cluster is not None and (cluster.is_head or (cluster.head, cluster.port) != (host, port)):
        where = "the head" if cluster.is_head else f"a worker of {cluster.head}:{cluster.port}"
        raise StackctlError(
            f"{config_path} makes this machine {where}, not a worker of "
            f"{join_address(host, port)}: edit its cluster: section (or remove it), then "
            "run the join command again"
        )
    joined = copy.deepcopy(config)
    if cluster is None:
        joined.cluster = ClusterSection(role="worker", head=host, port=port)
    backend: Backend = "vllm" if "vllm" in options.pins else "ollama"
    return joined, dataclasses.replace(options, backend=options.backend or backend)


def require_the_heads_gpu_count(ctx: Context) -> None:
    """A vLLM worker has as many GPUs as the head (`--gpus`, which the join command
    carries): tensor parallelism splits each layer over the same count on every node."""
    wanted, found = ctx.options.gpus, len(ctx.facts.gpus)
    if wanted is None or not found or found == wanted:
        return  # no GPU at all is require_nvidia's to say
    raise StackctlError(
        f"this machine has {found} NVIDIA GPU{'s' if found != 1 else ''} and the cluster's "
        f"head {wanted}: vLLM splits the model over the same number of GPUs on every node "
        f"(tensor parallel = {wanted}), so every node needs {wanted}. Join a machine with "
        f"{wanted} GPU{'s' if wanted != 1 else ''}, or make the cluster of machines that "
        "are alike"
    )


def require_model_fits_the_cluster(ctx: Context) -> None:
    """The head refuses, with the numbers, a catalogued model the cluster's GPUs cannot hold
    (vLLM would fail to start on every node after minutes of loading)."""
    nodes = cluster_nodes(ctx.config)
    model = find(ctx.config.vllm.model)
    if model is None or fits(model, ctx.facts, "vllm", nodes):
        return  # not in the catalogue: its size is unknown
    budget = memory_budget(ctx.facts, nodes)
    smaller = recommend(ctx.facts, "vllm", nodes=nodes)
    other = (
        f", or a smaller model (vllm.model: {smaller.hf_id}, which fits)"
        if fits(smaller, ctx.facts, "vllm", nodes)
        else ""
    )
    raise StackctlError(
        f"{ctx.config.vllm.model} needs about {gb(model.need_gib('vllm'))} GB of GPU memory "
        f"(bf16), and {budget.describe()}: raise cluster.nodes in {ctx.config_path} and join "
        f"as many nodes{other}"
    )


def is_worker(ctx: Context) -> bool:
    return ctx.config.cluster is not None and not ctx.config.cluster.is_head


def cluster_section_text(cluster: ClusterSection) -> str:
    """A worker's `cluster:` section, as `up --join` appends it to stack.yaml."""
    return (
        '\n# Joined with `stackctl up --join` (README, "A cluster")\n'
        "cluster:\n"
        "  role: worker\n"
        f"  head: {cluster.head}\n"
        f"  port: {cluster.port}\n"
    )


def venv_pins(ctx: Context, spec: VenvSpec) -> VenvSpec:
    """vLLM's venv in a cluster: with Ray in it; on a worker, the head's versions."""
    if ctx.config.cluster is None:
        return spec
    # a worker keeps the versions it joined with (`up --upgrade` included) until it joins again
    pins = ctx.options.pins or (read_head_versions(ctx.paths.data_dir) if is_worker(ctx) else {})
    ray = f"{RAY_PACKAGE}=={pins['ray']}" if "ray" in pins else RAY_PACKAGE
    package = f"vllm=={pins['vllm']}" if "vllm" in pins else spec.package
    changes: dict = {"package": package, "extra_packages": (ray,), "extra_scripts": ("ray",)}
    return python_pinned(ctx, dataclasses.replace(spec, **changes))


def python_pinned(ctx: Context, spec: VenvSpec) -> VenvSpec:
    """On a worker: the head's Python for the venv, and its versions checked (Ray refuses a
    node whose Ray or Python differs from the head's)."""
    pins = ctx.options.pins
    python = pins.get("python")
    if not python:
        return spec
    found = ctx.facts.venv_python
    fits = found and Path(found).name == f"python{python}"
    wanted = {k: v for k, v in pins.items() if k in ("vllm", "ray", "python")}
    return dataclasses.replace(
        spec,
        python=found if fits else None,
        managed_version=python,
        versions_match=lambda venv: all(
            venv_versions(venv).get(name) == version for name, version in wanted.items()
        ),
    )


def token_check_step(ctx: Context) -> Step:
    """Ask the head's Ray, with the token, before anything of the join is written."""
    cluster = ctx.config.cluster
    assert cluster is not None
    head = join_address(cluster.head, cluster.port)
    ray = stack_ray_venv(ctx.stack) / "bin/ray"
    argv = [str(ray), "status", "--address", head]

    def apply(progress: Progress) -> None:
        unreachable = head_reachable(cluster)
        if unreachable:
            raise StackctlError(
                f"cannot reach the head's Ray at {head} ({unreachable}): is `stackctl status` "
                f"healthy on the head, and is TCP port {cluster.port} open to this machine in "
                "its firewall?"
            )
        env = {"RAY_AUTH_MODE": "token", RAY_AUTH_TOKEN: ctx.options.token or ""}
        try:
            progress.run(argv, env=env)
        except CommandFailed as exc:
            if WRONG_TOKEN.search(exc.stderr):
                raise StackctlError(
                    f"the head at {head} refuses this token: copy the command `stackctl "
                    "cluster join-command` prints on the head, whole, and run it here"
                ) from None
            last = exc.stderr.strip().splitlines()[-1:] or [""]
            raise StackctlError(
                f"cannot reach the head's Ray at {head} ({last[0].strip()}): is `stackctl "
                f"status` healthy on the head, and is TCP port {cluster.port} open to this "
                "machine in its firewall?"
            ) from None

        if ctx.options.pins:  # for doctor: the versions this node must keep matching
            ctx.paths.data_dir.mkdir(parents=True, exist_ok=True)
            record_head_versions(ctx.paths.data_dir, ctx.options.pins)

    return Step(
        description=f"Ask the head's Ray at {head} whether it takes the token",
        check=lambda: False,
        apply=apply,
        commands=[f"RAY_AUTH_MODE=token RAY_AUTH_TOKEN=*** {shlex.join(argv)}"],
    )


def join_config_step(ctx: Context) -> Step:
    """Add the worker's cluster section to an existing stack.yaml (kept as it is)."""
    path = ctx.config_path
    cluster = ctx.config.cluster
    assert cluster is not None

    def recorded() -> bool:
        try:
            return load(path).cluster is not None
        except StackctlError:
            return False

    def apply(progress: Progress) -> None:
        text = path.read_text(encoding="utf-8")
        atomic_write(path, text.rstrip("\n") + "\n" + cluster_section_text(cluster))
        progress.note(f"added cluster: (a worker of {cluster.head}:{cluster.port}) to {path}")

    return Step(
        description=f"Record in {path} that this machine is a worker of the cluster",
        check=recorded,
        apply=apply,
        files=[f"{path} (0644)"],
    )


def waiting_for_nodes(ctx: Context) -> bool:
    """The head's vLLM (or, with Ollama, its Ray Serve application) waits for nodes that have
    not joined yet (so `up` does not wait for it): a fresh head, before its workers ran the
    join command."""
    cluster = ctx.config.cluster
    if cluster is None or not cluster.is_head:
        return False
    return not read_nodes(cluster, ctx.stack.services_environment).complete


def node_waiter(backend: Backend) -> ServiceName:
    """The head's service that starts once every node has joined: vLLM, or with Ollama the
    Ray Serve application in front of every node's Ollama."""
    return "vllm" if backend == "vllm" else "ray-serve"
