"""A venv with one package in it (Open WebUI, vLLM), made with uv, or with pip as the fallback.

uv is the normal path: stackctl depends on the `uv` package, whose wheel ships the binary, so
it is there wherever stackctl is. It makes the venv from a Python 3.11/3.12 found on the
machine, or fetches a managed CPython 3.12 when there is none (into stackctl's data dir:
UV_PYTHON_INSTALL_DIR), and installs several times faster than pip (bench/README.md).

pip stays as the fallback, with the same progress display and error messages: `stackctl up
--installer pip` uses `python -m venv` and the venv's pip only, and when a uv command fails
the same step retries it with them. Venvs get pip either way (`uv venv --seed`): Open WebUI
runs `python -m pip install` itself for the requirements of the tools and functions users
add, and the fallback needs it.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from stackctl.errors import CommandFailed
from stackctl.plan import Progress, Step

if TYPE_CHECKING:
    from stackctl.setup.context import Context

Installer = Literal["uv", "pip"]
INSTALLERS: tuple[Installer, ...] = ("uv", "pip")
MANAGED_PYTHON = "3.12"  # what uv fetches when the machine has no Python that fits
FETCH_FIX = (
    f"check the network (uv downloads CPython {MANAGED_PYTHON} builds from GitHub), or install "
    "a Python 3.11 or 3.12 for uv to use"
)


@dataclass(frozen=True)
class VenvSpec:
    """What one venv holds and how to make it."""

    label: str  # the software, as the plan names it: "Open WebUI"
    venv: Path
    package: str
    script: str  # the console script that shows the package is installed: "open-webui"
    python: str | None  # an interpreter on this machine that fits, or None (uv fetches one)
    uv: str | None  # the uv binary, or None: pip only
    python_dir: Path  # where uv keeps a Python it fetches
    upgrade: bool = False
    uv_options: tuple[str, ...] = ()  # e.g. vLLM's --torch-backend=auto (pip has no such flag)
    # installed with the package, and the console scripts that show they are (a cluster
    # node's vLLM venv holds Ray too: `ray[default]`, script `ray`)
    extra_packages: tuple[str, ...] = ()
    extra_scripts: tuple[str, ...] = ()
    managed_version: str = MANAGED_PYTHON  # what uv fetches when `python` is None
    # the versions installed are the ones wanted (a cluster's worker matches its head)
    versions_match: Callable[[Path], bool] | None = None

    @property
    def packages(self) -> list[str]:
        return [self.package, *self.extra_packages]

    def installed(self) -> bool:
        """Every script in place (and, when pinned, the wanted versions)."""
        scripts = (self.script, *self.extra_scripts)
        if not all((self.venv / "bin" / name).exists() for name in scripts):
            return False
        return self.versions_match is None or self.versions_match(self.venv)

    @property
    def installer(self) -> Installer:
        return "uv" if self.uv else "pip"

    @property
    def uv_env(self) -> dict[str, str]:
        """uv's environment: where a Python it fetches goes (only when it may fetch one)."""
        return {} if self.python else {"UV_PYTHON_INSTALL_DIR": str(self.python_dir)}

    def uv_create(self) -> list[str]:
        # --clear: uv refuses a directory that holds a venv already, and this step runs only
        # when that venv is incomplete (an interrupted run).
        python = self.python or self.managed_version
        return [str(self.uv), "venv", "--seed", "--clear", "--python", python, str(self.venv)]

    def pip_create(self) -> list[str]:
        return [str(self.python), "-m", "venv", str(self.venv)]

    def uv_install(self) -> list[str]:
        upgrade = ["--upgrade"] if self.upgrade else []
        python = str(self.venv / "bin/python")
        return [str(self.uv), "pip", "install", "--python", python, *upgrade, *self.packages,
                *self.uv_options]  # fmt: skip

    def pip_install(self) -> list[str]:
        upgrade = ["--upgrade"] if self.upgrade else []
        return [str(self.venv / "bin/pip"), "install", *upgrade, *self.packages]


def _with_env(env: dict[str, str], argv: list[str]) -> str:
    return " ".join([*(f"{k}={shlex.quote(v)}" for k, v in env.items()), shlex.join(argv)])


def _uv_then_pip(
    spec: VenvSpec,
    uv_argv: Callable[[], list[str]],
    pip_argv: Callable[[], list[str]],
    pip_ready: Callable[[], bool],
    env: dict[str, str] | None = None,
) -> Callable[[Progress], None]:
    """Run the uv command; when it fails and pip can do the job, say so and run pip's."""

    def apply(progress: Progress) -> None:
        if spec.uv:
            try:
                progress.run(uv_argv(), env=env)
                return
            except CommandFailed as exc:
                if not pip_ready():
                    raise
                last = exc.stderr.strip().splitlines()[-1:] or [""]
                progress.note(f"uv failed (exit code {exc.code}: {last[0].strip()}); using pip")
        progress.run(pip_argv())

    return apply


def venv_steps(spec: VenvSpec, *, takes: str, fix: str, what: str | None = None) -> list[Step]:
    """Create the venv (interpreter and pip in it), then install the package into it.

    `takes` says how long the install takes (in the step's description); `fix` is what to do
    when it fails; `what` names what is installed where the label alone says too little."""
    venv = spec.venv
    fetches = "" if spec.python else f" (uv fetches Python {spec.managed_version}: none here fits)"
    create = Step(
        description=f"Create {spec.label}'s venv {venv}{fetches}",
        # pip is the last thing both `uv venv --seed` and `-m venv` write: a venv without it
        # was interrupted
        check=lambda: (venv / "bin/python").exists() and (venv / "bin/pip").exists(),
        apply=_uv_then_pip(
            spec, spec.uv_create, spec.pip_create, lambda: spec.python is not None, spec.uv_env
        ),
        commands=[
            _with_env(spec.uv_env, spec.uv_create()) if spec.uv else shlex.join(spec.pip_create())
        ],
        fix="" if spec.python else FETCH_FIX,
    )
    install = Step(
        description=f"Install {what or f'{spec.label} into its venv'} ({spec.installer}; {takes})",
        check=lambda: not spec.upgrade and spec.installed(),
        apply=_uv_then_pip(spec, spec.uv_install, spec.pip_install, (venv / "bin/pip").exists),
        commands=[shlex.join(spec.uv_install() if spec.uv else spec.pip_install())],
        fix=fix,
    )
    return [create, install]


def venv_spec(
    ctx: Context,
    *,
    label: str,
    venv: Path,
    package: str,
    script: str,
    python: str | None,
    uv_options: tuple[str, ...] = (),
) -> VenvSpec:
    """The spec for this run: uv unless `--installer pip` (or no uv at all)."""
    return VenvSpec(
        label=label,
        venv=venv,
        package=package,
        script=script,
        python=python,
        uv=ctx.facts.uv_path if ctx.options.installer == "uv" else None,
        python_dir=ctx.paths.managed_python,
        upgrade=ctx.options.upgrade,
        uv_options=uv_options,
    )
