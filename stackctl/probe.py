"""The host probe: facts about this machine, each read by a small function.

(The full probe lands with the foundation's doctor work; this module's public names are
what the rest of stackctl relies on.)
"""

from __future__ import annotations

from stackctl import proc


def has_nvidia_gpu() -> bool:
    """True when `nvidia-smi -L` lists at least one GPU."""
    if not proc.which("nvidia-smi"):
        return False
    listing = proc.output(["nvidia-smi", "-L"], timeout=10)
    return bool(listing and "GPU" in listing)
