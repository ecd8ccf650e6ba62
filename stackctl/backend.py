"""What `backend: auto` means: the one rule, used wherever a backend is chosen."""

from __future__ import annotations

from collections.abc import Sequence

from stackctl.types import Backend, BackendSetting, Platform


def auto_backend(platform: Platform, gpus: Sequence[object]) -> Backend:
    """vLLM on Linux where nvidia-smi lists an NVIDIA GPU (vLLM needs CUDA), else Ollama
    (Metal on a Mac, the CPU elsewhere)."""
    return "vllm" if platform == "linux" and gpus else "ollama"


def chosen_backend(setting: BackendSetting, platform: Platform, gpus: Sequence[object]) -> Backend:
    """The backend a config's `backend` setting means on a host with these GPUs."""
    return auto_backend(platform, gpus) if setting == "auto" else setting
