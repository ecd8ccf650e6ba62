"""What `up` prints at the end: where to point a browser and apps, and what to run next."""

from __future__ import annotations

import socket
from pathlib import Path

from stackctl.config.model import Config
from stackctl.paths import Paths
from stackctl.secrets import read_env_file
from stackctl.setup.context import Context
from stackctl.setup.openwebui_admin import login_lines


def _public_host() -> str:
    """The name others reach this machine by (when the stack is exposed)."""
    return socket.gethostname() or "this-machine"


def summary_lines(ctx: Context) -> list[str]:
    """The summary, one line each (tests assert it)."""
    config = ctx.config
    lines = ["", "Your stack is up."]
    if config.expose:
        host = config.tls.domain or _public_host()
        webui_url = f"https://{host}:{config.tls.openwebui_port}"
        proxy_url = f"https://{host}:{config.tls.port}/v1"
    else:
        webui_url = f"http://127.0.0.1:{config.openwebui.port}"
        proxy_url = f"http://127.0.0.1:{config.proxy.port}/v1"
    if config.openwebui.enabled:
        lines.append(f"  Open WebUI:       {webui_url}")
        lines += login_lines(config, ctx.paths, read_env_file(ctx.paths.secrets_file))
    if config.proxy.enabled:
        lines.append(f"  OpenAI base URL:  {proxy_url}")
        lines.append("  API key:          " + _key_line(ctx))
    else:
        backend_port = config.backend_port(ctx.backend)
        lines.append(f"  {ctx.backend}:  http://127.0.0.1:{backend_port}")
    if config.expose:
        lines += trust_lines(config, ctx.paths)
    lines.append("  Models:           " + ", ".join(ctx.models))
    if ctx.facts.metal:
        # a model Ollama already loaded that runs on the CPU (stackctl.gpu_offload)
        from stackctl.status import gpu_warnings

        lines += [f"  warning: {w}" for w in gpu_warnings(ctx.stack)]
    lines.append("Next: `stackctl status` (is it up? why not?), `stackctl logs SERVICE`")
    return lines


def trust_lines(config: Config, paths: Paths) -> list[str]:
    """Where the front's certificate comes from and, for Caddy's local CA, how a client
    trusts it. stackctl never adds the root to any trust store itself (nor runs `caddy
    trust`, which would change this machine's system store)."""
    tls = config.tls
    if tls.mode == "acme":
        return [f"  HTTPS:            a public certificate for {tls.domain} (ACME, by Caddy)"]
    if tls.mode == "files":
        return [f"  HTTPS:            your certificate {tls.cert}"]
    root = paths.caddy_root_cert
    return [
        f"  HTTPS:            Caddy's local CA; clients trust its root {root}:",
        "    curl --cacert root.crt; macOS: sudo security add-trusted-cert -d -r trustRoot "
        "-k /Library/Keychains/System.keychain root.crt;",
        "    Debian/Ubuntu: sudo cp root.crt /usr/local/share/ca-certificates/stackctl.crt "
        "&& sudo update-ca-certificates",
    ]


def _key_line(ctx: Context) -> str:
    proxy = ctx.config.proxy
    if proxy.api_keys_file and not ctx.stack.proxy_api_keys:
        return "one per person or app: `stackctl keys add NAME` (printed once)"
    if proxy.api_keys_file:
        path = Path(proxy.api_keys_file).expanduser()
        return f"the first key in {path} (mode 0600)"
    if proxy.api_keys:
        return f"one of proxy.api_keys in {ctx.config_path}"
    return "any (the proxy listens on 127.0.0.1 only and needs none)"
