"""Checks of the software the stack needs: the backend and its driver, Ollama or vLLM, Open
WebUI's Python, and a Hugging Face token for gated models."""

from __future__ import annotations

import re
from collections.abc import Iterator

from stackctl import catalog
from stackctl.doctor.base import Context, Finding, downloaded, wanted_models
from stackctl.errors import StackctlError
from stackctl.install_commands import ollama_linux_install
from stackctl.secrets import hf_token

# What the proxy uses from Ollama, and the first release tag of ollama/ollama that contains
# it (found with `git tag --contains` on the change).
OLLAMA_FEATURES = [
    ((0, 1, 34), "the fix for CVE-2024-37032 (Probllama)"),
    ((0, 8, 0), "streamed tool calls"),
    ((0, 9, 0), "the think field"),
    ((0, 9, 6), "tool_name on tool results"),
    ((0, 12, 10), "tool call ids"),
]


def check_backend(ctx: Context) -> Iterator[Finding]:
    facts, backend = ctx.facts, ctx.backend
    if ctx.config.backend != "auto":
        yield Finding("ok", "backend", f"backend {backend} (set in the config)")
    else:
        why = "NVIDIA GPU found" if backend == "vllm" else "no NVIDIA GPU"
        if facts.platform == "macos":
            why = "macOS"
        yield Finding("ok", "backend", f"backend {backend} (auto: {why})")
    if backend != "vllm":
        return
    if facts.nvidia_error:
        yield Finding(
            "error",
            "nvidia",
            f"backend vllm needs a working NVIDIA driver: nvidia-smi fails: {facts.nvidia_error}",
            "check the driver is installed and loaded (a reboot after a driver update often fixes it)",
        )
    elif not facts.gpus:
        yield Finding(
            "error",
            "nvidia",
            "backend vllm needs an NVIDIA driver: nvidia-smi not found",
            "install the NVIDIA driver, or set backend: ollama",
        )
    else:
        yield from _cuda_findings(ctx)


def _cuda_findings(ctx: Context) -> Iterator[Finding]:
    facts = ctx.facts
    cuda = facts.cuda_version
    major = int(cuda.split(".")[0]) if cuda and cuda.split(".")[0].isdigit() else None
    if major is not None and major < 12:
        yield Finding(
            "error",
            "nvidia",
            f"vLLM's wheels are built for CUDA 12 and this driver supports only CUDA {cuda}",
            "upgrade the NVIDIA driver",
        )
    else:
        driver = facts.gpus[0].driver_version
        yield Finding("ok", "nvidia", f"NVIDIA driver {driver}, CUDA {cuda or 'unknown'}")
    args = " ".join(ctx.config.vllm.args)
    if len(facts.gpus) > 1 and not re.search(r"--tensor-parallel-size|(^|\s)-tp\b", args):
        yield Finding(
            "warn",
            "vllm",
            f"this machine has {len(facts.gpus)} GPUs and vLLM uses one unless told",
            f'add ["--tensor-parallel-size", "{len(facts.gpus)}"] to vllm.args',
        )


def check_installs(ctx: Context) -> Iterator[Finding]:
    facts = ctx.facts
    if ctx.backend == "ollama":
        yield from _ollama_findings(ctx)
    elif facts.vllm_version:
        yield Finding("ok", "vllm", f"vLLM {facts.vllm_version} in {ctx.paths.vllm_venv}")
    else:
        yield Finding(
            "ok",
            "vllm",
            f"vLLM is not installed yet: `stackctl up` installs it into {ctx.paths.vllm_venv}",
        )
    if ctx.config.openwebui.enabled:
        yield from _openwebui_findings(ctx)


