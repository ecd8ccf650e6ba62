"""Is Ollama's model on the GPU? Read from Ollama's `/api/ps` once a model is loaded.

ggml's Metal backend gets its GPU only from `MTLCreateSystemDefaultDevice()` (ggml-org/
llama.cpp ggml/src/ggml-metal/ggml-metal-device.m, `ggml_metal_device_init`); without a
device Ollama runs models on the CPU, silently. Reports say that call can return nil for a
process outside a login session (a LaunchDaemon started before anyone logged in, or a
server started over ssh). Unverified, so stackctl checks on the running stack instead of
assuming: `/api/ps` lists each loaded model's `size` (bytes in memory) and `size_vram` (the
part in GPU memory) (ollama docs/api.md, "List Running Models").
"""

from __future__ import annotations

from dataclasses import dataclass

from stackctl.localhttp import Unreachable, get_json


@dataclass(frozen=True)
class Loaded:
    """A model Ollama holds in memory, and how much of it is in GPU memory."""

    name: str
    size: int
    size_vram: int


def loaded_models(ollama_url: str, timeout: float = 2.0) -> list[Loaded] | None:
    """The models Ollama has loaded (None: Ollama did not answer)."""
    try:
        _, body = get_json(f"{ollama_url}/api/ps", timeout=timeout)
    except Unreachable:
        return None
    models = body.get("models") if isinstance(body, dict) else None
    if not isinstance(models, list):
        return None
    return [
        Loaded(str(m.get("name", "")), int(m.get("size") or 0), int(m.get("size_vram") or 0))
        for m in models
        if isinstance(m, dict)
    ]


def offload_warnings(models: list[Loaded], scope: str) -> list[str]:
    """One warning per loaded model that is not wholly in GPU memory (an Apple Silicon Mac:
    Ollama should use Metal), with its likely cause."""
    from stackctl.catalog import GIB, gb

    warnings = []
    for model in models:
        if model.size <= 0 or model.size_vram >= model.size:
            continue
        size = f"{gb(model.size / GIB)} GB"
        if model.size_vram == 0:
            cause = (
                "Ollama was started before anyone logged in at the Mac's screen (system scope "
                "starts it at boot)"
                if scope == "system"
                else "Ollama was started from a remote (ssh) session"
            )
            warnings.append(
                f"{model.name} runs on the CPU, not the GPU (none of its {size} is in GPU "
                f"memory): Ollama got no Metal device. Likely cause: {cause}. Log in at the "
                "Mac's screen, then run `stackctl restart ollama`"
            )
        else:
            share = round(100 * model.size_vram / model.size)
            warnings.append(
                f"{model.name} runs partly on the CPU (only {share}% of its {size} is in GPU "
                "memory): it does not fit in the memory macOS lets the GPU use; use a smaller "
                "model, or a shorter OLLAMA_CONTEXT_LENGTH in ollama.env"
            )
    return warnings
