"""Models the fake Ollama knows: realistic sizes, families and capabilities.

Sizes of gemma3 follow Ollama's README model table (ollama/ollama `519b11eba^:README.md`); capabilities
follow what the real models report in /api/show (gemma3 has no tools, 1b no vision).
"""

from __future__ import annotations

import hashlib
from typing import Any

# name -> (size in bytes, parameter_size, family, capabilities, context_length, embedding_length)
CATALOG: dict[str, tuple[int, str, str, list[str], int, int]] = {
    "gemma3:270m": (291_554_930, "268.10M", "gemma3", ["completion"], 32768, 640),
    "gemma3:1b": (815_319_791, "999.89M", "gemma3", ["completion"], 32768, 1152),
    "gemma3:4b": (3_338_801_804, "4.3B", "gemma3", ["completion", "vision"], 131072, 2560),
    "gemma3:12b": (8_149_190_253, "12.2B", "gemma3", ["completion", "vision"], 131072, 3840),
    "gemma3:27b": (17_396_936_941, "27.4B", "gemma3", ["completion", "vision"], 131072, 5376),
    "llama3.2:3b": (2_019_393_189, "3.2B", "llama", ["completion", "tools"], 131072, 3072),
    "qwen3:0.6b": (
        522_653_767,
        "751.63M",
        "qwen3",
        ["completion", "tools", "thinking"],
        40960,
        1024,
    ),
    "qwen3:8b": (5_225_387_923, "8.2B", "qwen3", ["completion", "tools", "thinking"], 40960, 4096),
    "qwen2.5-coder:1.5b": (
        986_062_089,
        "1.5B",
        "qwen2",
        ["completion", "tools", "insert"],
        32768,
        1536,
    ),
    "nomic-embed-text:v1.5": (274_302_450, "137M", "nomic-bert", ["embedding"], 2048, 768),
}
# tags that are the same model as another (same digest)
SAME_AS = {
    "gemma3:latest": "gemma3:4b",
    "llama3.2:latest": "llama3.2:3b",
    "qwen3:latest": "qwen3:8b",
    "nomic-embed-text:latest": "nomic-embed-text:v1.5",
}


def canonical(name: str) -> str:
    """`gemma3` -> `gemma3:latest` (a name always carries a tag)."""
    return name if ":" in name.split("/")[-1] else f"{name}:latest"


def fake_digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def spec_for(name: str) -> tuple[int, str, str, list[str], int, int]:
    name = canonical(name).lower()
    name = SAME_AS.get(name, name)
    if name in CATALOG:
        return CATALOG[name]
    family = name.split("/")[-1].split(":")[0].rstrip("0123456789.") or "llama"
    if name.startswith("slow"):
        return (123_456_789, "1B", family, ["completion", "tools", "vision"], 8192, 512)
    return (1_000_000_000 + len(name), "1B", family, ["completion"], 8192, 512)


def model_entry(name: str, modified_at: str) -> dict[str, Any]:
    """One /api/tags entry, plus the private keys the fake needs (`_capabilities`, …)."""
    size, params, family, caps, ctx, emb = spec_for(name)
    name = canonical(name)
    digest = fake_digest(SAME_AS.get(name.lower(), name.lower()))
    return {
        "name": name,
        "model": name,
        "modified_at": modified_at,
        "size": size,
        "digest": digest,
        "details": {
            "parent_model": "",
            "format": "gguf",
            "family": family,
            "families": [family],
            "parameter_size": params,
            "quantization_level": "Q4_K_M" if "embedding" not in caps else "F16",
        },
        "_capabilities": caps,
        "_context_length": ctx,
        "_embedding_length": emb,
    }


def public(entry: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in entry.items() if not k.startswith("_")}


def layers_for(name: str) -> list[tuple[str, int]]:
    """(digest, size) of each layer: weights (most of the size), template, license, params."""
    size = spec_for(name)[0]
    base = canonical(name).lower()
    small = [("template", 358), ("license", 8_432), ("params", 77)]
    weights = size - sum(s for _, s in small)
    return [
        ("sha256:" + fake_digest(f"{base}/{kind}"), n) for kind, n in [("model", weights), *small]
    ]


def full_name(name: str) -> str:
    """The fully qualified name Ollama uses in capability errors."""
    name = canonical(name)
    parts = name.split("/")
    if len(parts) == 1:
        return f"registry.ollama.ai/library/{name}"
    if len(parts) == 2 and "." not in parts[0]:
        return f"registry.ollama.ai/{name}"
    return name
