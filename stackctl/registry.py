"""Every service stackctl can run, described once: the one table the rest of stackctl reads.

An entry says what a service is called (by people; its unit names follow from its name:
`stackctl-<name>.service`, `dev.stackctl.<name>`, see `services.names`), where its port
is configured, how to tell it is healthy and how long `up` waits for it, which secrets it
reads, whether `--upgrade` replaces its software, what it starts after, and which function
builds its unit (`spec`, imported only when units are rendered, so `--help` stays fast).
The order of `REGISTRY` is the start order: Ray (in a cluster) and the backends first,
Open WebUI last.

Adding a service is one entry here plus its unit templates (templates/systemd/ and
templates/launchd/); the README's development section walks through it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from stackctl.secret_names import (
    HF_TOKEN,
    OPENWEBUI_PROXY_KEY,
    RAY_AUTH_TOKEN,
    WEBUI_ADMIN_EMAIL,
    WEBUI_ADMIN_PASSWORD,
    WEBUI_SECRET_KEY,
)
from stackctl.types import Backend, Platform, ServiceName

if TYPE_CHECKING:
    from stackctl.config.model import Config

LOOPBACK = "127.0.0.1"
SYSTEMD_TARGET = "stackctl.target"  # groups the stack: `systemctl stop stackctl.target` stops all
LAUNCHD_PREFIX = "dev.stackctl."
BACKEND = "backend"  # in depends_on: whichever model server the stack runs


@dataclass(frozen=True)
class HealthCheck:
    """How to tell a service is healthy: `GET path` answers 200 (with `expect` as its JSON
    body, when set). Then, optionally, its model list (`models_path`, in Ollama's `/api/tags`
    shape or OpenAI's `/v1/models` shape; the same path reuses that answer) and its version
    (`version_path`, a JSON body with a "version" field; `stackctl` for the proxy, which is
    this very package)."""

    path: str
    expect: Mapping[str, Any] | None = None
    models_path: str | None = None
    models_shape: Literal["ollama", "openai"] = "openai"
    version_path: str | None = None
    version_is_stackctl: bool = False
    text_body: bool = False  # `path` answers 200 with plain text, not JSON (Ray's /api/healthz)


@dataclass(frozen=True)
class ServiceInfo:
    """One service of the stack (see the module docstring)."""

    name: ServiceName
    label: str  # as people say it: "Open WebUI", "the proxy"
    description: str  # the unit's Description=
    section: str  # the stack.yaml section with its `port` (and `enabled`, when optional)
    is_backend: bool  # a model server: the stack runs exactly one, always on loopback
    health: HealthCheck
    budget: float  # seconds `up` waits for it to become healthy
    why_slow: str  # said while waiting, when waiting long is normal
    secrets: tuple[str, ...]  # names in secrets.env it reads
    upgradable_on: tuple[Platform, ...]  # where `up --upgrade` replaces its software
    depends_on: tuple[str, ...]  # services (or BACKEND) it starts after, when in the stack
    spec: str  # "module:function" that builds its platform-neutral unit spec
    exposed_only: bool = False  # in the stack only with `expose: true` (then on the network)
    scheme: Literal["http", "https"] = "http"  # how stackctl speaks to it on loopback
    # the attribute of its section holding the port it answers on
    port_key: str = "port"
    # a cluster's workers run it too; the others run on the head only (the proxy stays the
    # only door for clients)
    on_workers: bool = False
    # runs only in a stack with this backend (None: with either)
    with_backend: Backend | None = None


REGISTRY: tuple[ServiceInfo, ...] = (
    # --- a Ray cluster node (issue 12) -------------------------------------------------------
    ServiceInfo(
        name="ray",
        label="Ray",
        description="Ray cluster node (stackctl)",
        section="cluster",  # present only in a cluster
        is_backend=False,
        # the node's dashboard agent: 200 once its raylet (and, on the head, the GCS) is up;
        # public under token auth (ray/dashboard/http_server_head.py, public_exact_paths)
        health=HealthCheck("/api/healthz", text_body=True),
        budget=120.0,
        why_slow="",
        secrets=(RAY_AUTH_TOKEN,),
        upgradable_on=("linux",),  # with vLLM, which it runs beside
        depends_on=(),
        spec="stackctl.services.render:ray_spec",
        port_key="agent_port",
        on_workers=True,
    ),
    # -----------------------------------------------------------------------------------------
    ServiceInfo(
        name="ollama",
        label="Ollama",
        description="Ollama model server (stackctl)",
        section="ollama",
        is_backend=True,
        health=HealthCheck(
            "/api/tags", models_path="/api/tags", models_shape="ollama", version_path="/api/version"
        ),
        budget=60.0,
        why_slow="",
        secrets=(),
        upgradable_on=("macos",),  # Homebrew's; on Linux the binary is not ours to upgrade
        depends_on=(),
        spec="stackctl.services.render:ollama_spec",
        on_workers=True,  # each node's Ollama serves its own replica
    ),
    ServiceInfo(
        name="vllm",
        label="vLLM",
        description="vLLM OpenAI-compatible model server (stackctl)",
        section="vllm",
        is_backend=True,
        # /health is an empty 200 once the engine runs; the model is listed a little later
        health=HealthCheck("/health", models_path="/v1/models", version_path="/version"),
        # it loads the weights and captures CUDA graphs before it answers: minutes for a
        # large model
        budget=1200.0,
        why_slow="loading the model takes minutes",
        secrets=(HF_TOKEN,),
        upgradable_on=("linux",),
        depends_on=("ray",),  # in a cluster: vLLM's workers run on Ray's nodes
        spec="stackctl.services.render:vllm_spec",
    ),
    # --- Ray Serve in front of a cluster's Ollamas (issue 12) -------------------------------
    ServiceInfo(
        name="ray-serve",
        label="Ray Serve",
        description="Ray Serve application in front of the cluster's Ollamas (stackctl)",
        section="cluster",  # present only in a cluster; on the head only (not on_workers)
        is_backend=False,
        # Ollama's API, answered by one of the nodes' Ollamas through a replica
        health=HealthCheck(
            "/api/tags", models_path="/api/tags", models_shape="ollama", version_path="/api/version"
        ),
        # it waits until every node has joined, then starts a replica on each
        budget=300.0,
        why_slow="Serve starts a replica on every node",
        secrets=(RAY_AUTH_TOKEN,),
        upgradable_on=(),  # its Ray is the ray service's
        depends_on=("ray", BACKEND),
        spec="stackctl.services.render:ray_serve_spec",
        port_key="serve_port",
        with_backend="ollama",
    ),
    # -----------------------------------------------------------------------------------------
    ServiceInfo(
        name="proxy",
        label="the proxy",
        description="stackctl OpenAI-compatible proxy",
        section="proxy",
        is_backend=False,
        health=HealthCheck("/v1/models", models_path="/v1/models", version_is_stackctl=True),
        budget=30.0,
        why_slow="",
        secrets=(),  # its connections' api_key_env names, added when rendered
        upgradable_on=(),  # it is stackctl itself
        depends_on=(BACKEND,),
        spec="stackctl.services.render:proxy_spec",
    ),
    ServiceInfo(
        name="openwebui",
        label="Open WebUI",
        description="Open WebUI chat interface (stackctl)",
        section="openwebui",
        is_backend=False,
        health=HealthCheck("/health", expect={"status": True}, version_path="/api/version"),
        # its first start downloads the sentence-transformers embedding model (~90 s seen)
        budget=600.0,
        why_slow="its first start downloads an embedding model",
        secrets=(WEBUI_SECRET_KEY, OPENWEBUI_PROXY_KEY, WEBUI_ADMIN_EMAIL, WEBUI_ADMIN_PASSWORD),
        upgradable_on=("macos", "linux"),
        depends_on=(BACKEND, "proxy"),
        spec="stackctl.services.render:openwebui_spec",
    ),
    # --- the HTTPS front (issue 15): Caddy, the only listener on the network when exposed ---
    ServiceInfo(
        name="front",
        label="the HTTPS front",
        description="Caddy HTTPS front for the proxy and Open WebUI (stackctl)",
        section="tls",
        is_backend=False,
        # the proxy's /health through Caddy (status only without a key): TLS and the route
        health=HealthCheck("/health"),
        budget=30.0,
        why_slow="",
        secrets=(),
        upgradable_on=("macos",),  # Homebrew's; on Linux apt's, upgraded with the system
        depends_on=("proxy", "openwebui"),
        spec="stackctl.services.render:front_spec",
        exposed_only=True,
        scheme="https",
    ),
)

_BY_NAME: dict[str, ServiceInfo] = {info.name: info for info in REGISTRY}
NAMES: tuple[ServiceName, ...] = tuple(info.name for info in REGISTRY)


def info(name: str) -> ServiceInfo:
    """The registry entry of a service; KeyError for a name stackctl does not know."""
    return _BY_NAME[name]


def label(name: str) -> str:
    """A service's name as people say it (unknown names as they are)."""
    entry = _BY_NAME.get(name)
    return entry.label if entry else name


def start_order(services: list[str]) -> list[str]:
    """Services sorted backend first, Open WebUI last (unknown names keep their place at the end)."""
    rank: dict[str, int] = {name: i for i, name in enumerate(NAMES)}
    return sorted(services, key=lambda name: rank.get(name, len(rank)))


@dataclass(frozen=True)
class Service:
    """One service of a stack: its name, the port it listens on and the host it binds."""

    name: ServiceName
    port: int
    host: str
    scheme: str = "http"
    server_name: str | None = None  # https: the name its certificate is asked for (SNI)

    @property
    def url(self) -> str:
        """Where stackctl itself reaches it: on loopback, whatever address it binds."""
        host = LOOPBACK if self.host == "0.0.0.0" else self.host
        return f"{self.scheme}://{host}:{self.port}"


def stack_services(config: Config, backend: Backend) -> list[Service]:
    """The services a config's stack runs with this backend, in start order: the backend,
    then the optional services the config enables, all on loopback, then (`expose`) the
    HTTPS front, the one service on the network. A cluster's worker runs only what runs on
    workers (`on_workers`)."""
    services = []
    worker = config.cluster is not None and not config.cluster.is_head
    for entry in REGISTRY:
        section = getattr(config, entry.section)
        if section is None or (worker and not entry.on_workers):
            continue  # an absent optional section (cluster: one machine)
        if entry.with_backend is not None and entry.with_backend != backend:
            continue
        port = getattr(section, entry.port_key)
        if entry.is_backend:
            if entry.name == backend:
                services.append(Service(entry.name, port, LOOPBACK))
        elif entry.exposed_only:
            if config.expose:
                name = config.tls.served_name()
                services.append(Service(entry.name, port, "0.0.0.0", entry.scheme, name))
        elif getattr(section, "enabled", True):
            services.append(Service(entry.name, port, config.bind_host))
    return services
