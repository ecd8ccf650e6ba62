"""Linux steps: an installed Ollama (no NVIDIA GPU), or vLLM and its model (NVIDIA).

Ollama on Linux: stackctl uses an `ollama` binary that is already installed and does not
install one itself. The official one-liner (`install.sh`) also installs and starts its own
`ollama.service` on port 11434, which would fight ours, so when none is found we print the
manual install from Ollama's docs (docs/linux.mdx, "Manual install": the binary, nothing
else) and stop.

vLLM: its own venv, made by uv like Open WebUI's (`uv pip install vllm --torch-backend=auto`
picks the PyTorch build that matches the driver: vllm-project/vllm
`docs/getting_started/installation/gpu.cuda.inc.md`), then the model downloaded ahead into
HF_HOME with huggingface_hub's CLI from that venv, so the service starts on a warm cache.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
from pathlib import Path

from stackctl import proc
from stackctl.catalog import find
from stackctl.errors import CommandFailed, StackctlError
from stackctl.install_commands import ollama_linux_install
from stackctl.paths import hf_repo_cache
from stackctl.plan import Progress, Step
from stackctl.probe import models_dir
from stackctl.setup.cluster import venv_pins
from stackctl.setup.common import stored_hf_token
from stackctl.setup.context import Context, use_ollama
from stackctl.setup.venv import VenvSpec, venv_spec, venv_steps

# What `hf download` (or older huggingface-cli) prints for a gated repository
GATED = re.compile(
    r"Access denied\. This repository requires approval|GatedRepoError|Cannot access gated repo"
    r"|401 Client Error|403 Client Error|restricted and you are not in the authorized list"
)


def require_ollama(ctx: Context) -> None:
    """Stop with the install command when no ollama binary is installed."""
    if not ctx.facts.ollama_path:
        raise StackctlError(
            "Ollama is not installed. Install the binary with Ollama's manual install "
            f"(docs: https://ollama.com/download/linux):\n  {ollama_linux_install()}\n"
            "then run `stackctl up` again. (Ollama's install.sh also starts its own "
            "ollama.service on port 11434; if you use it, stop that with "
            "`sudo systemctl disable --now ollama`.)"
        )
    for conflict in ctx.ollama_conflicts:
        raise StackctlError(
            f"{conflict.detail}: stop it with `{conflict.stop_command}`, "
            "then run `stackctl up` again"
        )


def require_nvidia(ctx: Context) -> None:
    """vLLM needs a working NVIDIA driver (`nvidia-smi` lists the GPUs)."""
    if ctx.facts.nvidia_error:
        raise StackctlError(
            f"nvidia-smi fails: {ctx.facts.nvidia_error}. Fix the NVIDIA driver (reboot after "
            f"installing it), or {use_ollama(ctx.config, ctx.config_path)}"
        )
    if not ctx.facts.gpus:
        raise StackctlError(
            "backend vllm needs an NVIDIA GPU and driver: nvidia-smi found none. Install the "
            f"driver, or {use_ollama(ctx.config, ctx.config_path)}"
        )


# --- vLLM ---------------------------------------------------------------------------------


def vllm_spec(ctx: Context) -> VenvSpec:
    """vLLM's venv: uv (it picks the PyTorch build for the driver), else pip with python3."""
    python = ctx.facts.venv_python
    spec = venv_spec(
        ctx,
        label="vLLM",
        venv=ctx.paths.vllm_venv,
        package="vllm",
        script="vllm",
        python=python,
        uv_options=("--torch-backend=auto",),
    )
    spec = venv_pins(ctx, spec)  # a cluster node: Ray too, and a worker the head's versions
    if spec.uv is None and spec.python is None:
        return dataclasses.replace(spec, python=proc.which("python3") or "python3")
    return spec


def model_cached(hf_home: Path, repo: str) -> bool:
    """True when the Hugging Face cache holds a complete snapshot of the repo.

    The hub cache is `hub/models--<org>--<name>/` with `refs/main` naming a snapshot dir;
    a download in progress leaves `*.incomplete` files in `blobs/`.
    """
    from stackctl.setup.openwebui_offline import snapshot_complete

    return snapshot_complete(hf_repo_cache(hf_home, repo))


def download_argv(ctx: Context) -> list[str]:
    """`hf download REPO` from vLLM's venv (`huggingface-cli` before huggingface_hub 0.34)."""
    venv_bin = ctx.paths.vllm_venv / "bin"
    cli = venv_bin / "hf"
    if not cli.exists() and (venv_bin / "huggingface-cli").exists():
        cli = venv_bin / "huggingface-cli"
    return [str(cli), "download", ctx.config.vllm.model]


def gated_message(ctx: Context, has_token: bool) -> str:
    """What to do about a gated model (Gemma and Llama are gated on Hugging Face)."""
    repo = ctx.config.vllm.model
    page = f"https://huggingface.co/{repo}"
    if has_token:
        return (
            f"{repo} is gated and the Hugging Face account of your HF_TOKEN has no access to "
            f"it: accept the licence at {page} with that account, then run `stackctl up` again"
        )
    return (
        f"{repo} is gated on Hugging Face: accept its licence at {page}, create a read token "
        f"at https://huggingface.co/settings/tokens, then `export HF_TOKEN=hf_...` and run "
        f"`stackctl up` again (the token is kept in {ctx.paths.secrets_file}, mode 0600)"
    )


def require_hf_token(ctx: Context) -> None:
    """Fail before the long vLLM install when a catalogued gated model has no token at all."""
    entry = find(ctx.config.vllm.model)
    if entry is None or not entry.gated or stored_hf_token(ctx):
        return
    if model_cached(models_dir(ctx.config, ctx.paths, "vllm"), ctx.config.vllm.model):
        return
    raise StackctlError(gated_message(ctx, has_token=False))


def vllm_steps(ctx: Context) -> list[Step]:
    """vLLM's venv, vLLM, and its model in HF_HOME (build_steps has checked the GPU)."""
    repo = ctx.config.vllm.model
    hf_home = models_dir(ctx.config, ctx.paths, "vllm")  # HF_HOME in vllm.env may move it

    def download(progress: Progress) -> None:
        token = stored_hf_token(ctx)
        env = {"HF_HOME": str(hf_home), **({"HF_TOKEN": token} if token else {})}
        try:
            progress.run(download_argv(ctx), env=env)
        except CommandFailed as exc:
            if GATED.search(exc.stderr):
                raise StackctlError(gated_message(ctx, has_token=bool(token))) from None
            raise

    download_cmd = f"HF_HOME={hf_home} {shlex.join(download_argv(ctx))}"
    steps = venv_steps(
        vllm_spec(ctx), takes="several GB; takes minutes",
        fix="check the network (PyPI and the PyTorch index)",
    )  # fmt: skip
    return [
        *steps,
        Step(
            description=f"Download {repo} into {hf_home} (served as "
            f"{ctx.config.vllm.served_model_name})",
            check=lambda: model_cached(hf_home, repo),
            apply=download,
            commands=[download_cmd],
            fix="check the network and the disk space; the download resumes",
        ),
    ]
