"""The host probe: facts about this machine, each read by a small function.

`probe(config, paths)` reads them all (for `doctor` and `up`); `probe_machine()` only the
hardware (for `config init`), `probe_memory()` only what the model fit needs, and
`read_listeners(ports)` only who holds the stack's ports (for `status`). A missing tool is a
fact (None), never a crash; every command runs through `stackctl.proc` with a short timeout.
Who holds ports and which Ollama conflicts with ours lives in `stackctl.probe_processes`;
installed tools (Homebrew, Ollama, vLLM, Open WebUI, Python) in `stackctl.probe_tools`.
"""

from __future__ import annotations

import getpass
import platform as _platform
import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from stackctl import paths as _paths
from stackctl import proc
from stackctl.backend import chosen_backend
from stackctl.output import GIB, gb
from stackctl.probe_nvidia import GPU_QUERY, Gpu, parse_gpu_csv, read_gpus, read_nvidia_header
from stackctl.probe_processes import Conflict, Listener, read_conflicts, read_listeners
from stackctl.probe_tools import (  # TIMEOUT: nvidia-smi can take seconds on a cold driver
    TIMEOUT,
    find_ollama,
    find_uv,
    find_venv_python,
    parse_ollama_version,
    read_brew_prefix,
    read_ollama_version,
    read_venv_version,
)
from stackctl.registry import stack_services

if TYPE_CHECKING:
    from stackctl.config.model import Config
    from stackctl.paths import Paths
    from stackctl.types import Backend, Platform

__all__ = [
    "GPU_QUERY",
    "Conflict",
    "Gpu",
    "HostFacts",
    "Listener",
    "find_ollama",
    "find_venv_python",
    "parse_gpu_csv",
    "parse_ollama_version",
    "probe",
    "probe_machine",
    "probe_memory",
    "read_brew_prefix",
    "read_gpus",
    "read_listeners",
    "read_ollama_version",
    "read_venv_version",
]

# Files read on Linux, module constants so tests can point them elsewhere.
OS_RELEASE = Path("/etc/os-release")
CPUINFO = Path("/proc/cpuinfo")
SYSTEMD_MARKER = Path("/run/systemd/system")  # exists when PID 1 is systemd (sd_booted(3))


@dataclass
class HostFacts:
    """What the probe found. Fields a partial probe did not read keep their defaults."""

    platform: Platform
    os_name: str = ""
    os_version: str = ""
    arch: str = ""
    cpu_brand: str = ""
    apple_silicon: bool = False
    metal: bool = False  # Ollama's Metal acceleration: Apple Silicon only (Intel Macs: CPU)
    ram_total: int = 0  # bytes
    ram_available: int = 0  # bytes
    gpus: list[Gpu] = field(default_factory=list)
    cuda_version: str | None = None  # the highest CUDA the driver supports
    nvidia_error: str | None = None  # nvidia-smi exists but fails (driver not loaded)
    disk_free: int = 0  # bytes free where models live
    models_dir: str = ""  # ... which is here
    init_system: str = "none"  # launchd | systemd | none
    is_root: bool = False
    user: str = ""
    brew_prefix: str | None = None
    ollama_path: str | None = None
    ollama_version: str | None = None
    vllm_version: str | None = None
    openwebui_version: str | None = None
    # a Python 3.11 or 3.12 (absolute path): what the Open WebUI and vLLM venvs are made from
    venv_python: str | None = None
    uv_path: str | None = None
    ports: dict[int, Listener | None] = field(default_factory=dict)
    conflicts: list[Conflict] = field(default_factory=list)
    linger: bool | None = None  # systemd keeps user services after logout (Linux only)
    filevault: bool | None = None  # macOS: the disk stays locked after boot until a login


# --- operating system and CPU -------------------------------------------------------------


