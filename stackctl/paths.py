"""Every location stackctl reads or writes, in one place.

Locations come from platformdirs and depend on the platform (macOS or Linux) and the scope
(`user`: one person's login; `system`: a machine-wide install run as root). Two environment
variables move things for tests and for trying stackctl out safely:

- `STACKCTL_HOME=DIR` puts *every* location under DIR: DIR stands for the home directory,
  and system paths such as `/etc/stackctl` become `DIR/etc/stackctl`.
- `STACKCTL_PLATFORM=macos|linux` makes stackctl plan for that platform (the macOS plan is
  tested on Linux with fake `brew` and `launchctl`).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Platform = Literal["macos", "linux"]
Scope = Literal["user", "system"]

APP = "stackctl"
SERVICE_ACCOUNT = "stackctl"  # the dedicated account system-scope services run as on Linux


def current_platform() -> Platform:
    """The platform stackctl plans for: the real one unless STACKCTL_PLATFORM says otherwise."""
    forced = os.environ.get("STACKCTL_PLATFORM", "").strip().lower()
    if forced in ("macos", "linux"):
        return forced  # type: ignore[return-value]
    return "macos" if sys.platform == "darwin" else "linux"


def is_root() -> bool:
    """True when running as root (system scope by default).

    `STACKCTL_AS_ROOT=0|1` overrides the answer, so tests that run as root can plan for a
    normal user and the other way round.
    """
    forced = os.environ.get("STACKCTL_AS_ROOT")
    if forced in ("0", "1"):
        return forced == "1"
    return hasattr(os, "geteuid") and os.geteuid() == 0


def fake_root() -> Path | None:
    """The STACKCTL_HOME override, or None."""
    value = os.environ.get("STACKCTL_HOME")
    return Path(value).expanduser().absolute() if value else None


def home() -> Path:
    """The home directory stackctl uses (STACKCTL_HOME when set)."""
    return fake_root() or Path.home()


def system_path(path: str) -> Path:
    """An absolute system path, moved under STACKCTL_HOME when that is set."""
    root = fake_root()
    return root / path.lstrip("/") if root else Path(path)


def _user_dirs(platform: Platform) -> dict[str, Path]:
    root = fake_root()
    if platform == "macos":
        if root:
            support = root / "Library/Application Support" / APP
            return {"config": support, "data": support, "logs": root / "Library/Logs" / APP}
        from platformdirs.macos import MacOS

        dirs = MacOS(APP)
        return {
            "config": Path(dirs.user_config_dir),
            "data": Path(dirs.user_data_dir),
            "logs": Path(dirs.user_log_dir),
        }
    if root:
        return {
            "config": root / ".config" / APP,
            "data": root / ".local/share" / APP,
            "logs": root / ".local/state" / APP / "log",
        }
    from platformdirs.unix import Unix

    unix = Unix(APP)
    return {
        "config": Path(unix.user_config_dir),
        "data": Path(unix.user_data_dir),
        "logs": Path(unix.user_log_dir),
    }


def _system_dirs(platform: Platform) -> dict[str, Path]:
    if platform == "macos":
        return {
            "config": system_path("/etc/stackctl"),
            "data": system_path("/Library/Application Support/stackctl"),
            "logs": system_path("/Library/Logs/stackctl"),
        }
    return {
        "config": system_path("/etc/stackctl"),
        "data": system_path("/var/lib/stackctl"),
        "logs": system_path("/var/log/stackctl"),
    }


def unit_dir(platform: Platform, scope: Scope) -> Path:
    """Where service units go: LaunchAgents/LaunchDaemons or a systemd unit directory."""
    if platform == "macos":
        if scope == "system":
            return system_path("/Library/LaunchDaemons")
        return home() / "Library/LaunchAgents"
    if scope == "system":
        return system_path("/etc/systemd/system")
    if fake_root():
        return home() / ".config/systemd/user"
    xdg = os.environ.get("XDG_CONFIG_HOME")
    return (Path(xdg) if xdg else Path.home() / ".config") / "systemd/user"


@dataclass(frozen=True)
class Paths:
    """The locations for one platform and scope."""

    platform: Platform
    scope: Scope
    config_dir: Path
    data_dir: Path
    log_dir: Path
    unit_dir: Path

    @property
    def config_file(self) -> Path:
        return self.config_dir / "stack.yaml"

    @property
    def secrets_file(self) -> Path:
        """Environment file (mode 0600) with every secret the services need."""
        return self.config_dir / "secrets.env"

    @property
    def proxy_keys_file(self) -> Path:
        """Default file (mode 0600) for the proxy's API keys, one a line."""
        return self.config_dir / "proxy-keys"

    @property
    def venvs_dir(self) -> Path:
        return self.data_dir / "venvs"

    @property
    def managed_python(self) -> Path:
        """Where uv keeps the Python it fetches for the venvs when none on the machine fits
        (UV_PYTHON_INSTALL_DIR): inside stackctl's data dir, so the venvs never depend on a
        user's own uv store (which the service account could not even read)."""
        return self.data_dir / "python"

    @property
    def openwebui_venv(self) -> Path:
        return self.venvs_dir / "openwebui"

    @property
    def vllm_venv(self) -> Path:
        return self.venvs_dir / "vllm"

    @property
    def openwebui_data(self) -> Path:
        """Open WebUI's DATA_DIR: its database, uploads and vector store."""
        return self.data_dir / "openwebui"

    @property
    def caddy_data(self) -> Path:
        """The HTTPS front's directory: its Caddyfile, and Caddy's storage (its local CA,
        certificates, ACME account) and XDG dirs, so nothing lands in ~/.local/share/caddy."""
        return self.data_dir / "caddy"

    @property
    def caddy_root_cert(self) -> Path:
        """The root certificate of Caddy's local CA (`tls internal`): what clients trust."""
        return self.caddy_data / "pki/authorities/local/root.crt"

    @property
    def hf_home(self) -> Path:
        """HF_HOME for vLLM: downloaded Hugging Face weights."""
        return self.data_dir / "huggingface"

    @property
    def ollama_models(self) -> Path:
        """Where Ollama keeps models: its own default for a user, our data dir for system."""
        if self.scope == "system":
            return self.data_dir / "ollama" / "models"
        return home() / ".ollama" / "models"

    @property
    def state_file(self) -> Path:
        """What stackctl installed: unit files and their hashes."""
        return self.data_dir / "state.json"

    @property
    def backups_dir(self) -> Path:
        """Copies of files a person edited, taken before stackctl replaced them."""
        return self.data_dir / "backups"


