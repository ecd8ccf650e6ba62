"""`stackctl up` on a cluster node with Ollama: its Ray venv, with Serve (issue 12).

The head's Ray Serve application (stackctl/ray_serve/ollama_app.py) runs a replica on every
node, so every node's Ray has Serve (`ray[serve]`, which holds `ray[default]` too); a worker
installs the head's Ray and Python versions (Ray refuses a node whose versions differ).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from stackctl.cluster import RAY_SERVE_PACKAGE
from stackctl.cluster_join import stack_ray_venv
from stackctl.plan import Step
from stackctl.setup.cluster import python_pinned
from stackctl.setup.venv import venv_spec, venv_steps

if TYPE_CHECKING:
    from stackctl.setup.context import Context


def ray_serve_venv_steps(ctx: Context) -> list[Step]:
    """Create the node's Ray venv and install Ray with Serve into it."""
    pins = ctx.options.pins
    package = f"{RAY_SERVE_PACKAGE}=={pins['ray']}" if "ray" in pins else RAY_SERVE_PACKAGE
    spec = venv_spec(
        ctx,
        label="Ray",
        venv=stack_ray_venv(ctx.stack),
        package=package,
        script="ray",
        python=ctx.facts.venv_python,
    )
    return venv_steps(
        python_pinned(ctx, spec), takes="about 100 MB", fix="check the network (PyPI)"
    )
