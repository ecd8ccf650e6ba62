"""`stackctl down`: remove the units stackctl installed; with --purge, its data too.

Plain `down` touches nothing but stackctl's own units (the service manager's record of what
it wrote says which). `--purge` deletes what stackctl created: config, secrets, venvs, Open
WebUI's data, downloaded Hugging Face weights, logs, and in system scope its Ollama models
and account. Ollama's own model store of a user (`~/.ollama/models`) is never deleted: any
other Ollama on the machine shares it (`ollama rm` removes models one by one). Nor is a file
outside stackctl's directories (a `--config` file of your own, an `api_keys_file` elsewhere):
stackctl cannot know it created it, so it is listed as kept.
"""

from __future__ import annotations

import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

from stackctl import keystore, proc
from stackctl.config import Config
from stackctl.fsutil import tree_size
from stackctl.paths import SERVICE_ACCOUNT, Paths
from stackctl.setup.common import account_ids


@dataclass
class PurgeItem:
    """Something --purge deletes: where, what it is, and how big."""

    path: Path
    what: str
    size_bytes: int


def _ours(path: Path, paths: Paths) -> bool:
    """True when `path` lies in one of stackctl's own directories."""
    return any(
        path.absolute().is_relative_to(d) for d in (paths.config_dir, paths.data_dir, paths.log_dir)
    )


def _user_files(config: Config, config_path: Path) -> list[tuple[Path, str]]:
    """Files the config names, which may live anywhere: the config file and the proxy's keys."""
    files = [(config_path.absolute(), "the config file")]
    if config.proxy.api_keys_file:
        keys = Path(config.proxy.api_keys_file).expanduser().absolute()
        files.append((keys, "the proxy's API keys"))
        files.append((keystore.store_path(keys), "the proxy's named API keys (digests)"))
    return files


def purge_items(config: Config, config_path: Path, paths: Paths) -> list[PurgeItem]:
    """What --purge would delete, most valuable first; only paths that exist, and only in
    stackctl's own directories."""
    candidates: list[tuple[Path, str]] = [
        (paths.openwebui_data, "Open WebUI's data: accounts, chats, uploads"),
        (paths.hf_home, "Hugging Face models downloaded for vLLM"),
    ]
    if paths.scope == "system":
        candidates.append((paths.ollama_models, "Ollama models of the system stack"))
    candidates += [
        (paths.openwebui_venv, "Open WebUI's venv"),
        (paths.vllm_venv, "vLLM's venv"),
        *[(path, what) for path, what in _user_files(config, config_path) if _ours(path, paths)],
        (paths.config_file, "the config file"),
        (paths.secrets_file, "the secrets file"),
        (paths.proxy_keys_file, "the proxy's API keys"),
        (keystore.store_path(paths.proxy_keys_file), "the proxy's named API keys (digests)"),
        (paths.data_dir, "stackctl's data dir (unit records, backups)"),
        (paths.log_dir, "stackctl's logs"),
    ]
    items: list[PurgeItem] = []
    seen: set[Path] = set()
    for path, what in candidates:
        if path in seen or not (path.exists() or path.is_symlink()):
            continue
        seen.add(path)
        items.append(PurgeItem(path, what, tree_size(path)))
    for item in items:  # a directory's size without what is listed inside it (no double count)
        inside = [o for o in items if o is not item and o.path.is_relative_to(item.path)]
        item.size_bytes -= sum(o.size_bytes for o in inside)
    return items


def kept_notes(config: Config, config_path: Path, paths: Paths) -> list[str]:
    """What --purge leaves on purpose, and how to remove it by hand."""
    notes = [
        f"kept {path}: stackctl did not create it (it is outside its directories)"
        for path, _ in _user_files(config, config_path)
        if path.exists() and not _ours(path, paths)
    ]
    if paths.scope == "user" and paths.ollama_models.exists():
        notes.append(
            f"kept {paths.ollama_models}: Ollama's own model store, shared with any other "
            "Ollama here (remove models with `ollama rm MODEL`)"
        )
    return notes


def delete(items: list[PurgeItem]) -> None:
    """Delete each item (directories whole); a path already gone is fine."""
    for item in items:
        path = item.path
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=False)
        else:
            path.unlink(missing_ok=True)
    for item in items:  # the config dir, once emptied of what we wrote
        parent = item.path.parent
        if parent.name == "stackctl" and parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()


def remove_account(paths: Paths) -> str | None:
    """System scope on Linux: delete the service account `up` created. Returns the command."""
    if paths.scope != "system" or paths.platform != "linux":
        return None
    if account_ids() is None:
        return None
    argv = ["userdel", SERVICE_ACCOUNT]
    proc.run(argv)
    return shlex.join(argv)
