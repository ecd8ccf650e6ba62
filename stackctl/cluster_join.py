"""Joining a cluster: the command the head prints, the versions a worker must match, and
the head's wait for its nodes before vLLM starts."""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

from stackctl.cluster import RAY_AUTH_TOKEN, join_command, node_address, ray_venv
from stackctl.cluster_state import ClusterView, read_nodes
from stackctl.config.model import ClusterSection
from stackctl.errors import StackctlError
from stackctl.fsutil import atomic_write
from stackctl.secrets import read_env_file
from stackctl.stack import Stack

# What a worker pins to match the head: Ray refuses a node whose Ray or Python version
# differs from the head's (ray/_private/utils.py check_version_info), and vLLM's workers
# must run the head's vLLM. The names are `up`'s flags: --vllm-version, --ray-version, ...
PINNED = ("vllm", "ray", "python")
WAIT_REPORT_EVERY = 30.0  # seconds between "still waiting" lines in the vLLM unit's log
WAIT_POLL = 2.0


def head_section(stack: Stack) -> ClusterSection:
    """This machine's cluster section, when it is the head; else what to do."""
    cluster = stack.config.cluster
    if cluster is None:
        raise StackctlError(
            f"this machine is in no cluster: {stack.config_path} has no cluster: section "
            '(README, "A cluster", shows how to make it a head)'
        )
    if not cluster.is_head:
        raise StackctlError(
            f"this machine is a worker of {cluster.head}:{cluster.port}: run this on the head"
        )
    return cluster


def venv_versions(venv: Path) -> dict[str, str]:
    """The Python (major.minor), vLLM and Ray versions a venv holds, read from its files
    (pyvenv.cfg; each package's .dist-info in site-packages) without starting its Python."""
    found: dict[str, str] = {}
    try:
        cfg = (venv / "pyvenv.cfg").read_text(encoding="utf-8")
    except OSError:
        return found
    match = re.search(r"^version(?:_info)?\s*=\s*(\d+\.\d+)", cfg, re.M)
    if match:
        found["python"] = match.group(1)
    site = [str(p) for p in venv.glob("lib/python3*/site-packages")]
    for dist in importlib.metadata.distributions(path=site):
        name = (dist.metadata["Name"] or "").lower()
        if name in ("vllm", "ray"):
            found[name] = dist.version
    return {name: found[name] for name in PINNED if name in found}


HEAD_VERSIONS_FILE = "cluster-head.json"  # in the data dir: what `up --join` matched


def record_head_versions(data_dir: Path, pins: dict[str, str]) -> None:
    """Keep the head's versions a worker joined with, for `doctor` to compare later."""
    atomic_write(data_dir / HEAD_VERSIONS_FILE, json.dumps(pins, indent=2) + "\n")


def read_head_versions(data_dir: Path) -> dict[str, str]:
    try:
        data = json.loads((data_dir / HEAD_VERSIONS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {k: str(v) for k, v in data.items() if k in PINNED} if isinstance(data, dict) else {}


def stack_ray_venv(stack: Stack) -> Path:
    return ray_venv(stack.paths.venvs_dir, stack.paths.vllm_venv, stack.backend)


def join_command_for(stack: Stack) -> str:
    """`stackctl up --join HOST:PORT --token T --vllm-version V …` for this head (with
    Ollama, `--model M` for each of its models, which the worker pulls)."""
    cluster = head_section(stack)
    token = read_env_file(stack.paths.secrets_file).get(RAY_AUTH_TOKEN)
    versions = venv_versions(stack_ray_venv(stack))
    if not token or "ray" not in versions:
        raise StackctlError(
            "this head is not set up yet (no Ray token or no Ray installed): run `stackctl up` "
            "first"
        )
    host = node_address(cluster.address, "", cluster.port)
    models, gpus = None, None
    if stack.backend == "ollama":
        from stackctl.catalog import default_models

        models = stack.config.models or default_models(stack.config, "ollama")
    else:  # vLLM: tensor parallel = the GPUs of one node, so every node needs as many
        from stackctl.probe_nvidia import read_gpus

        gpus = len(read_gpus()) or None
    return join_command(host, cluster.port, token, versions, models, gpus)


def wait_then_exec(
    stack: Stack,
    command: list[str],
    *,
    read: Callable[[ClusterSection], ClusterView] | None = None,
    execv: Callable[[str, list[str]], object] = os.execv,
) -> None:
    """Wait until cluster.nodes nodes are alive, with equal GPU counts, then become
    `command` (the head's vLLM). Says what it waits for in the unit's log."""
    cluster = head_section(stack)
    environ = stack.services_environment
    read = read or (lambda section: read_nodes(section, environ))
    said, said_at = "", 0.0
    while True:
        view = read(cluster)
        problems = view.problems()
        if not problems:
            break
        message = "; ".join(problems)
        if message != said or time.monotonic() - said_at >= WAIT_REPORT_EVERY:
            print(f"stackctl: waiting before {Path(command[0]).name}: {message}", flush=True)
            said, said_at = message, time.monotonic()
        time.sleep(WAIT_POLL)
    print(
        f"stackctl: {len(view.alive)}/{cluster.nodes} nodes in the cluster; starting "
        f"{Path(command[0]).name}",
        flush=True,
    )
    sys.stdout.flush()
    execv(command[0], command)
