"""Which stack is this? One resolution, shared by every command.

`resolve_stack(config, config_path, facts=…, overrides=…)` answers the questions each
command used to answer for itself: the platform, the scope, the backend (`auto` resolved by
the one rule in `stackctl.backend`), the locations, the services with their ports and URLs,
the connections the proxy serves, and the secrets. The result, a `Stack`, is immutable:
`up`, `doctor`, `status`, `units`, `proxy serve` and `down` take one and read from it.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stackctl import keystore, secrets
from stackctl.backend import chosen_backend
from stackctl.config.model import SECRET_MASK, Config, Connection, default_connections
from stackctl.errors import StackctlError
from stackctl.paths import Paths, current_platform, default_scope, paths_for
from stackctl.probe_nvidia import read_gpus
from stackctl.registry import Service, stack_services
from stackctl.services.managers import manager_for
from stackctl.types import Backend, Platform, Scope

__all__ = [
    "Overrides",
    "Service",
    "Stack",
    "WithStack",
    "effective_config",
    "resolve_backend",
    "resolve_scope",
    "resolve_stack",
    "stack_services",
]

if TYPE_CHECKING:
    from stackctl.probe import HostFacts
    from stackctl.services.base import ServiceManager


def resolve_backend(config: Config, platform: Platform, facts: HostFacts | None = None) -> Backend:
    """The backend this config means here: `auto` decided by the GPUs the probe's `facts`
    found, or (without facts) by asking nvidia-smi once."""
    if config.backend != "auto":
        return config.backend
    if facts is not None:
        return chosen_backend("auto", platform, facts.gpus)

    return chosen_backend("auto", platform, read_gpus() if platform == "linux" else [])


def resolve_scope(config: Config) -> Scope:
    """The configured scope, else system for root and user otherwise."""
    return config.scope or default_scope()


@dataclass(frozen=True)
class Overrides:
    """What a command's flags say over the config: `up --backend/--scope`, `proxy serve
    --backend`, `units render --platform/--scope`."""

    platform: Platform | None = None
    scope: Scope | None = None
    backend: Backend | None = None


@dataclass(frozen=True)
class Stack:
    """The stack one config describes on one host, resolved (see the module docstring)."""

    config: Config
    config_path: Path
    platform: Platform
    scope: Scope
    backend: Backend
    paths: Paths
    services: tuple[Service, ...]
    connections: tuple[Connection, ...]
    environ: dict[str, str] = field(default_factory=lambda: dict(os.environ), repr=False)

    def service(self, name: str) -> Service | None:
        """One service of this stack, or None when the stack does not run it."""
        return next((s for s in self.services if s.name == name), None)

    @property
    def service_names(self) -> list[str]:
        return [s.name for s in self.services]

    @functools.cached_property
    def manager(self) -> ServiceManager:
        """The service manager for this platform and scope (launchd or systemd)."""
        return manager_for(self.paths)

    # --- secrets ----------------------------------------------------------------------------

    @property
    def services_environment(self) -> dict[str, str]:
        """What the services see: this scope's secrets file (skipped when it cannot be read,
        e.g. the system stack's file to someone who is not root), then the environment."""
        return secrets.services_environment(self.paths.secrets_file, self.environ)

    @property
    def proxy_api_keys(self) -> list[str]:
        """The proxy's unnamed keys: `proxy.api_keys` plus those in its keys file (read each
        time: `up` writes that file part way through). Named keys are kept as digests only."""
        return secrets.proxy_api_keys(self.config.proxy)

    @property
    def first_proxy_key(self) -> str | None:
        """The key stackctl itself (and Open WebUI) uses for the proxy: the first unnamed key,
        else Open WebUI's named key; None without keys."""
        keys = self.proxy_api_keys
        return keys[0] if keys else self.openwebui_named_key

    @property
    def openwebui_named_key(self) -> str | None:
        """Open WebUI's key for the proxy (OPENAI_API_KEYS in secrets.env) when the key store
        holds its digest: the named key `up` makes (keystore.OPENWEBUI_KEY)."""
        keys_file = self.config.proxy.api_keys_file
        if not keys_file:
            return None
        try:
            value = secrets.read_env_file(self.paths.secrets_file).get(secrets.OPENWEBUI_PROXY_KEY)
            stored = keystore.read_store(keystore.store_path(keys_file))
        except (StackctlError, OSError):  # e.g. the system stack's files, to someone not root
            return None
        if not value:
            return None
        presented = keystore.digest(value)
        return value if any(r.digest == presented for r in stored) else None

    @property
    def service_api_keys(self) -> dict[str, str]:
        """The key stackctl sends each of its own services when it checks them: the proxy's
        first key, and vLLM's VLLM_API_KEY (the environment's, else the secrets file's)."""
        keys = {}
        proxy_key = self.first_proxy_key
        if proxy_key:
            keys["proxy"] = proxy_key
        vllm_key = self.services_environment.get(secrets.VLLM_API_KEY)
        if vllm_key:
            keys["vllm"] = vllm_key
        return keys


class WithStack:
    """For what holds a resolved `stack` (up's and doctor's contexts): its parts read as the
    holder's own attributes, `ctx.config`, `ctx.paths`, … (one place, not one per holder)."""

    stack: Stack

    @property
    def config(self) -> Config:
        return self.stack.config

    @property
    def config_path(self) -> Path:
        return self.stack.config_path

    @property
    def platform(self) -> Platform:
        return self.stack.platform

    @property
    def scope(self) -> Scope:
        return self.stack.scope

    @property
    def backend(self) -> Backend:
        return self.stack.backend

    @property
    def paths(self) -> Paths:
        return self.stack.paths

    @property
    def services(self) -> tuple[Service, ...]:
        return self.stack.services

    @property
    def manager(self) -> ServiceManager:
        return self.stack.manager


def resolve_stack(
    config: Config,
    config_path: Path | str | None = None,
    *,
    facts: HostFacts | None = None,
    overrides: Overrides | None = None,
) -> Stack:
    """The stack this config describes on this host (the module docstring says what that is).

    `facts`: the host probe's, when the caller has them (their GPUs decide `backend: auto`
    without asking nvidia-smi again). `config_path`: the file the services are started with
    (default: where the config came from, else this scope's stack.yaml)."""
    overrides = overrides or Overrides()
    platform = overrides.platform or (facts.platform if facts else current_platform())
    scope = overrides.scope or resolve_scope(config)
    backend = overrides.backend or resolve_backend(config, platform, facts)
    paths = paths_for(platform, scope)
    path = Path(config_path) if config_path else (config.source or paths.config_file)
    return Stack(
        config=config,
        config_path=path,
        platform=platform,
        scope=scope,
        backend=backend,
        paths=paths,
        services=tuple(stack_services(config, backend)),
        connections=tuple(default_connections(config, backend)),
    )


def effective_config(stack: Stack) -> dict[str, Any]:
    """The config as `config show` prints it: defaults merged, `auto` resolved for this host,
    the models `up` would pull, the proxy's connections, secrets masked."""
    from stackctl.catalog import default_models

    config = stack.config
    data = config.to_dict(mask_secrets=True)
    data["backend"] = stack.backend
    data["scope"] = stack.scope
    data["models"] = (
        config.models if config.models is not None else default_models(config, stack.backend)
    )
    data["proxy"]["connections"] = [
        {**vars(c), "api_key": SECRET_MASK if c.api_key else None} for c in stack.connections
    ]
    return data
