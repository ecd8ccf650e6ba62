"""Everything a unit needs from the machine, gathered in one dataclass before rendering.

`inputs_for_host` looks the real things up (executables, accounts, secrets); `inputs_for_golden`
is deterministic (placeholder home `/Users/alice` or `/home/alice`, user `alice`) and renders
the golden examples in `launchd/` and `systemd/`.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from stackctl.config.model import Config
from stackctl.errors import StackctlError
from stackctl.paths import SERVICE_ACCOUNT, Paths, current_platform, fake_root, paths_for
from stackctl.probe_tools import find_ollama, read_brew_prefix
from stackctl.secrets import (
    OPENWEBUI_PROXY_KEY,
    RAY_AUTH_TOKEN,
    WEBUI_ADMIN_EMAIL,
    WEBUI_ADMIN_PASSWORD,
    WEBUI_SECRET_KEY,
    read_env_file,
)
from stackctl.types import Backend, Platform, Scope

if TYPE_CHECKING:
    from stackctl.stack import Stack

LINUX_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"  # systemd's default
MACOS_SYSTEM_PATH = "/usr/bin:/bin:/usr/sbin:/sbin"
DEFAULT_BREW_PREFIX = Path("/opt/homebrew")  # Apple Silicon; Intel Macs use /usr/local


@dataclass(frozen=True)
class RenderInputs:
    """The machine-specific values units are rendered from.

    `user`/`group`/`home`: for system scope the account the services run as (Linux: the
    dedicated `stackctl` account with HOME = the data dir; macOS: the person who ran sudo) and
    the HOME they get; for user scope the person's own. `secrets` is used by launchd only
    (launchd has no EnvironmentFile, so a plist that needs a secret holds it and is 0600).
    """

    platform: Platform
    scope: Scope
    backend: Backend  # what the proxy and Open WebUI depend on
    paths: Paths
    user: str
    group: str
    home: Path
    ollama_bin: Path | None  # None: not installed (rendering the ollama unit then fails)
    python: Path  # the interpreter stackctl runs under: the proxy runs `python -m stackctl`
    openwebui_venv: Path
    vllm_venv: Path
    config_path: Path
    brew_prefix: Path | None = None  # macOS: `brew --prefix`, its bin/ goes on PATH
    secrets: Mapping[str, str] = field(default_factory=dict)
    gpu_count: int = 0  # NVIDIA GPUs here: what a cluster node declares to Ray (--num-gpus)

    @property
    def base_path(self) -> str:
        """PATH for every service: launchd and systemd give jobs a minimal one of their own."""
        if self.platform == "linux":
            return LINUX_PATH
        brew_bin = str((self.brew_prefix or DEFAULT_BREW_PREFIX) / "bin")
        return ":".join(dict.fromkeys([brew_bin, "/usr/local/bin", *MACOS_SYSTEM_PATH.split(":")]))


def inputs_for_host(
    stack: Stack, *, preview: bool = False, brew_prefix: Path | None = None
) -> RenderInputs:
    """Inputs for this machine's stack: real executables, accounts and (launchd) secret
    values. The stack may be planned for another platform (`units render --platform`).

    `preview=True` (for `stackctl units render`) never fails on a missing executable or
    account, uses typical paths instead, and puts placeholders where secrets would go.
    `brew_prefix`, when the caller already knows it (`up` has probed the host), saves asking
    brew again.
    """
    platform, scope, paths = stack.platform, stack.scope, stack.paths
    host = current_platform()
    if platform == "macos" and brew_prefix is None:
        found = read_brew_prefix() if platform == host else None
        brew_prefix = Path(found) if found else DEFAULT_BREW_PREFIX
    user, group, home = _account(platform, scope, paths, preview)
    return RenderInputs(
        platform=platform,
        scope=scope,
        backend=stack.backend,
        paths=paths,
        user=user,
        group=group,
        home=home,
        ollama_bin=_ollama_bin(platform, brew_prefix, look=platform == host, preview=preview),
        python=Path(sys.executable),
        openwebui_venv=paths.openwebui_venv,
        vllm_venv=paths.vllm_venv,
        config_path=stack.config_path.expanduser().absolute(),
        brew_prefix=brew_prefix,
        secrets=_secrets(stack.config, paths, platform, preview),
        gpu_count=_gpu_count(stack, look=platform == host, preview=preview),
    )


GOLDEN_GPUS = {"linux": 2, "macos": 0}  # a typical cluster node: two NVIDIA GPUs; a Mac none


def inputs_for_golden(
    platform: Platform, scope: Scope, config: Config | None = None
) -> RenderInputs:
    """Deterministic inputs for the golden examples: the default config (or `config`, for
    the cluster's examples) on a typical machine."""
    config = config or Config()
    alice = Path("/Users/alice" if platform == "macos" else "/home/alice")
    with pinned_home(alice if scope == "user" else None):
        paths = paths_for(platform, scope)
    system_linux = platform == "linux" and scope == "system"
    return RenderInputs(
        platform=platform,
        scope=scope,
        backend="ollama" if platform == "macos" else "vllm",
        paths=paths,
        user=SERVICE_ACCOUNT if system_linux else "alice",
        group=SERVICE_ACCOUNT if system_linux else ("staff" if platform == "macos" else "alice"),
        home=paths.data_dir if system_linux else alice,
        ollama_bin=Path(
            "/opt/homebrew/bin/ollama" if platform == "macos" else "/usr/local/bin/ollama"
        ),
        python=Path("/usr/bin/python3"),
        openwebui_venv=paths.openwebui_venv,
        vllm_venv=paths.vllm_venv,
        config_path=paths.config_file,
        brew_prefix=DEFAULT_BREW_PREFIX if platform == "macos" else None,
        secrets=placeholder_secrets(config, paths) if platform == "macos" else {},
        gpu_count=GOLDEN_GPUS[platform],
    )


@contextlib.contextmanager
def pinned_home(home: Path | None) -> Iterator[None]:
    """Compute paths as if HOME were `home` (None: the real system locations).

    paths.py moves every location under STACKCTL_HOME; pinning it (and clearing
    XDG_CONFIG_HOME) is how the golden examples get `/home/alice` whatever machine renders them.
    """
    saved = {name: os.environ.get(name) for name in ("STACKCTL_HOME", "XDG_CONFIG_HOME")}
    os.environ.pop("XDG_CONFIG_HOME", None)
    if home is None:
        os.environ.pop("STACKCTL_HOME", None)
    else:
        os.environ["STACKCTL_HOME"] = str(home)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def placeholder_secrets(config: Config, paths: Paths) -> dict[str, str]:
    """Stand-ins naming where each secret lives, for previews and the golden examples."""
    names = [WEBUI_SECRET_KEY, OPENWEBUI_PROXY_KEY]
    if config.openwebui.admin_email or config.expose:
        names += [WEBUI_ADMIN_EMAIL, WEBUI_ADMIN_PASSWORD]
    if config.cluster is not None:
        names.append(RAY_AUTH_TOKEN)
    return {name: f"*** {name} from {paths.secrets_file.name} ***" for name in names}


def _gpu_count(stack: Stack, *, look: bool, preview: bool) -> int:
    """The GPUs this node gives its cluster (none outside a cluster or on a Mac); a preview
    planned on a machine without them shows one."""
    if stack.config.cluster is None or stack.platform != "linux":
        return 0
    from stackctl.probe_nvidia import read_gpus

    found = len(read_gpus()) if look else 0
    return max(found, 1) if preview else found


def _secrets(config: Config, paths: Paths, platform: Platform, preview: bool) -> dict[str, str]:
    if platform != "macos":
        return {}  # systemd units read the 0600 secrets file themselves (EnvironmentFile=)
    if preview:
        return placeholder_secrets(config, paths)

    return read_env_file(paths.secrets_file)


def _ollama_bin(
    platform: Platform, brew_prefix: Path | None, *, look: bool, preview: bool
) -> Path | None:
    """The ollama executable: on PATH, else Homebrew's (macOS); a typical path for previews."""
    typical = (
        (brew_prefix or DEFAULT_BREW_PREFIX) / "bin/ollama"
        if platform == "macos"
        else Path("/usr/local/bin/ollama")
    )
    if look:
        # brew's bin/ may not be on PATH under sudo or in a bare shell
        brew = str(brew_prefix or DEFAULT_BREW_PREFIX) if platform == "macos" else None
        found = find_ollama(brew, prefer_brew=platform == "macos")
        if found:
            return Path(found).absolute()
    return typical if preview or not look else None


def _account(
    platform: Platform, scope: Scope, paths: Paths, preview: bool
) -> tuple[str, str, Path]:
    """(user, group, HOME) the services run with."""
    if scope == "system" and platform == "linux":
        # The dedicated account (created by `stackctl up`); HOME is the data dir, which the
        # hardened units may write (ProtectSystem=strict + ReadWritePaths=).
        return SERVICE_ACCOUNT, SERVICE_ACCOUNT, paths.data_dir
    if scope == "system":
        # macOS: launchd's UserName is the person who ran `sudo stackctl up`: Ollama needs a
        # real account for Metal and ~/.ollama, and creating a hidden account takes dscl surgery.
        name = os.environ.get("SUDO_USER", "")
        if not name or name == "root":
            if not preview:
                raise StackctlError(
                    "system scope on macOS runs the services as the account that ran sudo: "
                    "run `sudo stackctl up` from that account (not from a root shell)"
                )
            name = getpass.getuser()  # a preview shows the plist for whoever asks
        return _lookup_account(name, preview)
    return _lookup_account(getpass.getuser(), True)


def _lookup_account(name: str, lenient: bool) -> tuple[str, str, Path]:
    try:
        import grp
        import pwd

        entry = pwd.getpwnam(name)
        group = grp.getgrgid(entry.pw_gid).gr_name
        home = Path(entry.pw_dir)
    except (ImportError, KeyError):
        if not lenient:
            raise StackctlError(f"there is no account named '{name}' on this machine") from None
        group, home = "staff", Path("/Users") / name
    return name, group, fake_root() or home
