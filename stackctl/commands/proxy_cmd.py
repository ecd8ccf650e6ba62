"""`stackctl proxy`: the bundled OpenAI-compatible proxy in front of Ollama or vLLM."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from stackctl.cli import AppContext, pass_app

if TYPE_CHECKING:
    from stackctl.types import Backend


@click.group(name="proxy")
def proxy() -> None:
    """The OpenAI-compatible proxy: the one door to your models.

    \b
    Example:
      stackctl proxy serve              # as configured (proxy.port, 127.0.0.1)
    """


@proxy.command(name="serve")
@click.option(
    "--host",
    help="Address to listen on (default: 127.0.0.1; with expose: true the HTTPS front "
    "serves it on the network).",
)
@click.option("--port", type=click.IntRange(1, 65535), help="Port (default: proxy.port, 4000).")
@click.option(
    "--backend",
    type=click.Choice(["ollama", "vllm"]),
    help="The backend the default connection points at (default: the config's; the proxy "
    "service is given the one `stackctl up` installed, so `backend: auto` is not guessed again).",
)
@click.option(
    "--usage-file",
    type=click.Path(dir_okay=False, readable=False, path_type=Path),  # a bad one is logged
    help="Where to write when each key was last used and its tokens today (default: "
    "proxy-key-usage.json in stackctl's data dir; the service is given its stack's).",
)
@pass_app
def proxy_serve(
    app: AppContext,
    host: str | None,
    port: int | None,
    backend: Backend | None,
    usage_file: Path | None,
) -> None:
    """Serve the OpenAI API on /v1 in front of the configured backends.

    This is what the stack's proxy service runs. Point any OpenAI client at
    http://HOST:PORT/v1 with one of the proxy's API keys.

    \b
    Example:
      stackctl --config ~/.config/stackctl/stack.yaml proxy serve --port 4000
    """
    from stackctl import keystore
    from stackctl.proxy.keyring import Keyring
    from stackctl.proxy.server import is_loopback, serve
    from stackctl.secrets import proxy_api_keys
    from stackctl.stack import Overrides

    stack = app.stack(Overrides(backend=backend))
    config = stack.config
    proxy_settings = config.proxy
    host = host or config.bind_host
    exposed = config.expose or not is_loopback(host)  # behind the front it is exposed too
    proxy_api_keys(proxy_settings, config.source, exposed=exposed)  # may refuse
    usage_file = usage_file or keystore.usage_path(stack.paths.data_dir)
    keyring = Keyring.for_config(proxy_settings, usage_file)
    serve(proxy_settings, stack.connections, keyring, host=host, port=port or proxy_settings.port)
