"""The Hugging Face hub cache as huggingface_hub lays it out, for the fake `hf` and `vllm`:
`$HF_HOME/hub/models--<org>--<name>/{blobs,snapshots/<revision>,refs/main}` (HF_HOME defaults
to ~/.cache/huggingface; huggingface_hub constants.py)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

REVISION = "0123456789abcdef0123456789abcdef01234567"
FILES = (
    "config.json",
    "tokenizer.json",
    "model-00001-of-00002.safetensors",
    "model-00002-of-00002.safetensors",
)


def hf_home() -> Path:
    return Path(os.environ.get("HF_HOME") or Path.home() / ".cache/huggingface")


def repo_cache(repo: str) -> Path:
    return hf_home() / "hub" / ("models--" + repo.replace("/", "--"))


def cached_snapshot(repo: str) -> Path | None:
    """The snapshot refs/main names, when it is complete."""
    cache = repo_cache(repo)
    try:
        snapshot = cache / "snapshots" / (cache / "refs/main").read_text().strip()
    except OSError:
        return None
    return snapshot if all((snapshot / name).exists() for name in FILES) else None


def download(repo: str) -> Path:
    """Write the repo's snapshot into the cache, with tqdm-like progress on stderr."""
    cache = repo_cache(repo)
    snapshot = cache / "snapshots" / REVISION
    snapshot.mkdir(parents=True, exist_ok=True)
    (cache / "blobs").mkdir(exist_ok=True)
    for done, name in enumerate(FILES, 1):
        blob = cache / "blobs" / f"blob{done}"
        blob.write_text("{}" if name.endswith(".json") else "x" * 1000)
        link = snapshot / name
        if not link.exists():
            link.symlink_to(os.path.relpath(blob, snapshot))
        sys.stderr.write(
            f"\rFetching {len(FILES)} files: {done * 100 // len(FILES):3d}%|"
            f"{'#' * done}{' ' * (len(FILES) - done)}| {done}/{len(FILES)}"
        )
        sys.stderr.flush()
    sys.stderr.write("\n")
    (cache / "refs").mkdir(exist_ok=True)
    (cache / "refs" / "main").write_text(REVISION)
    return snapshot
