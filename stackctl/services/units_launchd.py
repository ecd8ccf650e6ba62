"""launchd property lists (launchd.plist(5)) from service specs."""

from __future__ import annotations

from xml.sax.saxutils import escape

from stackctl.services.base import Unit
from stackctl.services.inputs import RenderInputs
from stackctl.services.names import launchd_filename, launchd_label, launchd_log_file
from stackctl.services.spec import ServiceSpec, fill, no_line_breaks, template


def render_launchd(specs: list[ServiceSpec], inputs: RenderInputs) -> list[Unit]:
    """One `dev.stackctl.<service>.plist` per spec; mode 0600 when it holds a secret."""
    return [_plist(spec, inputs) for spec in specs]


def _string(value: str) -> str:
    return f"<string>{escape(no_line_breaks('a plist value', value))}</string>"


def _plist(spec: ServiceSpec, inputs: RenderInputs) -> Unit:
    # launchd has no EnvironmentFile: a job that needs a secret gets its value here.
    secrets = {name: inputs.secrets[name] for name in spec.secret_names if inputs.secrets.get(name)}
    environment: list[str] = []
    for name, value in {**spec.env, **secrets}.items():
        environment += [f"<key>{escape(name)}</key>", _string(value)]
    user_name = []
    if inputs.scope == "system":
        # A LaunchDaemon runs as root unless told otherwise.
        user_name = ["<key>UserName</key>", _string(inputs.user)]
        user_name += ["<key>GroupName</key>", _string(inputs.group)]
    values = {
        "description": spec.description,
        "label": escape(launchd_label(spec.service)),
        "user_name": user_name,
        "program_arguments": [_string(arg) for arg in spec.argv],
        "environment": environment,
        "working_directory": escape(str(spec.working_directory)),
        "log_file": escape(str(launchd_log_file(inputs.paths, spec.service))),
    }
    name = launchd_filename(spec.service)
    content = fill(template("launchd", name), values)
    return Unit(spec.service, name, content, secret=bool(secrets))
