"""Starting the proxy: refuse an open door, then serve with uvicorn (uvloop and httptools).

Binding anything but loopback without API keys is refused: the proxy is the only door to
the models, and the backends behind it have no authentication of their own.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from stackctl.errors import StackctlError

if TYPE_CHECKING:
    from stackctl.config.model import Connection, ProxySection
    from stackctl.proxy.keyring import Keyring
    from stackctl.proxy.upstream import Backend

log = logging.getLogger("stackctl.proxy")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class OpenDoorRefused(StackctlError):
    """The proxy was asked to listen on the network without API keys."""

    def __init__(self, host: str, port: int):
        super().__init__(
            f"refusing to serve the proxy on {host}:{port} without API keys: anyone who can "
            "reach this machine could use your models.\n"
            "Add a key: set proxy.api_keys_file in stack.yaml (e.g. `api_keys_file: "
            "~/.config/stackctl/proxy-keys`, a file of mode 0600 with one key a line; "
            "`stackctl up` writes one) or list keys in proxy.api_keys. "
            "Or listen on loopback only: `stackctl proxy serve --host 127.0.0.1`."
        )


def describe(backends: list[Backend], keys: int, host: str, port: int) -> str:
    """The startup line (never the keys themselves)."""
    door = f"{keys} API key{'s' if keys != 1 else ''}" if keys else "no API key (loopback only)"
    upstreams = ", ".join(f"{b.name} ({b.mode}) {b.base_url}" for b in backends)
    return f"stackctl proxy on http://{host}:{port} -> {upstreams}; {door}"


def serve(
    settings: ProxySection,
    connections: Sequence[Connection],
    keyring: Keyring,
    *,
    host: str,
    port: int,
) -> None:
    """Serve the proxy in front of `connections`, open to the keys of `keyring`, until
    SIGTERM/SIGINT."""
    from stackctl.proxy.upstream import Backend

    if not keyring.count and not is_loopback(host):
        raise OpenDoorRefused(host, port)
    backends = [Backend.from_connection(c) for c in connections]

    import uvicorn

    from stackctl.proxy.app import create_app

    app = create_app(settings, backends=backends, keyring=keyring)
    logging.getLogger("stackctl.proxy").setLevel(logging.INFO)
    print(describe(backends, keyring.count, host, port), flush=True)
    uvicorn.run(
        app,
        host=host,
        port=port,
        access_log=False,  # request lines would be noise at thousands a second; /metrics counts
        log_level="warning",
        server_header=False,
        proxy_headers=False,  # no X-Forwarded-For rewriting: clients are who they are
        timeout_graceful_shutdown=5,
        **uvicorn_options(settings),
    )


def uvicorn_options(settings: ProxySection) -> dict[str, Any]:
    """The event loop and HTTP protocol: uvloop when installed (it is not on Windows), and
    httptools (a dependency) with the proxy's limits (protocol.py)."""
    from stackctl.proxy.protocol import guarded_protocol

    options: dict[str, Any] = {
        "http": guarded_protocol(settings.header_timeout, settings.max_connections)
    }
    try:
        import uvloop  # noqa: F401  (uvicorn picks it up by name)

        options["loop"] = "uvloop"
    except ImportError:
        options["loop"] = "asyncio"
    return options
