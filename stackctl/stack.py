"""Which services make up the stack, in dependency order, and where they listen."""

from __future__ import annotations

from dataclasses import dataclass

from stackctl.config import Config, resolve_backend

SERVICES = ("ollama", "vllm", "proxy", "openwebui")


@dataclass(frozen=True)
class Service:
    """One service of the stack: its name, the port it listens on and the host it binds."""

    name: str  # ollama | vllm | proxy | openwebui
    port: int
    host: str

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host == "0.0.0.0" else self.host
        return f"http://{host}:{self.port}"


def stack_services(config: Config, backend: str | None = None) -> list[Service]:
    """The services of this config's stack, backend first, Open WebUI last (start order)."""
    backend = backend or resolve_backend(config)
    services = [Service(backend, config.backend_port(backend), "127.0.0.1")]  # type: ignore[arg-type]
    if config.proxy.enabled:
        services.append(Service("proxy", config.proxy.port, config.bind_host))
    if config.openwebui.enabled:
        services.append(Service("openwebui", config.openwebui.port, config.bind_host))
    return services
