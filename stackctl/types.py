"""The few small types every module shares: what platform, scope, backend and service mean.

Literal types, so a value read from a config, a flag or an environment variable is checked
once where it enters and then carried as what it is, not as a bare `str`.
"""

from __future__ import annotations

from typing import Literal, get_args

Platform = Literal["macos", "linux"]
Scope = Literal["user", "system"]
Backend = Literal["ollama", "vllm"]
BackendSetting = Literal["auto", "ollama", "vllm"]  # what stack.yaml may say
ServiceName = Literal[
    # a Ray cluster node (issue 12): first, as the backends run on it
    "ray",
    "ollama",
    "vllm",
    # the head with Ollama: Ray Serve in front of every node's Ollama (issue 12)
    "ray-serve",
    "proxy",
    "openwebui",
    "front",
]

BACKENDS: tuple[Backend, ...] = get_args(Backend)
SERVICE_NAMES: tuple[ServiceName, ...] = get_args(ServiceName)