def _ollama_findings(ctx: Context) -> Iterator[Finding]:
    facts = ctx.facts
    mac = facts.platform == "macos"
    if facts.ollama_path is None:
        if mac and facts.brew_prefix:
            yield Finding(
                "ok",
                "ollama",
                "Ollama is not installed yet: `stackctl up` installs it with Homebrew",
            )
        elif mac:
            yield Finding(
                "error",
                "ollama",
                "Ollama is not installed, and stackctl installs it with Homebrew, which is missing",
                "install Homebrew (https://brew.sh), then run `stackctl up`",
            )
        else:
            yield Finding(
                "error",
                "ollama",
                "Ollama is not installed",
                f"install the binary (Ollama's manual install): `{ollama_linux_install()}`, "
                "then run `stackctl up`",
            )
        return
    if mac and facts.brew_prefix:
        from pathlib import Path

        from stackctl.setup.macos import not_the_formula

        problem = not_the_formula(Path(facts.brew_prefix, "bin", "ollama"))
        if problem:
            message, _, fix = problem.partition(". ")
            yield Finding("error", "ollama", message.rstrip(":"), fix)
            return
    version = facts.ollama_version
    missing = [feature for since, feature in OLLAMA_FEATURES if version and _older(version, since)]
    if version and missing:
        upgrade = "`brew upgrade ollama`" if mac else f"re-run `{ollama_linux_install()}`"
        newest = ".".join(map(str, OLLAMA_FEATURES[-1][0]))
        yield Finding(
            "warn",
            "ollama",
            f"Ollama {version} is older than {newest}; the proxy cannot use: {', '.join(missing)}",
            f"upgrade it: {upgrade}",
        )
    else:
        yield Finding(
            "ok", "ollama", f"Ollama {version or '(version unknown)'} at {facts.ollama_path}"
        )


def _older(version: str, than: tuple[int, ...]) -> bool:
    numbers = tuple(int(n) for n in re.findall(r"\d+", version.split("-")[0])[:3])
    return numbers < than


def _openwebui_findings(ctx: Context) -> Iterator[Finding]:
    from stackctl.mac_limits import intel_mac, intel_mac_openwebui_note

    facts = ctx.facts
    if intel_mac(facts):
        yield Finding("warn", "openwebui", intel_mac_openwebui_note())
    if facts.openwebui_version:
        yield Finding(
            "ok", "openwebui", f"Open WebUI {facts.openwebui_version} in {ctx.paths.openwebui_venv}"
        )
        return
    if facts.venv_python:
        yield Finding("ok", "python", f"Python for Open WebUI: {facts.venv_python}")
        return
    if facts.uv_path:
        yield Finding(
            "ok",
            "python",
            "no Python 3.11/3.12 here: `stackctl up` has uv fetch CPython 3.12 for Open WebUI",
        )
        return
    message = "Open WebUI needs Python 3.11 or 3.12: none found, and no uv to fetch one"
    if facts.platform == "macos":
        fix = "`brew install python@3.12`"
    else:
        fix = "install python3.12 or python3.11 (e.g. `sudo apt install python3.11`)"
    fix += ", or reinstall stackctl (it brings uv)"
    yield Finding("error", "python", message, fix + ", or set openwebui.enabled: false")


def check_gated(ctx: Context) -> Iterator[Finding]:
    if ctx.backend != "vllm" or not wanted_models(ctx):  # a cluster's worker: the head's
        return
    model = catalog.find(ctx.config.vllm.model)
    if model is None or not model.gated or downloaded(ctx, model.hf_id, model):
        return

    try:
        has_token = hf_token(ctx.paths.secrets_file, ctx.env) is not None
    except (StackctlError, OSError) as exc:  # e.g. a secrets file others can read
        yield Finding(
            "error", "secrets", exc.format_message() if isinstance(exc, StackctlError) else str(exc)
        )
        return
    if not has_token:
        yield Finding(
            "warn",
            "huggingface",
            f"{model.hf_id} is gated on Hugging Face: downloading it needs HF_TOKEN",
            f"accept its licence at https://huggingface.co/{model.hf_id}, then put "
            f"HF_TOKEN=<your token> in {ctx.paths.secrets_file} (mode 0600)",
        )


def check_front(ctx: Context) -> Iterator[Finding]:
    """With `expose`: Caddy for the HTTPS front, and how the certificates come."""
    if not ctx.config.expose:
        return
    import shutil

    from stackctl.setup.front import linux_install_command

    if shutil.which("caddy") is None:
        fix = (
            "`brew install caddy`"
            if ctx.facts.platform == "macos"
            else (f"`{linux_install_command()}`")
        )
        yield Finding(
            "error",
            "front",
            "expose: true serves the stack over HTTPS through Caddy, which is not installed",
            f"run {fix} (or `stackctl up`, which installs it as root or with Homebrew)",
        )
        return
    tls = ctx.config.tls
    how = {
        "internal": f"Caddy's local CA (clients trust {ctx.stack.paths.caddy_root_cert})",
        "acme": f"a public certificate for {tls.domain} over ACME",
        "files": f"your certificate {tls.cert}",
    }[tls.mode]
    yield Finding("ok", "front", f"the HTTPS front serves {how}")
