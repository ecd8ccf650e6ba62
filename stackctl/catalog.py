"""The models stackctl knows, and which one fits this machine.

(The catalogue data file and `recommend()` land with the host probe; `default_models` is the
name the rest of stackctl relies on.)
"""

from __future__ import annotations

from stackctl.config.model import Config


def default_models(config: Config, backend: str) -> list[str]:
    """The models `up` pulls when the config names none."""
    if backend == "vllm":
        return [config.vllm.served_model_name]
    return ["gemma3:27b"]