def read_os(platform: Platform) -> tuple[str, str]:
    """The OS name and version: `sw_vers` on macOS, /etc/os-release on Linux."""
    if platform == "macos":
        name = proc.output(["sw_vers", "-productName"], timeout=TIMEOUT) or "macOS"
        return name, proc.output(["sw_vers", "-productVersion"], timeout=TIMEOUT) or ""
    values = parse_os_release(_read_text(OS_RELEASE))
    return values.get("NAME", "Linux"), values.get("VERSION_ID", values.get("VERSION", ""))


def parse_os_release(text: str) -> dict[str, str]:
    """KEY=value lines of os-release(5), quotes removed."""
    values = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and key and not key.startswith("#"):
            values[key] = value.strip().strip("\"'")
    return values


def read_arch(platform: Platform, apple_silicon: bool) -> str:
    """The machine architecture. On a Mac, arm64 even for a Python running under Rosetta."""
    return "arm64" if platform == "macos" and apple_silicon else _platform.machine()


def read_cpu_brand(platform: Platform) -> str:
    """The CPU's marketing name ("Apple M2 Pro", "AMD EPYC 7763 64-Core Processor")."""
    if platform == "macos":
        return _sysctl("machdep.cpu.brand_string") or ""
    match = re.search(r"^model name\s*:\s*(.+)$", _read_text(CPUINFO), re.M)
    return match.group(1).strip() if match else _platform.processor()


def read_apple_silicon(platform: Platform) -> bool:
    """True on an Apple Silicon Mac (`sysctl -n hw.optional.arm64` is 1)."""
    return platform == "macos" and _sysctl("hw.optional.arm64") == "1"


def read_memory(platform: Platform) -> tuple[int, int]:
    """RAM total and available, in bytes (macOS total from `sysctl -n hw.memsize`)."""
    import psutil

    memory = psutil.virtual_memory()
    total = memory.total
    if platform == "macos":
        reported = _sysctl("hw.memsize")
        total = int(reported) if reported and reported.isdigit() else total
    return total, min(memory.available, total)


def _sysctl(name: str) -> str | None:
    return proc.output(["sysctl", "-n", name], timeout=TIMEOUT)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


# --- services, tools and installs ---------------------------------------------------------


def read_init_system(platform: Platform) -> str:
    """launchd on macOS; systemd when it booted this machine (sd_booted(3)); else none."""
    if platform == "macos":
        return "launchd"
    return "systemd" if SYSTEMD_MARKER.is_dir() else "none"


def read_user() -> str:
    """The login name stackctl runs as."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return ""


def read_disk_free(path: Path) -> int:
    """Bytes free on the disk that holds path (or its nearest existing parent)."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return 0


def read_filevault() -> bool | None:
    """Whether FileVault is on: `fdesetup status` says "FileVault is On." (fdesetup(8))."""
    text = proc.output(["fdesetup", "status"], timeout=TIMEOUT) or ""
    match = re.search(r"FileVault is (On|Off)", text)
    return match.group(1) == "On" if match else None


def read_linger(user: str) -> bool | None:
    """Whether systemd keeps this user's services running after logout (`loginctl`)."""
    if not user or not proc.which("loginctl"):
        return None
    result = proc.run(["loginctl", "show-user", user, "-p", "Linger"], check=False, timeout=TIMEOUT)
    match = re.search(r"^Linger=(yes|no)\s*$", result.stdout, re.M)
    if match:
        return match.group(1) == "yes"
    # A user with no session who does not linger is unknown to logind: systemd's message is
    # "Failed to get user: User ID 1000 is not logged in or lingering".
    if "not logged in or lingering" in result.stderr:
        return False
    return None


# --- putting it together ------------------------------------------------------------------


def probe_memory(platform: Platform | None = None) -> HostFacts:
    """Only what the model fit needs: Apple Silicon, RAM and NVIDIA GPUs."""
    platform = platform or _paths.current_platform()
    apple = read_apple_silicon(platform)
    total, available = read_memory(platform)
    gpus = read_gpus() if platform == "linux" else []
    return HostFacts(
        platform,
        apple_silicon=apple,
        metal=apple,
        ram_total=total,
        ram_available=available,
        gpus=gpus,
    )


