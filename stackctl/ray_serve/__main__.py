"""`python -m stackctl.ray_serve RAY_PYTHON ARG...`: the `ray-serve` unit's command. Run by
stackctl's own Python, which knows where this package is installed, it replaces itself with
the Ray venv's Python running ollama_app.py with the ARGs (the Ray venv has no stackctl)."""

from __future__ import annotations

import os
import sys

from stackctl.ray_serve import OLLAMA_APP


def main(argv: list[str]) -> None:
    if not argv:
        sys.exit("usage: python -m stackctl.ray_serve RAY_PYTHON [ollama_app.py's options]")
    ray_python, *options = argv
    os.execv(ray_python, [ray_python, str(OLLAMA_APP), *options])


if __name__ == "__main__":
    main(sys.argv[1:])
