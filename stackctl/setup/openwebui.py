"""Open WebUI in its own venv: a Python 3.11 or 3.12, the venv, `open-webui` installed into it.

Open WebUI pins many dependencies exactly and supports only Python 3.11 and 3.12
(`requires-python = ">= 3.11, < 3.13.0a1"` in open-webui/open-webui `pyproject.toml`), so it
gets a venv of its own under stackctl's data dir, made by uv (stackctl/setup/venv.py): from a
Python that fits when the machine has one, else from a CPython 3.12 uv fetches. The install
downloads torch and friends: its output is shown as progress.
"""

from __future__ import annotations

from stackctl.errors import StackctlError
from stackctl.mac_limits import INTEL_MAC_OPENWEBUI, intel_mac, openwebui_requirement
from stackctl.plan import Step
from stackctl.setup.context import Context
from stackctl.setup.venv import venv_spec, venv_steps


def _no_python(ctx: Context) -> StackctlError:
    """Only pip is left and no Python fits: say how to get one (or uv back)."""
    if ctx.options.installer == "pip":
        how = "drop --installer pip (uv fetches one)"
    else:
        how = "reinstall stackctl, which brings uv (`pip install --force-reinstall stackctl`)"
    install = (
        "`brew install python@3.12`" if ctx.platform == "macos" else
        "Debian/Ubuntu: `sudo apt install python3.11-venv`"
    )  # fmt: skip
    return StackctlError(
        f"Open WebUI needs Python 3.11 or 3.12 and none was found: install one ({install}) "
        f"or {how}, then run `stackctl up` again; or skip the web UI with --no-webui"
    )


def openwebui_steps(ctx: Context) -> list[Step]:
    """The venv (uv fetches a Python when none fits), and Open WebUI in it (on an Intel Mac
    the last release that installs there: stackctl/mac_limits.py)."""
    spec = venv_spec(
        ctx,
        label="Open WebUI",
        venv=ctx.paths.openwebui_venv,
        package=openwebui_requirement(ctx.facts),
        script="open-webui",
        python=ctx.facts.venv_python,
    )
    if spec.uv is None and spec.python is None:
        raise _no_python(ctx)
    what = None
    if intel_mac(ctx.facts):
        what = (
            f"Open WebUI {INTEL_MAC_OPENWEBUI} into its venv: the last release that installs "
            "on an Intel Mac"
        )
    takes = "about a minute" if spec.uv else "takes a few minutes"
    return venv_steps(
        spec, takes=takes, fix="check the network (the packages come from PyPI)", what=what
    )
