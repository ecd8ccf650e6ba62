"""NVIDIA GPUs, as `nvidia-smi` reports them: the GPU list (which also decides what
`backend: auto` means) and the driver's CUDA version or its error."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from stackctl import proc
from stackctl.probe_tools import TIMEOUT  # nvidia-smi can take seconds on a cold driver

GPU_QUERY = [
    "nvidia-smi",
    "--query-gpu=name,memory.total,memory.used,driver_version",
    "--format=csv,noheader,nounits",
]


@dataclass(frozen=True)
class Gpu:
    """One NVIDIA GPU, as nvidia-smi reports it."""

    name: str
    memory_total_mib: int
    memory_used_mib: int
    driver_version: str


def read_gpus() -> list[Gpu]:
    """The NVIDIA GPUs (empty without nvidia-smi or when it fails).

    Asked once per process (`read_gpus.cache_clear()` asks again, as tests do when they
    change the fakes): both `backend: auto` and the probe need the list, and nvidia-smi can
    take seconds when the driver is cold."""
    return list(_gpus())


@functools.cache
def _gpus() -> tuple[Gpu, ...]:
    if not proc.which("nvidia-smi"):
        return ()
    return tuple(parse_gpu_csv(proc.output(GPU_QUERY, timeout=TIMEOUT) or ""))


read_gpus.cache_clear = _gpus.cache_clear  # type: ignore[attr-defined]  # lru_cache's own API, on the wrapper


def parse_gpu_csv(text: str) -> list[Gpu]:
    """Rows like `NVIDIA GeForce RTX 4090, 24564, 1, 550.54.15` (MiB, no units)."""
    gpus = []
    for line in text.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 4:
            continue
        name, total, used, driver = parts
        gpus.append(Gpu(name, _int(total), _int(used), driver))
    return gpus


def _int(text: str) -> int:
    return int(text) if text.isdigit() else 0


def read_nvidia_header() -> tuple[str | None, str | None]:
    """(CUDA version, error) from plain `nvidia-smi`, whose header reads `CUDA Version: 12.4`."""
    if not proc.which("nvidia-smi"):
        return None, None
    result = proc.run(["nvidia-smi"], check=False, timeout=TIMEOUT)
    if not result.ok:
        # e.g. "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver"
        message = (result.stdout + result.stderr).strip().splitlines()
        return None, message[0] if message else f"exit code {result.code}"
    match = re.search(r"CUDA Version:\s*([0-9.]+)", result.stdout)
    return (match.group(1) if match else None), None
