"""Open WebUI in its own venv: a Python 3.11 or 3.12, the venv, `pip install open-webui`.

Open WebUI pins many dependencies exactly and supports only Python 3.11 and 3.12
(`requires-python = ">= 3.11, < 3.13.0a1"` in open-webui/open-webui `pyproject.toml`), so it
gets a venv of its own under stackctl's data dir.
The install takes minutes (torch and friends): its output is shown as progress.
"""

from __future__ import annotations

from pathlib import Path

from stackctl.errors import StackctlError
from stackctl.homebrew import brew_argv
from stackctl.mac_limits import INTEL_MAC_OPENWEBUI, intel_mac, openwebui_requirement
from stackctl.plan import Step, command_step
from stackctl.services.inputs import DEFAULT_BREW_PREFIX
from stackctl.setup.common import venv_commands
from stackctl.setup.context import Context

BREW_PYTHON = "python@3.12"


def brew_python(ctx: Context) -> str:
    """Where `brew install python@3.12` puts its interpreter."""
    prefix = ctx.facts.brew_prefix or DEFAULT_BREW_PREFIX
    return str(Path(prefix, "opt", BREW_PYTHON, "bin/python3.12"))


def python_for_openwebui(ctx: Context) -> tuple[str | None, list[Step]]:
    """The interpreter for the venv (None: uv makes the venv) and the steps to get one."""
    if ctx.facts.python_for_openwebui:
        return ctx.facts.python_for_openwebui, []
    if ctx.platform == "macos":
        argv = brew_argv("install", BREW_PYTHON)
        step = command_step(
            description="Install Python 3.12 with Homebrew (Open WebUI needs 3.11 or 3.12)",
            check=lambda: Path(brew_python(ctx)).is_file(),
            argv=argv,
        )
        return brew_python(ctx), [step]
    if ctx.facts.uv_path:
        return None, []
    raise StackctlError(
        "Open WebUI needs Python 3.11 or 3.12 and none was found: install one (Debian/Ubuntu: "
        "`sudo apt install python3.11-venv`) or uv (https://docs.astral.sh/uv/), "
        "then run `stackctl up` again; or skip the web UI with --no-webui"
    )


def openwebui_steps(ctx: Context) -> list[Step]:
    """Python (when missing), the venv, and Open WebUI in it."""
    venv = ctx.paths.openwebui_venv
    python, steps = python_for_openwebui(ctx)
    # python None: no suitable Python here, but uv fetches one
    requirement = openwebui_requirement(ctx.facts)
    create, install = venv_commands(ctx, venv, python, requirement)
    steps.append(
        command_step(
            description=f"Create Open WebUI's venv {venv}",
            # pip is the last thing `-m venv` writes: a venv without it was interrupted
            check=lambda: (
                (venv / "bin/python").exists() and (python is None or (venv / "bin/pip").exists())
            ),
            argv=create,
        )
    )
    what = "Open WebUI into its venv"
    if intel_mac(ctx.facts):
        what = f"Open WebUI {INTEL_MAC_OPENWEBUI} into its venv: the last release that installs on an Intel Mac"
    steps.append(
        command_step(
            description=f"Install {what} (pip; takes a few minutes)",
            check=lambda: not ctx.options.upgrade and (venv / "bin/open-webui").exists(),
            argv=install,
            fix="check the network (pip downloads from PyPI)",
        )
    )
    return steps
