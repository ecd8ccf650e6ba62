"""Open WebUI without internet: whether its embedding model is cached, and the preflight
check for `OFFLINE_MODE`.

How Open WebUI loads its embedding model (open-webui, backend/open_webui/retrieval/utils.py
`get_model_path` and routers/retrieval.py `get_ef`): `snapshot_download(repo,
cache_dir=$SENTENCE_TRANSFORMERS_HOME, local_files_only=not RAG_EMBEDDING_MODEL_AUTO_UPDATE)`,
and when that fails it hands the bare model name to SentenceTransformer, which downloads it.
`OFFLINE_MODE=true` (env.py) sets `HF_HUB_OFFLINE=1` and turns auto-update and the version
check off; on a fresh install it then has no embedding model and startup fails ("No
embedding model is loaded").

So stackctl's units set `RAG_EMBEDDING_MODEL_AUTO_UPDATE=false` (the cached model is used
as it is, the first start still downloads it), and an air-gapped server sets
`OFFLINE_MODE: "true"` in `openwebui.env`, which `up` accepts once the model is cached.
"""

from __future__ import annotations

from pathlib import Path

from stackctl.errors import StackctlError
from stackctl.services.render import EMBEDDING_CACHE
from stackctl.setup.context import Context

DEFAULT_EMBEDDING_MODEL = "sentence-transformers/all-MiniLM-L6-v2"  # RAG_EMBEDDING_MODEL's default
TRUE = ("1", "true", "yes", "on")


def embedding_repo(env: dict[str, str]) -> str:
    """The Hugging Face repo of the embedding model (a short name is a sentence-transformers
    one, as Open WebUI reads it)."""
    model = env.get("RAG_EMBEDDING_MODEL") or DEFAULT_EMBEDDING_MODEL
    return model if "/" in model else f"sentence-transformers/{model}"


def embedding_cache(ctx: Context) -> Path:
    """Where Open WebUI keeps (and looks for) its embedding model."""
    env = ctx.config.openwebui.env
    default = ctx.paths.openwebui_data / EMBEDDING_CACHE
    return (
        Path(env["SENTENCE_TRANSFORMERS_HOME"]) if "SENTENCE_TRANSFORMERS_HOME" in env else default
    )


def snapshot_complete(repo_dir: Path) -> bool:
    """True when a Hugging Face cache dir (`models--<org>--<name>`) holds a complete snapshot:
    `refs/main` names a non-empty snapshot and no download is in progress (`*.incomplete`)."""
    ref = repo_dir / "refs" / "main"
    if not ref.is_file():
        return False
    snapshot = repo_dir / "snapshots" / ref.read_text().strip()
    if not snapshot.is_dir() or not any(snapshot.iterdir()):
        return False
    return not any((repo_dir / "blobs").glob("*.incomplete"))


def offline(env: dict[str, str]) -> bool:
    """True when openwebui.env starts Open WebUI without the Hugging Face Hub."""
    return any(env.get(name, "").lower() in TRUE for name in ("OFFLINE_MODE", "HF_HUB_OFFLINE"))


def require_cached_embedding_model(ctx: Context) -> None:
    """An offline Open WebUI with a local embedding model needs that model cached first."""
    env = ctx.config.openwebui.env
    if not ctx.config.openwebui.enabled or not offline(env) or env.get("RAG_EMBEDDING_ENGINE"):
        return
    repo = embedding_repo(env)
    cache = embedding_cache(ctx)
    if snapshot_complete(cache / ("models--" + repo.replace("/", "--"))):
        return
    raise StackctlError(
        f"openwebui.env in {ctx.config_path} starts Open WebUI offline, but its embedding "
        f"model {repo} is not in {cache} yet (Open WebUI would not start): start it online "
        "once (drop OFFLINE_MODE/HF_HUB_OFFLINE, run `stackctl up`, then put it back), or "
        f"copy the model there from a machine that has it (`hf download {repo} --cache-dir "
        f"{cache}`)"
    )
