"""systemd unit files (systemd.service(5), systemd.exec(5)) from service specs."""

from __future__ import annotations

import re
from pathlib import Path

from stackctl.services.base import Unit
from stackctl.services.inputs import RenderInputs
from stackctl.services.names import SYSTEMD_TARGET, systemd_unit
from stackctl.services.spec import ServiceSpec, fill, no_line_breaks, template

_NEEDS_QUOTES = re.compile(r"""[\s"'\\;]""")
# the model servers and the Ray node their workers run on: the GPU and the network
GPU_SERVICES = ("ollama", "vllm", "ray")


def render_systemd(specs: list[ServiceSpec], inputs: RenderInputs) -> list[Unit]:
    """One `stackctl-<service>.service` per spec, then `stackctl.target`."""
    units = [_service_unit(spec, inputs) for spec in specs]
    target = fill(
        template("systemd", SYSTEMD_TARGET),
        {
            "systemctl_scope": "--user " if inputs.scope == "user" else "",
            # A user manager has no multi-user.target; default.target is its login session.
            "wanted_by": "default.target" if inputs.scope == "user" else "multi-user.target",
        },
    )
    units.append(Unit("target", SYSTEMD_TARGET, target))
    return units


def _service_unit(spec: ServiceSpec, inputs: RenderInputs) -> Unit:
    name = systemd_unit(spec.service)
    values = {
        "description": spec.description,
        "ordering": _ordering(spec, inputs),
        "exec_start": " ".join(exec_arg(f"{spec.service} argument", a) for a in spec.argv),
        "working_directory": escape_specifiers(str(spec.working_directory)),
        "environment": [f"Environment={environment(k, v)}" for k, v in spec.env.items()],
        # `-`: a missing secrets file is not an error (a stack without secrets still starts).
        "environment_file": (
            [f"EnvironmentFile=-{escape_specifiers(str(inputs.paths.secrets_file))}"]
            if spec.uses_secrets_file
            else []
        ),
        "account": [f"User={inputs.user}", f"Group={inputs.group}"]
        if inputs.scope == "system"
        else [],
        "hardening": _hardening(spec, inputs),
    }
    return Unit(spec.service, name, fill(template("systemd", name), values))


def _ordering(spec: ServiceSpec, inputs: RenderInputs) -> list[str]:
    units = [systemd_unit(service) for service in spec.depends_on]
    if inputs.scope == "system" and spec.service in GPU_SERVICES:
        # First start downloads weights; user managers have no network-online.target.
        units.insert(0, "network-online.target")
    if not units:
        return []
    return [f"After={' '.join(units)}", f"Wants={' '.join(units)}"]


def _hardening(spec: ServiceSpec, inputs: RenderInputs) -> list[str]:
    """Sandboxing for system scope (systemd.exec(5)). User managers cannot set up most of
    these without user namespaces, and a person's own services may use their home anyway."""
    if inputs.scope == "user":
        return ["NoNewPrivileges=yes"]
    writable = " ".join(quote_path(path) for path in spec.writable)
    lines = [
        "# Hardening: the system is read-only to this service except stackctl's data.",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        f"ReadWritePaths={writable}",
        # read-only, not yes: the proxy runs the Python stackctl was installed with, which may
        # live under /home (pipx, a venv).
        "ProtectHome=read-only",
        "PrivateTmp=yes",
        "ProtectKernelTunables=yes",
        "ProtectKernelModules=yes",
        "ProtectControlGroups=yes",
        "RestrictSUIDSGID=yes",
        "LockPersonality=yes",
    ]
    if spec.service in GPU_SERVICES:
        lines.append(
            "# No PrivateDevices=: the model server needs the GPU's device nodes (/dev/nvidia*)."
        )
    else:
        lines.append("PrivateDevices=yes")
    if spec.service == "front":
        lines += [
            "# The HTTPS front may listen on a port below 1024 (tls.port: 443) as this account.",
            "AmbientCapabilities=CAP_NET_BIND_SERVICE",
        ]
    return lines


def escape_specifiers(text: str) -> str:
    """systemd expands %-specifiers in most settings: a literal % is written %%."""
    return text.replace("%", "%%")


def _quoted(text: str) -> str:
    """`text` as it is, or in double quotes (`\\` and `"` escaped) when it is empty or has
    spaces, quotes, backslashes or `;`."""
    if text and not _NEEDS_QUOTES.search(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def exec_arg(what: str, arg: str) -> str:
    """One ExecStart= word: `$` and `%` escaped, quoted when it has spaces or quotes."""
    return _quoted(escape_specifiers(no_line_breaks(what, arg)).replace("$", "$$"))


def environment(name: str, value: str) -> str:
    """One Environment= assignment, quoted when the value needs it (`$` is literal here)."""
    return _quoted(escape_specifiers(f"{name}={no_line_breaks(name, value)}"))


def quote_path(path: Path) -> str:
    """A path in a space-separated list setting (ReadWritePaths=)."""
    text = escape_specifiers(str(path))
    return f'"{text}"' if _NEEDS_QUOTES.search(text) else text