def paths_for(platform: Platform | None = None, scope: Scope = "user") -> Paths:
    """The locations for a platform (default: the current one) and scope."""
    platform = platform or current_platform()
    dirs = _system_dirs(platform) if scope == "system" else _user_dirs(platform)
    return Paths(
        platform=platform,
        scope=scope,
        config_dir=dirs["config"],
        data_dir=dirs["data"],
        log_dir=dirs["logs"],
        unit_dir=unit_dir(platform, scope),
    )


def hf_repo_cache(hf_home: Path, repo: str) -> Path:
    """Where the Hugging Face hub cache keeps a model repo: `hub/models--<org>--<name>`."""
    return hf_home / "hub" / ("models--" + repo.replace("/", "--"))


def default_scope() -> Scope:
    """The scope when none is configured: system for root, else user."""
    return "system" if is_root() else "user"


def default_config_file() -> Path:
    """The config file used without --config or STACKCTL_CONFIG (which click reads):
    /etc/stackctl for root, else the user's."""
    return paths_for(scope=default_scope()).config_file


def templates_dir() -> Path:
    """The unit and config templates: inside the wheel, or at the top of a checkout."""
    packaged = Path(__file__).parent / "templates"
    if packaged.is_dir():
        return packaged
    return Path(__file__).parent.parent / "templates"
