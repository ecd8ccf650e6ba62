"""What `up` prints at the end: where to point a browser and apps, and what to run next."""

from __future__ import annotations

import socket
from pathlib import Path

from stackctl.setup.context import Context


def _public_host() -> str:
    """The name others reach this machine by (when the stack is exposed)."""
    return socket.gethostname() or "this-machine"


def summary_lines(ctx: Context) -> list[str]:
    """The summary, one line each (tests assert it)."""
    config = ctx.config
    host = _public_host() if config.expose else "127.0.0.1"
    lines = ["", "Your stack is up."]
    if config.openwebui.enabled:
        lines.append(f"  Open WebUI:       http://{host}:{config.openwebui.port}")
        if config.openwebui.admin_email:
            lines.append(
                f"    first admin {config.openwebui.admin_email}; its password is "
                f"WEBUI_ADMIN_PASSWORD in {ctx.paths.secrets_file}"
            )
        else:
            lines.append("    the first account you create becomes its admin")
    if config.proxy.enabled:
        lines.append(f"  OpenAI base URL:  http://{host}:{config.proxy.port}/v1")
        lines.append("  API key:          " + _key_line(ctx))
    else:
        backend_port = config.backend_port(ctx.backend)
        lines.append(f"  {ctx.backend}:  http://127.0.0.1:{backend_port}")
    lines.append("  Models:           " + ", ".join(ctx.models))
    if ctx.facts.metal:
        # a model Ollama already loaded that runs on the CPU (stackctl.gpu_offload)
        from stackctl.status import gpu_warnings

        lines += [f"  warning: {w}" for w in gpu_warnings(ctx.stack)]
    lines.append("Next: `stackctl status` (is it up? why not?), `stackctl logs SERVICE`")
    return lines


def _key_line(ctx: Context) -> str:
    proxy = ctx.config.proxy
    if proxy.api_keys_file:
        path = Path(proxy.api_keys_file).expanduser()
        return f"the first key in {path} (mode 0600)"
    if proxy.api_keys:
        return f"one of proxy.api_keys in {ctx.config_path}"
    return "any (the proxy listens on 127.0.0.1 only and needs none)"
