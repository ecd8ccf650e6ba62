"""The config's shape: typed sections with the built-in defaults."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from stackctl.secret_names import VLLM_API_KEY
from stackctl.types import Backend, BackendSetting, Scope

SECRET_MASK = "********"
# One rule for the proxy's API keys, inline (proxy.api_keys) or in proxy.api_keys_file
PROXY_KEY_PATTERN = r"^\S{8,}$"
PROXY_KEY_RULE = "a key of at least 8 characters, no spaces"


@dataclass
class Connection:
    """One upstream the proxy routes to: an Ollama server or an OpenAI-compatible one."""

    name: str
    mode: Literal["ollama", "openai_compatible"]
    base_url: str  # ollama: the server root; openai_compatible: the URL ending in /v1
    api_key: str | None = None
    api_key_env: str | None = None
    params: dict[str, Any] = field(default_factory=dict)  # injected when a request omits them

    def key(self, environ: Mapping[str, str]) -> str | None:
        """The API key to send: `api_key`, else the `api_key_env` variable's value, else None."""
        if self.api_key:
            return self.api_key
        return (environ.get(self.api_key_env) or None) if self.api_key_env else None


@dataclass
class OllamaSection:
    port: int = 11434
    env: dict[str, str] = field(default_factory=lambda: {"OLLAMA_KEEP_ALIVE": "30m"})

    @property
    def url(self) -> str:
        """Where the stack's Ollama answers (always loopback: the proxy is the only door)."""
        return f"http://127.0.0.1:{self.port}"


@dataclass
class VllmSection:
    port: int = 8000
    model: str = "google/gemma-3-27b-it"
    served_model_name: str = "gemma3:27b"
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class OpenWebUISection:
    enabled: bool = True
    port: int = 3000
    env: dict[str, str] = field(default_factory=dict)
    admin_email: str = ""  # set: a first admin is created headless, password in secrets.env


@dataclass
class ProxySection:
    enabled: bool = True
    port: int = 4000
    api_keys: list[str] = field(default_factory=list)
    api_keys_file: str = ""
    cors_origins: list[str] = field(default_factory=list)
    aliases: dict[str, str] = field(default_factory=dict)
    model_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    connections: list[Connection] = field(default_factory=list)
    max_body_mb: int = 32
    max_answer_mb: int = 64  # a backend answer (or one streamed line) larger than this is a 502
    max_connections: int = 1000  # past this many open connections, requests get a 503
    header_timeout: float = 10.0  # seconds to send a request head; the longest pause in a body
    connect_timeout: float = 5.0
    read_timeout: float = 600.0  # longest silence allowed from a backend mid-answer
    models_cache_seconds: float = 5.0


@dataclass
class TlsSection:
    """The HTTPS front (Caddy) that serves the proxy and Open WebUI when `expose` is true.

    Neither `domain` nor `cert`: certificates from a local CA of Caddy's own (`tls internal`);
    `domain`: a public certificate for it over ACME; `cert` and `key`: those PEM files."""

    domain: str = ""
    cert: str = ""
    key: str = ""
    port: int = 4443  # the proxy over HTTPS, on the network
    openwebui_port: int = 3443  # Open WebUI over HTTPS, on the network

    @property
    def mode(self) -> Literal["internal", "acme", "files"]:
        if self.cert:
            return "files"
        return "acme" if self.domain else "internal"

    def served_name(self) -> str | None:
        """The name to ask the front for (SNI): the domain, else the host name its local CA
        certifies (stackctl.front.machine_names); None for certificate files alone."""
        if self.domain:
            return self.domain
        if self.mode == "files":
            return None
        import socket

        return socket.gethostname().strip().lower() or "localhost"


@dataclass
class ClusterSection:
    """This machine's place in a Ray cluster. No `cluster:` section: one machine, no Ray."""

    role: Literal["head", "worker"]
    head: str = ""  # workers: the head's address
    address: str = ""  # this node's address the others reach; "": found from the route
    port: int = 6379  # Ray's GCS port on the head
    nodes: int = 2  # head: nodes (itself included) in the cluster before the model starts
    node_ports: int = 6380  # the first of this node's block of Ray ports (stackctl.cluster)
    # the head with Ollama: the Ray Serve application's HTTP port (127.0.0.1 only)
    serve_port: int = 11500

    @property
    def is_head(self) -> bool:
        return self.role == "head"

    @property
    def agent_port(self) -> int:
        """Where this node's Ray answers its health check (the dashboard agent's HTTP port)."""
        from stackctl.cluster import ray_ports

        return ray_ports(self.node_ports).dashboard_agent


@dataclass
class Config:
    """The whole stack.yaml, defaults filled in. `source` is the file it came from."""

    backend: BackendSetting = "auto"
    scope: Scope | None = None  # None: system when root, else user
    models: list[str] | None = None  # None: the host probe's recommendation
    expose: bool = False
    ollama: OllamaSection = field(default_factory=OllamaSection)
    vllm: VllmSection = field(default_factory=VllmSection)
    openwebui: OpenWebUISection = field(default_factory=OpenWebUISection)
    proxy: ProxySection = field(default_factory=ProxySection)
    tls: TlsSection = field(default_factory=TlsSection)
    cluster: ClusterSection | None = None  # None: one machine
    source: Path | None = None
    lines: dict[str, int] = field(default_factory=dict, repr=False, compare=False)

    @property
    def bind_host(self) -> str:
        """Where the proxy and Open WebUI listen: loopback, always. With `expose`, only the
        HTTPS front (Caddy, see `tls`) listens on the network; the backends never do."""
        return "127.0.0.1"

    def backend_port(self, backend: Backend) -> int:
        return self.ollama.port if backend == "ollama" else self.vllm.port

    def to_dict(self, *, mask_secrets: bool = True) -> dict[str, Any]:
        """The config as plain data, as `config show` prints it."""
        data = asdict(self)
        data.pop("source")
        data.pop("lines")
        if data["cluster"] is None:
            data.pop("cluster")  # one machine: nothing to show
        if mask_secrets:
            data["proxy"]["api_keys"] = [SECRET_MASK for _ in data["proxy"]["api_keys"]]
            for conn in data["proxy"]["connections"]:
                if conn.get("api_key"):
                    conn["api_key"] = SECRET_MASK
        return data


def default_connections(config: Config, backend: Backend) -> list[Connection]:
    """The proxy's connections: the configured ones, else the one the backend implies."""
    if config.proxy.connections:
        return config.proxy.connections
    if backend == "vllm":
        return [
            Connection(
                name="vllm",
                mode="openai_compatible",
                base_url=f"http://127.0.0.1:{config.vllm.port}/v1",
                api_key_env=VLLM_API_KEY,
            )
        ]
    cluster = config.cluster
    if cluster is not None and cluster.is_head:
        # a cluster's head: the Ray Serve application in front of every node's Ollama
        serve = f"http://127.0.0.1:{cluster.serve_port}"
        return [Connection(name="ollama", mode="ollama", base_url=serve)]
    return [Connection(name="ollama", mode="ollama", base_url=config.ollama.url)]
