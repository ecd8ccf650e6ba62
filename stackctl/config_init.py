"""`stackctl config init`: write the commented stack.yaml, tuned to this machine.

The template (`templates/stack.yaml.tmpl`, shipped in the wheel) gets the backend `auto`
would pick here, the scope (system for root), and the largest model that fits (see
`stackctl.catalog`). The text is validated before it is written; the file is written
atomically, and an existing one is only replaced with --force, after a backup.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from stackctl.backend import auto_backend
from stackctl.catalog import Model, recommend
from stackctl.config import validate_text
from stackctl.errors import StackctlError
from stackctl.fsutil import atomic_write, backup
from stackctl.paths import templates_dir
from stackctl.probe import HostFacts, describe_host

TEMPLATE = "stack.yaml.tmpl"


@dataclass
class InitResult:
    """What `config init` wrote."""

    path: Path
    backend: str
    scope: str
    model: Model
    backup: Path | None  # the previous file's copy (with --force)


def fill_template(
    *,
    host_summary: str,
    backend: str,
    scope: str,
    models: Sequence[str],
    vllm_model: str,
    vllm_served_name: str,
) -> str:
    """The commented stack.yaml with these values (model names double-quoted, so any name
    stays a string). `config init` and `up` both write it."""
    template = (templates_dir() / TEMPLATE).read_text(encoding="utf-8")
    return template.format(
        host_summary=host_summary,
        backend=backend,
        scope=scope,
        models=", ".join(json.dumps(m) for m in models),
        vllm_model=vllm_model,
        vllm_served_name=json.dumps(vllm_served_name),
    )


def check_generated(text: str, path: Path, platform: str) -> None:
    """Refuse to write generated config text that does not validate (a bug: the template and
    the values disagree)."""
    _, problems = validate_text(text, str(path), platform)  # type: ignore[arg-type]
    if problems:
        raise StackctlError(
            "the generated config is not valid (please report this):\n  " + "\n  ".join(problems)
        )


def render(facts: HostFacts) -> tuple[str, str, str, Model]:
    """The config text for this host, and the backend, scope and model it chose."""
    backend = auto_backend(facts.platform, facts.gpus)
    scope = "system" if facts.is_root else "user"
    model = recommend(facts, backend)
    text = fill_template(
        host_summary=describe_host(facts),
        backend=backend,
        scope=scope,
        models=[model.ollama],
        vllm_model=model.hf_id,
        vllm_served_name=model.served_name,
    )
    return text, backend, scope, model


def write_config(path: Path, facts: HostFacts, *, force: bool, backups_dir: Path) -> InitResult:
    """Render, validate and write the config; refuse to replace a file without force."""
    if path.exists() and not force:
        raise StackctlError(
            f"{path} already exists: pass --force to replace it (the old file is backed up "
            "first), or check it with `stackctl config validate`"
        )
    text, backend, scope, model = render(facts)
    check_generated(text, path, facts.platform)
    saved = backup(path, backups_dir) if path.exists() else None
    atomic_write(path, text)
    return InitResult(path, backend, scope, model, saved)
