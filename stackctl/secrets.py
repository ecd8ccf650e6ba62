"""Secrets: generated once, kept in files of mode 0600, never on a command line.

`secrets.env` (next to stack.yaml) is a systemd EnvironmentFile: `NAME=value` lines. It holds
Open WebUI's `WEBUI_SECRET_KEY`, the key Open WebUI uses for the proxy (`OPENAI_API_KEYS`),
`HF_TOKEN` for gated models, and `WEBUI_ADMIN_PASSWORD` for a headless first admin.
"""

from __future__ import annotations

import re
import secrets as _random
import shlex
from collections.abc import Mapping
from pathlib import Path

from stackctl.config.model import PROXY_KEY_PATTERN, ProxySection
from stackctl.errors import StackctlError
from stackctl.fsutil import SECRET_MODE, atomic_write, is_private
from stackctl.secret_names import (
    HF_TOKEN,
    OPENWEBUI_PROXY_KEY,
    RAY_AUTH_TOKEN,
    VLLM_API_KEY,
    WEBUI_ADMIN_EMAIL,
    WEBUI_ADMIN_PASSWORD,
    WEBUI_SECRET_KEY,
)

__all__ = [
    "HF_TOKEN",
    "OPENWEBUI_PROXY_KEY",
    "RAY_AUTH_TOKEN",
    "VLLM_API_KEY",
    "WEBUI_ADMIN_EMAIL",
    "WEBUI_ADMIN_PASSWORD",
    "WEBUI_SECRET_KEY",
    "InsecureSecretFile",
    "ensure_proxy_key",
    "hf_token",
    "new_token",
    "proxy_api_keys",
    "read_env_file",
    "read_key_file",
    "services_environment",
    "write_env_file",
]
_LINE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$")


class InsecureSecretFile(StackctlError):
    """A secret file others can read."""

    def __init__(self, path: Path):
        command = shlex.join(["chmod", "600", str(path)])
        super().__init__(f"{path} holds secrets but others can read it: run `{command}`")


def new_token(prefix: str = "") -> str:
    """A fresh random secret (256 bits), URL- and shell-safe."""
    return prefix + _random.token_urlsafe(32)


def _check_private(path: Path) -> None:
    if not is_private(path):
        raise InsecureSecretFile(path)


def read_env_file(path: Path) -> dict[str, str]:
    """The NAME=value pairs of a secrets file (empty when it does not exist)."""
    if not path.exists():
        return {}
    _check_private(path)
    values: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        match = _LINE.match(line.strip())
        if match:
            values[match.group(1)] = match.group(2).strip().strip("'\"")
    return values


def write_env_file(path: Path, values: dict[str, str]) -> None:
    """Set these secrets in the file, atomically, mode 0600.

    Lines a person added (comments, other variables such as VLLM_API_KEY) are kept where
    they are; only the named variables are replaced, or appended when new.
    """
    if path.exists():
        _check_private(path)
        lines = path.read_text(encoding="utf-8").splitlines()
    else:
        lines = ["# stackctl secrets: mode 0600, read by the services as an EnvironmentFile"]
    pending = dict(values)
    for i, line in enumerate(lines):
        match = _LINE.match(line.strip())
        if match and match.group(1) in pending:
            lines[i] = f"{match.group(1)}={pending.pop(match.group(1))}"
    lines += [f"{name}={value}" for name, value in sorted(pending.items())]
    atomic_write(path, "\n".join(lines) + "\n", SECRET_MODE)


def hf_token(secrets_file: Path, environ: Mapping[str, str]) -> str | None:
    """HF_TOKEN for downloads: the environment's, else the one kept in the secrets file.
    Raises InsecureSecretFile when others can read that file."""
    token = environ.get(HF_TOKEN, "").strip()
    return token or read_env_file(secrets_file).get(HF_TOKEN) or None


def services_environment(secrets_file: Path, environ: Mapping[str, str]) -> dict[str, str]:
    """What the services see: the secrets file (skipped when it cannot be read, e.g. the
    system stack's file to someone who is not root), then the environment."""
    try:
        stored = read_env_file(secrets_file)
    except (StackctlError, OSError):
        stored = {}
    return {**stored, **environ}


class ShortProxyKey(StackctlError):
    """A key in the proxy's key file that breaks the rule inline keys follow."""

    def __init__(self, path: Path, line: int):
        super().__init__(
            f"{path}:{line}: a proxy API key needs at least 8 characters and no spaces: "
            "replace this one (`stackctl up` writes a random key into an empty key file)."
        )


class ReadableInlineKeys(StackctlError):
    """Inline proxy keys in a stack.yaml others can read, for a proxy on the network."""

    def __init__(self, path: Path):
        super().__init__(
            f"{path} holds proxy.api_keys but others can read it, and the proxy would listen "
            f"on the network: run `chmod 600 {path}`, or move the keys to proxy.api_keys_file "
            "(a file of mode 0600)."
        )


def read_key_file(path: Path) -> list[str]:
    """API keys from a key file: one a line; blank lines and `#` comments are skipped. Each
    key follows the rule inline keys do (PROXY_KEY_PATTERN), else ShortProxyKey."""
    if not path.exists():
        return []
    _check_private(path)
    keys = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if line and not line.startswith("#"):
            if not re.match(PROXY_KEY_PATTERN, line):
                raise ShortProxyKey(path, number)
            keys.append(line)
    return keys


def proxy_api_keys(
    proxy: ProxySection, source: Path | None = None, *, exposed: bool = False
) -> list[str]:
    """Every key the proxy accepts: `proxy.api_keys` plus those in `proxy.api_keys_file`.

    For a proxy on the network (`exposed`), keys are only taken from files others cannot
    read: the key file always is one; inline keys need their stack.yaml (`source`) to be
    (ReadableInlineKeys).
    """
    keys = list(proxy.api_keys)
    if keys and exposed and source is not None and source.exists() and not is_private(source):
        raise ReadableInlineKeys(source)
    if proxy.api_keys_file:
        keys += read_key_file(Path(proxy.api_keys_file).expanduser())
    return keys


def ensure_proxy_key(proxy: ProxySection) -> None:
    """Generate a key into `proxy.api_keys_file` when that file is configured and the proxy
    has no key yet (a configured key is never replaced)."""
    if proxy_api_keys(proxy) or not proxy.api_keys_file:
        return
    path = Path(proxy.api_keys_file).expanduser()
    key = new_token("sk-stackctl-")
    atomic_write(path, f"# stackctl proxy API keys, one a line\n{key}\n", SECRET_MODE)
