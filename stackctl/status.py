"""`stackctl status` and `stackctl models`: the truth about the stack, quickly.

The service manager's view (state, pid, uptime, restarts) and each service's own answer
(health, latency, version, models) are gathered concurrently with short timeouts, so a
service that hangs costs one timeout, not a stuck command.
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from stackctl.cluster_state import ClusterView, read_nodes
from stackctl.errors import ExitCode
from stackctl.fsutil import tree_size
from stackctl.health import check
from stackctl.localhttp import Unreachable, get_json
from stackctl.paths import hf_repo_cache
from stackctl.registry import label

if TYPE_CHECKING:
    from stackctl.config.model import Connection
    from stackctl.health import Health
    from stackctl.services.base import ServiceState
    from stackctl.stack import Service, Stack

CHECK_TIMEOUT = 2.0  # seconds per health check; they run at once
NOT_INSTALLED = "the stack is not installed: run `stackctl up`"


@dataclass
class ServiceRow:
    """One service of the stack as `status` shows it."""

    service: str
    unit: str
    state: str  # active | activating | inactive | failed | not-installed
    pid: int | None
    uptime_seconds: float | None
    restarts: int | None
    port: int
    url: str
    healthy: bool
    health: str  # "ok" or what went wrong
    latency_ms: float | None
    version: str | None
    models: list[str] = field(default_factory=list)
    sub_state: str = ""  # the manager's finer state: running, start, auto-restart, ...
    certificate_expires: str | None = None  # the HTTPS front: when its certificate expires


@dataclass
class StackStatus:
    """Every row, and what they add up to: exit 0 healthy, 3 degraded, 1 not installed."""

    rows: list[ServiceRow]
    installed: bool
    message: str = ""
    warnings: list[str] = field(default_factory=list)  # e.g. a model running on the CPU
    cluster: ClusterView | None = None  # the head of a cluster: its nodes

    @property
    def healthy(self) -> bool:
        nodes_ok = self.cluster is None or not self.cluster.problems()
        return (
            self.installed
            and nodes_ok
            and all(r.healthy and r.state == "active" for r in self.rows)
        )

    @property
    def exit_code(self) -> int:
        if not self.installed:
            return ExitCode.ERROR
        return ExitCode.OK if self.healthy else ExitCode.DEGRADED

    @property
    def hints(self) -> list[str]:
        """What the table prints below its rows: not installed, or what to do per service."""
        if self.message:
            return [self.message]
        return problems(self) + (self.cluster.problems() if self.cluster else [])

    def to_dict(self) -> dict:
        return {
            "healthy": self.healthy,
            "installed": self.installed,
            "exit_code": int(self.exit_code),
            "message": "\n".join(self.hints),
            "warnings": self.warnings,
            "services": [asdict(row) for row in self.rows],
            **({"cluster": self.cluster.to_dict()} if self.cluster else {}),
        }


def _uptime(state: ServiceState) -> float | None:
    if state.since is None or state.state != "active":
        return None
    since = state.since if state.since.tzinfo else state.since.astimezone()
    return max(0.0, (datetime.now(timezone.utc) - since).total_seconds())


def _row(service: Service, state: ServiceState | None, health: Health) -> ServiceRow:
    return ServiceRow(
        service=service.name,
        unit=state.unit if state else "",
        state=state.state if state else "unknown",
        pid=state.pid if state else None,
        uptime_seconds=_uptime(state) if state else None,
        restarts=state.restarts if state else None,
        sub_state=state.sub_state if state else "",
        port=service.port,
        url=service.url,
        healthy=health.ok,
        health=health.detail,
        latency_ms=round(health.latency_ms, 1) if health.latency_ms is not None else None,
        version=health.version,
        models=health.models,
        certificate_expires=health.certificate_expires,
    )


def collect(stack: Stack, *, timeout: float = CHECK_TIMEOUT) -> StackStatus:
    """Ask the service manager and every service at the same time."""
    names: list[str] = list(stack.service_names)
    keys = stack.service_api_keys
    manager = stack.manager
    with ThreadPoolExecutor(max_workers=len(names) + 2) as pool:
        installed = pool.submit(manager.installed_services)
        states = pool.submit(manager.status, names)
        checks = [
            pool.submit(check, s, timeout=timeout, api_key=keys.get(s.name)) for s in stack.services
        ]
        offload = pool.submit(gpu_warnings, stack, timeout)
        cluster = stack.config.cluster
        nodes = (
            pool.submit(read_nodes, cluster, stack.services_environment, timeout)
            if cluster is not None and cluster.is_head
            else None
        )
        by_name = {state.service: state for state in states.result()}
        rows = [
            _row(s, by_name.get(s.name), c.result())
            for s, c in zip(stack.services, checks, strict=True)
        ]
        is_installed = bool(installed.result())
    message = "" if is_installed else NOT_INSTALLED
    warnings = offload.result() if is_installed else []
    view = nodes.result() if nodes is not None and is_installed else None
    return StackStatus(rows, is_installed, message, warnings, view)


def gpu_warnings(stack: Stack, timeout: float = CHECK_TIMEOUT) -> list[str]:
    """On an Apple Silicon Mac, a warning per model Ollama runs (partly) on the CPU."""
    from stackctl.gpu_offload import loaded_models, offload_warnings
    from stackctl.probe import read_apple_silicon

    if stack.backend != "ollama" or not read_apple_silicon(stack.platform):
        return []
    models = loaded_models(stack.config.ollama.url, timeout=timeout)
    return offload_warnings(models or [], stack.scope)


# Sub-states in which the manager restarts a crashed service by itself: systemd's
# `auto-restart` (waiting RestartSec=), launchd's `spawn scheduled` (waiting ThrottleInterval).
RESTARTING = ("auto-restart", "spawn scheduled")


def _passing(row: ServiceRow) -> str | None:
    """What a service in a passing state is doing, and what to do meanwhile (None: the
    state does not pass by itself)."""
    from stackctl.health import label

    name = label(row.service)
    if row.sub_state in RESTARTING:
        return (
            f"{name} is restarting after a crash: {row.restarts or 0} restarts since it was last "
            f"started; `stackctl logs {row.service}` shows why it crashes"
        )
    if row.state == "activating":
        return (
            f"{name} is starting: `stackctl status` again in a moment; "
            f"`stackctl logs {row.service} -f` follows it"
        )
    if row.state == "deactivating":
        return f"{name} is stopping: `stackctl status` again in a moment"
    return None


def problems(status: StackStatus) -> list[str]:
    """One line per unhealthy service, with the command that tells why."""
    lines = []
    waiting = status.cluster is not None and not status.cluster.complete
    for row in status.rows:
        if row.state == "not-installed" or not status.installed:
            continue
        if waiting and row.service in ("vllm", "ray-serve") and row.state == "active":
            continue  # it waits for the nodes: the cluster's own line says so
        passing = _passing(row)
        if passing:
            lines.append(passing)
        elif row.state != "active":
            lines.append(
                f"{label(row.service)} is {row.state}: `stackctl logs {row.service}` shows why; "
                f"`stackctl restart {row.service}` starts it again"
            )
        elif not row.healthy:
            lines.append(
                f"{label(row.service)} runs but does not answer ({row.health} at {row.url}): "
                f"`stackctl logs {row.service}`"
            )
    return lines


# --- models -------------------------------------------------------------------------------


@dataclass
class ModelRow:
    """A model some backend serves: its name, size on disk and where it lives."""

    name: str
    size_bytes: int | None
    where: str


@dataclass
class ModelList:
    rows: list[ModelRow]
    unreachable: list[str]  # "ollama at http://127.0.0.1:11434: connection refused"
    installed: bool = True  # False: no stackctl service is installed (asked when one is down)

    @property
    def exit_code(self) -> int:
        """As `status`: 1 when the stack is not installed, 3 when a backend is down."""
        if not self.unreachable:
            return ExitCode.OK
        return ExitCode.DEGRADED if self.installed else ExitCode.ERROR


def _tree_size(path: Path) -> int | None:
    """Bytes under `path`, or None when it is not there (the model is not downloaded)."""
    return tree_size(path) if path.exists() else None


def _list_connection(
    connection: Connection, stack: Stack, environ: Mapping[str, str]
) -> tuple[list[ModelRow], str | None]:
    where = f"{connection.name} ({connection.base_url})"
    key = connection.key(environ)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    ollama = connection.mode == "ollama"
    url = f"{connection.base_url}/api/tags" if ollama else f"{connection.base_url}/models"
    try:
        status, body = get_json(url, headers={} if ollama else headers, timeout=CHECK_TIMEOUT)
        if status != 200:
            return [], f"{where}: not answering (HTTP {status})"
        if ollama:
            models = body.get("models", [])
            return [ModelRow(m.get("name", ""), m.get("size"), where) for m in models], None
        ids = [m.get("id", "") for m in body.get("data", [])]
    except Unreachable as exc:
        return [], f"{where}: not answering ({exc.reason})"
    except (AttributeError, TypeError):
        return [], f"{where}: answered in an unexpected shape"
    rows = []
    for model_id in ids:
        size = None
        if model_id == stack.config.vllm.served_model_name and connection.name == "vllm":
            size = _hf_cache_size(stack)
        rows.append(ModelRow(model_id, size, where))
    return rows, None


def _hf_cache_size(stack: Stack) -> int | None:
    from stackctl.probe import models_dir

    config = stack.config
    return _tree_size(hf_repo_cache(models_dir(config, stack.paths, "vllm"), config.vllm.model))


def list_models(stack: Stack) -> ModelList:
    """Every model every backend connection serves, asked concurrently."""
    connections = stack.connections
    environ = stack.services_environment  # the keys of api_key_env connections
    with ThreadPoolExecutor(max_workers=max(1, len(connections))) as pool:
        results = list(pool.map(lambda c: _list_connection(c, stack, environ), connections))
    rows = [row for found, _ in results for row in found]
    unreachable = [error for _, error in results if error]
    installed = True
    if unreachable:  # a backend down: is the stack there at all? (status's exit 1 vs 3)
        installed = bool(stack.manager.installed_services())
    return ModelList(rows, unreachable, installed)
