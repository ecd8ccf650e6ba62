"""The host probe, through fake executables that print what the real ones print."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from stackctl import probe
from stackctl.config import Config
from stackctl.paths import paths_for
from stackctl.probe_processes import read_conflicts, read_listeners
from tests.fakes import hosts
from tests.ports import free_port, wait_for_port

GIB = 1024**3


def test_mac_hardware_comes_from_sw_vers_and_sysctl(fake_bin, monkeypatch) -> None:
    hosts.mac_16gb(fake_bin, monkeypatch)
    facts = probe.probe_machine()
    assert (facts.platform, facts.os_name, facts.os_version) == ("macos", "macOS", "14.5")
    assert (facts.arch, facts.cpu_brand) == ("arm64", "Apple M2")
    assert facts.apple_silicon and facts.metal
    assert facts.ram_total == 16 * GIB
    assert 0 < facts.ram_available <= facts.ram_total
    assert facts.gpus == [] and facts.cuda_version is None
    assert sorted(fake_bin.calls("sysctl")) == [
        ["sysctl", "-n", "hw.memsize"],
        ["sysctl", "-n", "hw.optional.arm64"],
        ["sysctl", "-n", "machdep.cpu.brand_string"],
    ]
    assert sorted(fake_bin.calls("sw_vers")) == [
        ["sw_vers", "-productName"],
        ["sw_vers", "-productVersion"],
    ]
    assert fake_bin.calls("nvidia-smi") == []  # a Mac has no NVIDIA driver to ask


def test_intel_mac_has_no_metal(fake_bin, monkeypatch) -> None:
    hosts.mac_16gb(fake_bin, monkeypatch)
    fake_bin.scenario(
        sysctl={
            "hw.optional.arm64": None,
            "machdep.cpu.brand_string": "Intel(R) Core(TM) i7-9750H CPU @ 2.60GHz",
        }
    )
    facts = probe.probe_machine()
    assert not facts.apple_silicon and not facts.metal
    assert facts.arch == platform.machine()
    assert facts.cpu_brand.startswith("Intel(R) Core(TM) i7")


def test_linux_with_one_24gb_nvidia_gpu(fake_bin, monkeypatch, tmp_path) -> None:
    hosts.linux_gpu_24gb(fake_bin, monkeypatch, tmp_path)
    facts = probe.probe_machine()
    assert (facts.os_name, facts.os_version) == ("Ubuntu", "22.04")
    assert facts.cpu_brand == "AMD EPYC 7763 64-Core Processor"
    assert facts.gpus == [probe.Gpu("NVIDIA GeForce RTX 4090", 24564, 1, "550.54.15")]
    assert facts.cuda_version == "12.4" and facts.nvidia_error is None
    assert not facts.apple_silicon and not facts.metal
    assert ["nvidia-smi", *probe.GPU_QUERY[1:]] in fake_bin.calls("nvidia-smi")
    assert ["nvidia-smi"] in fake_bin.calls("nvidia-smi")
    assert fake_bin.calls("sysctl") == [] and fake_bin.calls("sw_vers") == []


def test_nvidia_driver_that_fails_is_a_fact(fake_bin, monkeypatch, tmp_path) -> None:
    hosts.linux_gpu_24gb(fake_bin, monkeypatch, tmp_path)
    message = (
        "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. "
        "Make sure that the latest NVIDIA driver is installed and running."
    )
    fake_bin.scenario(nvidia_smi_error=message)
    facts = probe.probe_machine()
    assert facts.gpus == [] and facts.cuda_version is None
    assert facts.nvidia_error == message
    assert not probe.read_gpus()


def test_linux_without_nvidia_smi(fake_bin, monkeypatch, tmp_path) -> None:
    hosts.linux_no_gpu(fake_bin, monkeypatch, tmp_path)
    facts = probe.probe_machine()
    assert (facts.os_name, facts.os_version) == ("Debian GNU/Linux", "12")
    assert facts.gpus == [] and facts.cuda_version is None and facts.nvidia_error is None
    assert not probe.read_gpus()


def test_this_machine_probes_without_fakes(monkeypatch) -> None:
    monkeypatch.setenv("STACKCTL_PLATFORM", "linux")
    facts = probe.probe(Config(), paths_for("linux"))
    expected = platform.freedesktop_os_release() if Path("/etc/os-release").exists() else {}
    assert facts.os_name == expected.get("NAME", "Linux")
    assert facts.arch == platform.machine()
    assert facts.ram_total > 0 and facts.disk_free > 0
    assert set(facts.ports) == {11434, 4000, 3000}
    assert facts.init_system in ("systemd", "none")


def test_parse_helpers() -> None:
    assert probe.parse_os_release('NAME="Fedora Linux"\n# comment\nVERSION_ID=40\n') == {
        "NAME": "Fedora Linux",
        "VERSION_ID": "40",
    }
    no_server = (
        "Warning: could not connect to a running Ollama instance\n"
        "Warning: client version is 0.12.10\n"
    )
    assert probe.parse_ollama_version(no_server) == "0.12.10"
    assert probe.parse_ollama_version("ollama version is 0.12.10\n") == "0.12.10"
    # A server of another version answers: the installed binary is the client.
    both = "ollama version is 0.9.0\nWarning: client version is 0.12.10\n"
    assert probe.parse_ollama_version(both) == "0.12.10"
    assert probe.parse_ollama_version("Error: unknown flag") is None
    rows = (
        "NVIDIA A100-SXM4-80GB, 81920, 4, 535.129.03\nNVIDIA A100-SXM4-80GB, 81920, 0, 535.129.03\n"
    )
    assert [g.memory_total_mib for g in probe.parse_gpu_csv(rows)] == [81920, 81920]


def test_ollama_version_without_a_server(fake_bin) -> None:
    fake_bin.scenario(ollama_version="0.9.0")
    port = free_port()
    assert probe.read_ollama_version("ollama", port) == "0.9.0"
    assert fake_bin.calls("ollama") == [["ollama", "--version"]]


def test_fake_ollama_serve_answers_version(fake_bin) -> None:
    """`ollama serve` runs the fake API on OLLAMA_HOST; `--version` then asks it."""
    port = free_port()
    home = fake_bin.state.parent / "home"
    env = {**os.environ, "OLLAMA_HOST": f"127.0.0.1:{port}", "HOME": str(home)}
    server = subprocess.Popen([str(fake_bin.bin / "ollama"), "serve"], env=env)
    try:
        wait_for_port(port)
        out = subprocess.run(
            ["ollama", "--version"], env=env, capture_output=True, text=True, check=True
        ).stdout
        assert out.startswith("ollama version is ")
        assert probe.read_ollama_version("ollama", port) == "0.12.10"
    finally:
        hosts.stop(server)
    assert ["ollama", "serve"] in fake_bin.calls("ollama")
    assert (fake_bin.state / "ollama").is_dir()
    # what the real `ollama serve` writes: its key pair and the model store's directories
    assert (home / ".ollama/id_ed25519").stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in (home / ".ollama/models").iterdir()) == ["blobs", "manifests"]


def test_venv_versions_come_from_dist_info(tmp_path) -> None:
    venv = tmp_path / "venv"
    site = venv / "lib/python3.12/site-packages"
    (site / "open_webui-0.6.5.dist-info").mkdir(parents=True)
    (site / "open_webui-0.6.5.dist-info/METADATA").write_text("Name: open-webui\nVersion: 0.6.5\n")
    (site / "vllm-0.10.1.dist-info").mkdir()
    (site / "vllm-0.10.1.dist-info/METADATA").write_text("Name: vllm\nVersion: 0.10.1\n")
    assert probe.read_venv_version(venv, "open-webui") == "0.6.5"
    assert probe.read_venv_version(venv, "vllm") == "0.10.1"
    assert probe.read_venv_version(venv, "torch") is None
    assert probe.read_venv_version(tmp_path / "missing", "vllm") is None


def test_venv_python(fake_bin, monkeypatch) -> None:
    hosts.only_fakes_on_path(fake_bin, monkeypatch)
    assert probe.find_venv_python(None) == str(fake_bin.bin / "python3.11")
    fake_bin.remove("python3.11")
    assert probe.find_venv_python(None) == str(fake_bin.bin / "python3.12")
    fake_bin.remove("python3.12")
    assert probe.find_venv_python(None) is None
    # Homebrew's keg-only python@3.12 is found through the brew prefix.
    subprocess.run(["brew", "install", "python@3.12"], check=True, capture_output=True)
    prefix = probe.read_brew_prefix()
    keg = Path(prefix, "opt/python@3.12/bin/python3.12")
    assert keg.is_file()
    assert probe.find_venv_python(prefix) == str(keg)


def test_brew_prefix_and_ollama_from_homebrew(fake_bin, monkeypatch) -> None:
    hosts.only_fakes_on_path(fake_bin, monkeypatch)
    fake_bin.remove("ollama")
    prefix = probe.read_brew_prefix()
    assert prefix == str(fake_bin.bin.parent / "homebrew")
    assert probe.find_ollama(prefix) is None
    subprocess.run(["brew", "install", "ollama"], check=True, capture_output=True)
    assert probe.find_ollama(prefix) == f"{prefix}/bin/ollama"
    fake_bin.scenario(ollama_version="0.13.0")
    assert probe.read_ollama_version(f"{prefix}/bin/ollama", free_port()) == "0.13.0"
    assert fake_bin.calls("ollama") == [["ollama", "--version"]]  # recorded like the fake on PATH


def test_init_system_and_linger(fake_bin, monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(probe, "SYSTEMD_MARKER", tmp_path / "absent")
    assert probe.read_init_system("linux") == "none"
    assert probe.read_init_system("macos") == "launchd"
    (tmp_path / "present").mkdir()
    monkeypatch.setattr(probe, "SYSTEMD_MARKER", tmp_path / "present")
    assert probe.read_init_system("linux") == "systemd"
    fake_bin.scenario(linger={"alice": "yes", "bob": "no"})
    assert probe.read_linger("alice") is True
    assert probe.read_linger("bob") is False
    assert probe.read_linger("carol") is False  # "not logged in or lingering"
    assert fake_bin.calls("loginctl")[0] == ["loginctl", "show-user", "alice", "-p", "Linger"]


def test_disk_free_looks_at_the_nearest_existing_parent(tmp_path) -> None:
    assert probe.read_disk_free(tmp_path / "not/yet/there") == probe.read_disk_free(tmp_path) > 0


def test_listeners_name_the_process_and_know_our_own() -> None:
    free, theirs, ours = free_port(), free_port(), free_port()
    other = hosts.listen(theirs)
    mine = hosts.listen(ours, "-m", "stackctl", "proxy", "serve")
    try:
        found = read_listeners([free, theirs, ours])
    finally:
        hosts.stop(other)
        hosts.stop(mine)
    assert found[free] is None
    assert found[theirs] is not None and found[theirs].pid == other.pid
    assert found[theirs].name == Path(sys.executable).name or found[theirs].name.startswith(
        "python"
    )
    assert not found[theirs].ours
    assert found[ours] is not None and found[ours].pid == mine.pid and found[ours].ours


def test_conflicting_ollamas(fake_bin, monkeypatch, tmp_path, isolated_home) -> None:
    hosts.only_fakes_on_path(fake_bin, monkeypatch)
    assert read_conflicts("macos", None) == []
    # Ollama.app's server runs from inside the app bundle.
    app = hosts.listen(
        free_port(),
        "serve",
        script=tmp_path / "Applications/Ollama.app/Contents/Resources/ollama",
    )
    fake_bin.scenario(brew_services={"ollama": "started"})
    try:
        conflicts = read_conflicts("macos", "/opt/homebrew")
        # The menu-bar app exists on macOS only: on Linux such a path is someone's own program.
        on_linux = read_conflicts("linux", None)
    finally:
        hosts.stop(app)
    assert on_linux == []
    assert [(c.name, c.stop_command, c.pid) for c in conflicts] == [
        ("Ollama.app", "osascript -e 'quit app \"Ollama\"'", app.pid),
        ("homebrew.mxcl.ollama", "brew services stop ollama", None),
    ]
    assert fake_bin.calls("brew") == [["brew", "services", "list"]]
    # Linux: the unit Ollama's install.sh writes and enables.
    units = isolated_home / "etc/systemd/system"
    (units / "default.target.wants").mkdir(parents=True)
    (units / "ollama.service").write_text("[Service]\nExecStart=/usr/local/bin/ollama serve\n")
    assert read_conflicts("linux", None) == []  # written but not enabled: no conflict
    (units / "default.target.wants/ollama.service").symlink_to(units / "ollama.service")
    assert [c.stop_command for c in read_conflicts("linux", None)] == [
        "sudo systemctl disable --now ollama"
    ]


def test_full_probe_on_the_mac(fake_bin, monkeypatch) -> None:
    hosts.mac_16gb(fake_bin, monkeypatch)
    fake_bin.scenario(ollama_version="0.12.10", brew_services={"ollama": "none"})
    config = Config()
    config.ollama.port, config.proxy.port, config.openwebui.port = (
        free_port(),
        free_port(),
        free_port(),
    )
    facts = probe.probe(config, paths_for("macos"))
    assert facts.brew_prefix == str(fake_bin.bin.parent / "homebrew")
    assert facts.ollama_path == str(fake_bin.bin / "ollama")
    assert facts.ollama_version == "0.12.10"
    assert facts.init_system == "launchd" and facts.linger is None
    assert facts.venv_python is None and facts.uv_path == str(fake_bin.bin / "uv")
    assert facts.conflicts == []
    assert facts.ports == {
        config.ollama.port: None,
        config.proxy.port: None,
        config.openwebui.port: None,
    }
    assert facts.models_dir.endswith(".ollama/models")
    assert (facts.user, facts.is_root) == ("alice", False)
    assert ["brew", "--prefix"] in fake_bin.calls("brew")
    assert ["brew", "services", "list"] in fake_bin.calls("brew")
    assert fake_bin.calls("loginctl") == []  # linger is a Linux matter


@pytest.mark.parametrize("backend", ["ollama", "vllm"])
def test_models_dir_follows_the_backend_and_env(backend, tmp_path) -> None:
    paths = paths_for("linux")
    config = Config()
    expected = paths.hf_home if backend == "vllm" else paths.ollama_models
    assert probe.models_dir(config, paths, backend) == expected
    config.ollama.env["OLLAMA_MODELS"] = str(tmp_path / "models")
    config.vllm.env["HF_HOME"] = str(tmp_path / "hf")
    assert probe.models_dir(config, paths, backend) == tmp_path / (
        "hf" if backend == "vllm" else "models"
    )
