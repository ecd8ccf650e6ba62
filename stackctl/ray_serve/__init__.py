"""Ray Serve applications stackctl deploys on a cluster's head. Each module here runs as a
script under the Ray venv's Python (never imported by stackctl's CLI), from this directory,
where no module shadows the standard library's (stackctl/types.py would shadow `types`)."""

from __future__ import annotations

from pathlib import Path

OLLAMA_APP = Path(__file__).with_name("ollama_app.py")  # Ollama replicas, one per node