def probe_machine(platform: Platform | None = None) -> HostFacts:
    """The hardware and OS (what `config init` needs), read concurrently."""
    platform = platform or _paths.current_platform()
    with ThreadPoolExecutor(max_workers=4) as pool:
        os_info = pool.submit(read_os, platform)
        cpu = pool.submit(read_cpu_brand, platform)
        header = pool.submit(read_nvidia_header) if platform == "linux" else None
        facts = probe_memory(platform)
        facts.os_name, facts.os_version = os_info.result()
        facts.cpu_brand = cpu.result()
        if header:
            facts.cuda_version, facts.nvidia_error = header.result()
    facts.arch = read_arch(platform, facts.apple_silicon)
    facts.is_root = _paths.is_root()
    facts.user = read_user()
    return facts


def models_dir(config: Config, paths: Paths, backend: Backend) -> Path:
    """Where the backend keeps models: HF_HOME for vLLM, OLLAMA_MODELS or Ollama's default."""
    if backend == "vllm":
        return Path(config.vllm.env.get("HF_HOME", paths.hf_home))
    return Path(config.ollama.env.get("OLLAMA_MODELS", paths.ollama_models)).expanduser()


def probe(config: Config, paths: Paths, backend: Backend | None = None) -> HostFacts:
    """Every fact, for `doctor` and `up`, about the stack this config runs with `backend`
    (None: the one the config's setting means on this host). Slow pieces run concurrently."""
    platform = paths.platform
    with ThreadPoolExecutor(max_workers=6) as pool:
        brew = pool.submit(read_brew_prefix)
        machine = pool.submit(probe_machine, platform)
        uv = pool.submit(find_uv)
        linger = pool.submit(read_linger, read_user()) if platform == "linux" else None
        filevault = pool.submit(read_filevault) if platform == "macos" else None
        brew_prefix = brew.result()
        python = pool.submit(find_venv_python, brew_prefix)
        conflicts = pool.submit(read_conflicts, platform, brew_prefix)
        facts = machine.result()
        ollama = find_ollama(brew_prefix, prefer_brew=platform == "macos")
        version = pool.submit(read_ollama_version, ollama, config.ollama.port) if ollama else None
        backend = backend or chosen_backend(config.backend, platform, facts.gpus)
        ports = [s.port for s in stack_services(config, backend)]
        if config.expose:
            ports.append(config.tls.openwebui_port)  # the front's second port
        facts.ports = read_listeners(ports)
        facts.brew_prefix = brew_prefix
        facts.ollama_path = ollama
        facts.ollama_version = version.result() if version else None
        facts.venv_python = python.result()
        facts.uv_path = uv.result()
        facts.conflicts = conflicts.result()
        facts.linger = linger.result() if linger else None
        facts.filevault = filevault.result() if filevault else None
    where = models_dir(config, paths, backend)
    facts.models_dir = str(where)
    facts.disk_free = read_disk_free(where)
    facts.init_system = read_init_system(platform)
    facts.vllm_version = read_venv_version(paths.vllm_venv, "vllm")
    facts.openwebui_version = read_venv_version(paths.openwebui_venv, "open-webui")
    return facts


def describe_host(facts: HostFacts) -> str:
    """One line for people: 'macOS 14.5 on Apple M2 (arm64), 16 GB unified memory'."""
    ram = gb(facts.ram_total / GIB)
    system = f"{facts.os_name} {facts.os_version}".strip()
    cpu = f"{facts.cpu_brand} ({facts.arch})" if facts.cpu_brand else facts.arch
    if facts.apple_silicon:
        return f"{system} on {cpu}, {ram} GB unified memory (Metal)"
    text = f"{system} on {cpu}, {ram} GB RAM"
    for gpu in facts.gpus:
        text += f", {gpu.name} ({gb(gpu.memory_total_mib / 1024)} GB)"
    return text if facts.gpus or facts.platform == "macos" else text + ", no NVIDIA GPU"
