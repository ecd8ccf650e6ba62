"""The models stackctl knows (`stackctl/data/models.yaml`), and which one fits this machine.

The fit rule (`memory_budget`, `recommend`):

- Apple Silicon shares one memory between CPU and GPU, and macOS lets the GPU use only part
  of it: Metal's `recommendedMaxWorkingSetSize`, which Ollama uses as the GPU's memory
  (ollama/ollama `discover/gpu_darwin.go`). That is about 2/3 of RAM up to 32 GiB and 3/4
  above (reverse-engineered in ggml-org/llama.cpp discussion #2182: weak evidence, but it
  matches what llama.cpp logs on real Macs). A 16 GB Mac: about 10.7 GiB, so gemma3:12b.
- NVIDIA: 90% of each GPU's memory, summed over the GPUs. 90% is vLLM's default
  `--gpu-memory-utilization`; Ollama splits layers across GPUs on its own, vLLM needs
  `--tensor-parallel-size` for more than one (doctor says so).
- Otherwise (Linux without NVIDIA, Intel Macs, where Ollama runs on the CPU): 60% of RAM,
  leaving room for the OS, Open WebUI and the proxy; and no model over 4.3B parameters,
  because CPU generation is bound by memory bandwidth: each token reads every weight, so a
  17 GB model answers about five times slower than a 3.3 GB one.

Ollama runs 4-bit quantised weights (`memory_gb`); vLLM runs the unquantised bf16 weights
(`vllm_memory_gb`, about three times as much). `recommend()` picks the largest model of the
default family (gemma3) whose need fits the budget, or the family's smallest when none does.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from stackctl.backend import auto_backend
from stackctl.config.model import Config
from stackctl.output import GIB, gb
from stackctl.probe import probe_memory

if TYPE_CHECKING:
    from stackctl.probe import HostFacts

CATALOGUE_FILE = Path(__file__).parent / "data" / "models.yaml"
APPLE_SMALL_FRACTION = 2 / 3  # Metal's working-set limit up to 32 GiB of RAM
APPLE_LARGE_FRACTION = 3 / 4  # ... and above
APPLE_LARGE_FROM = 32 * GIB
GPU_FRACTION = 0.9  # vLLM's default --gpu-memory-utilization
CPU_FRACTION = 0.6
CPU_MAX_PARAMS_B = 4.3  # gemma3:4b; larger models are too slow on a CPU to recommend
# The context every memory_gb in models.yaml assumes: Ollama's default below 24 GiB of GPU
# memory. Above it Ollama defaults to 32k (24-48 GiB) or 256k (48 GiB and more) tokens
# (ollama docs/context-length.mdx), whose KV cache the fit does not count, so the Ollama unit
# pins OLLAMA_CONTEXT_LENGTH to this (ollama.env can raise it).
FIT_CONTEXT_TOKENS = 4096


@dataclass(frozen=True)
class Model:
    """One catalogue entry (see the field comments in models.yaml)."""

    ollama: str
    aliases: tuple[str, ...]
    family: str
    params_b: float
    hf_id: str
    gated: bool
    download_gb: float
    memory_gb: float
    hf_download_gb: float
    vllm_memory_gb: float

    def need_gib(self, backend: str) -> float:
        """Memory this model needs on a backend (Ollama: 4-bit; vLLM: bf16)."""
        return self.vllm_memory_gb if backend == "vllm" else self.memory_gb

    def download_bytes(self, backend: str) -> int:
        """What pulling it downloads on a backend."""
        size = self.hf_download_gb if backend == "vllm" else self.download_gb
        return int(size * 1e9)

    @property
    def served_name(self) -> str:
        """The id clients use: the Ollama tag, also vLLM's --served-model-name."""
        return self.ollama


@dataclass(frozen=True)
class Budget:
    """How much memory models may use here, and where it comes from."""

    gib: float  # usable for a model
    total_gib: float  # the hardware's total (RAM, unified memory or VRAM)
    kind: Literal["unified", "vram", "ram"]
    where: str  # "this Mac", "this machine's GPU", ...

    def describe(self) -> str:
        """E.g. 'this Mac has 16 GB, about 11 GB of it usable by the GPU'."""
        usable = {"unified": "usable by the GPU", "vram": "usable", "ram": "usable for models"}
        has = f"{self.where} has {gb(self.total_gib)} GB" + (
            " of RAM" if self.kind == "ram" else ""
        )
        return f"{has}, about {gb(self.gib)} GB of it {usable[self.kind]}"


