"""`stackctl config init`: a commented config tuned by the probe, validated, never clobbered."""

from __future__ import annotations

import os
import stat

import yaml

from stackctl.config import Config, load
from stackctl.paths import paths_for
from tests.fakes import hosts


def test_init_on_a_16gb_mac(fake_bin, monkeypatch, stackctl) -> None:
    hosts.mac_16gb(fake_bin, monkeypatch)
    path = paths_for("macos").config_file
    result = stackctl("config", "init")
    assert result.code == 0, result.err
    assert result.out == f"wrote {path}: backend ollama, scope user, model gemma3:12b\n"
    text = path.read_text()
    assert "for this machine: macOS 14.5 on Apple M2 (arm64), 16 GB unified memory (Metal)" in text
    assert "\nbackend: ollama\n" in text and '\nmodels: ["gemma3:12b"]\n' in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    config = load(path, "macos")
    assert (config.backend, config.scope, config.models) == ("ollama", "user", ["gemma3:12b"])
    assert (config.vllm.model, config.vllm.served_model_name) == (
        "google/gemma-3-12b-it",
        "gemma3:12b",
    )
    assert stackctl("config", "validate").out == f"{path}: ok\n"
    assert fake_bin.calls("brew") == []  # init reads the hardware only


def test_init_on_a_linux_box_with_a_24gb_gpu(fake_bin, monkeypatch, tmp_path, stackctl) -> None:
    hosts.linux_gpu_24gb(fake_bin, monkeypatch, tmp_path / "host")
    path = tmp_path / "etc" / "stack.yaml"  # --config: a directory that does not exist yet
    result = stackctl("--config", str(path), "config", "init")
    assert result.out == f"wrote {path}: backend vllm, scope user, model gemma3:4b\n"
    config = load(path, "linux")
    assert config.backend == "vllm" and config.models == ["gemma3:4b"]
    assert (config.vllm.model, config.vllm.served_model_name) == (
        "google/gemma-3-4b-it",
        "gemma3:4b",
    )
    assert "NVIDIA GeForce RTX 4090 (24 GB)" in path.read_text().splitlines()[2]


def test_init_as_root_writes_the_system_config(
    fake_bin, monkeypatch, tmp_path, isolated_home, stackctl
) -> None:
    hosts.linux_no_gpu(fake_bin, monkeypatch, tmp_path / "host")
    monkeypatch.setenv("STACKCTL_AS_ROOT", "1")
    result = stackctl("config", "init")
    path = isolated_home / "etc/stackctl/stack.yaml"
    assert result.out == f"wrote {path}: backend ollama, scope system, model gemma3:4b\n"
    assert load(path, "linux").scope == "system"


def test_init_refuses_to_overwrite_and_force_backs_up(fake_bin, monkeypatch, stackctl) -> None:
    hosts.mac_16gb(fake_bin, monkeypatch)
    path = paths_for("macos").config_file
    path.parent.mkdir(parents=True)
    path.write_text("models: [llama3.2:3b]  # mine\n")
    refused = stackctl("config", "init")
    assert refused.code == 1
    assert refused.err == (
        f"Error: {path} already exists: pass --force to replace it (the old file is backed up "
        "first), or check it with `stackctl config validate`\n"
    )
    assert path.read_text() == "models: [llama3.2:3b]  # mine\n"
    forced = stackctl("config", "init", "--force")
    assert forced.code == 0
    backups = list(paths_for("macos").backups_dir.iterdir())
    assert len(backups) == 1 and backups[0].read_text() == "models: [llama3.2:3b]  # mine\n"
    assert forced.out.splitlines() == [
        f"backed up the old file to {backups[0]}",
        f"wrote {path}: backend ollama, scope user, model gemma3:12b",
    ]
    assert "gemma3:12b" in path.read_text()
    leftovers = [n for n in os.listdir(path.parent) if n.endswith(".tmp")]
    assert leftovers == []


def test_every_key_in_the_template_is_known_and_commented(fake_bin, monkeypatch, stackctl) -> None:
    """The written file names every config key (so it documents them) and loads cleanly."""
    hosts.mac_16gb(fake_bin, monkeypatch)
    stackctl("config", "init")
    data = yaml.safe_load(paths_for("macos").config_file.read_text())
    defaults = Config().to_dict()
    assert set(data) == set(defaults)
    for section in ("ollama", "vllm", "openwebui", "proxy"):
        assert set(data[section]) == set(defaults[section]), section
    shown = stackctl("config", "show", "--json")
    assert shown.code == 0 and '"gemma3:12b"' in shown.out