@functools.cache
def catalogue() -> tuple[Model, ...]:
    """Every model in the catalogue, in file order."""
    return tuple(_load()[1])


@functools.cache
def default_family() -> str:
    return _load()[0]


@functools.cache  # catalogue() and default_family() both read it: parse the file once
def _load() -> tuple[str, list[Model]]:
    import yaml

    data = yaml.safe_load(CATALOGUE_FILE.read_text(encoding="utf-8"))
    models = [Model(**{**entry, "aliases": tuple(entry["aliases"])}) for entry in data["models"]]
    return data["default_family"], models


def find(name: str) -> Model | None:
    """The catalogue entry for an Ollama tag, alias or Hugging Face id (case-insensitive)."""
    wanted = name.strip().lower()
    for model in catalogue():
        names = (model.ollama, *model.aliases, model.hf_id)
        if wanted in (n.lower() for n in names):
            return model
    return None


def family_models(family: str | None = None) -> list[Model]:
    """The models of one family (default: gemma3), smallest first."""
    family = family or default_family()
    return sorted((m for m in catalogue() if m.family == family), key=lambda m: m.params_b)


def memory_budget(facts: HostFacts, nodes: int = 1) -> Budget:
    """The memory a model may use on this host (the rule is in this module's docstring), or
    on a cluster of `nodes` such hosts (its head's GPUs times the nodes: every node has the
    same GPUs, as vLLM's tensor parallelism needs)."""
    if facts.gpus:
        total = sum(g.memory_total_mib for g in facts.gpus) * 1024**2 / GIB * nodes
        where = "this machine's GPU" if len(facts.gpus) == 1 else f"these {len(facts.gpus)} GPUs"
        if nodes > 1:
            each = f"{len(facts.gpus)} GPU" + ("s" if len(facts.gpus) > 1 else "")
            where = f"the cluster ({nodes} nodes, {each} each)"
        return Budget(total * GPU_FRACTION, total, "vram", where)
    total = facts.ram_total / GIB
    if facts.apple_silicon:
        fraction = (
            APPLE_LARGE_FRACTION if facts.ram_total > APPLE_LARGE_FROM else APPLE_SMALL_FRACTION
        )
        return Budget(total * fraction, total, "unified", "this Mac")
    where = "this Mac" if facts.platform == "macos" else "this machine"
    return Budget(total * CPU_FRACTION, total, "ram", where)


def fits(model: Model, facts: HostFacts, backend: str, nodes: int = 1) -> bool:
    """True when the model runs fully in this host's (or cluster's) usable memory on that
    backend."""
    budget = memory_budget(facts, nodes)
    if budget.kind == "ram" and model.params_b > CPU_MAX_PARAMS_B:
        return False
    return model.need_gib(backend) <= budget.gib


def recommend(
    facts: HostFacts, backend: str | None = None, family: str | None = None, nodes: int = 1
) -> Model:
    """The largest model of the family that fits this host (or a cluster of `nodes`), else
    the family's smallest (on the given backend, else the one `backend: auto` means here)."""
    backend = backend or auto_backend(facts.platform, facts.gpus)
    candidates = family_models(family)
    fitting = [m for m in candidates if fits(m, facts, backend, nodes)]
    return fitting[-1] if fitting else candidates[0]


def cluster_nodes(config: Config) -> int:
    """The nodes whose GPUs a model uses: a cluster's head counts them all; else one."""
    cluster = config.cluster
    return cluster.nodes if cluster is not None and cluster.is_head else 1


def default_models(config: Config, backend: str) -> list[str]:
    """The models `up` pulls when the config names none.

    vLLM serves the one model in `vllm.model` (as `vllm.served_model_name`). For Ollama it
    is the recommendation for this host's memory, read cheaply (no full probe).
    """
    if backend == "vllm":
        return [config.vllm.served_model_name]

    return [recommend(probe_memory(), "ollama").ollama]
