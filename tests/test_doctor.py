"""`stackctl doctor`: findings asserted through --json, on fake hosts and this one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stackctl import catalog, probe
from stackctl.cli import main
from stackctl.install_commands import ollama_linux_install
from stackctl.paths import paths_for
from stackctl.probe import HostFacts
from tests.fakes import hosts
from tests.ports import free_port


@pytest.fixture
def ports() -> dict[str, int]:
    """Free ports for the stack, so nothing else on this machine is in the way."""
    return {name: free_port() for name in ("ollama", "vllm", "proxy", "openwebui")}


def write_config(home: Path, ports: dict[str, int], extra: str = "", vllm: str = "") -> Path:
    """stack.yaml with every service on a free port (vllm: more keys for the vllm section)."""
    path = home / "stack.yaml"
    path.write_text(
        f"ollama: {{port: {ports['ollama']}}}\nvllm: {{port: {ports['vllm']}{vllm}}}\n"
        f"proxy: {{port: {ports['proxy']}}}\nopenwebui: {{port: {ports['openwebui']}}}\n" + extra
    )
    return path


def doctor(stackctl, config: Path) -> tuple[int, dict, dict[str, list[dict]]]:
    result = stackctl("--config", str(config), "doctor", "--json")
    report = json.loads(result.out)
    by_check: dict[str, list[dict]] = {}
    for finding in report["findings"]:
        by_check.setdefault(finding["check"], []).append(finding)
    return result.code, report, by_check


def texts(by_check: dict[str, list[dict]], check: str) -> list[tuple[str, str]]:
    return [(f["severity"], f["text"]) for f in by_check.get(check, [])]


@pytest.fixture
def plenty_of_disk(monkeypatch) -> None:
    monkeypatch.setattr(probe, "read_disk_free", lambda path: 500 * 10**9)


def test_mac_16gb_with_ollama_app_and_an_old_ollama(
    fake_bin, monkeypatch, stackctl, isolated_home, tmp_path, ports, plenty_of_disk
) -> None:
    hosts.mac_16gb(fake_bin, monkeypatch)
    fake_bin.scenario(ollama_version="0.9.0", brew_services={"ollama": "started"})
    config = write_config(isolated_home, ports, "models: [gemma3:27b]\n")
    app = hosts.listen(
        ports["ollama"],
        "serve",
        script=tmp_path / "Applications/Ollama.app/Contents/Resources/ollama",
    )
    try:
        code, report, found = doctor(stackctl, config)
    finally:
        hosts.stop(app)
    assert code == 1
    assert report["facts"]["platform"] == "macos" and report["facts"]["apple_silicon"] is True
    assert texts(found, "config") == [("ok", f"{config} is valid")]
    assert texts(found, "host") == [
        ("ok", "macOS 14.5 on Apple M2 (arm64), 16 GB unified memory (Metal)")
    ]
    assert texts(found, "backend") == [("ok", "backend ollama (auto: macOS)")]
    assert texts(found, "ollama") == [
        (
            "warn",
            "Ollama 0.9.0 is older than 0.12.10; the proxy cannot use: tool_name on tool "
            "results, tool call ids: upgrade it: `brew upgrade ollama`",
        )
    ]
    assert texts(found, "python") == [
        (
            "ok",
            "no Python 3.11/3.12 here: `stackctl up` has uv fetch CPython 3.12 for Open WebUI",
        )
    ]
    quit_app = "osascript -e 'quit app \"Ollama\"'"
    assert [f["fix"] for f in found["conflict"]] == [
        f"stop it: `{quit_app}`",
        "stop it: `brew services stop ollama`",
    ]
    assert texts(found, "port")[0] == (
        "error",
        f"port {ports['ollama']} is taken by Ollama.app (pid {app.pid}): quit it "
        f"(`{quit_app}`), or set ollama.port",
    )
    assert texts(found, "model") == [
        (
            "warn",
            "gemma3:27b needs about 20 GB; this Mac has 16 GB, about 11 GB of it usable by "
            "the GPU: use gemma3:12b (set models: [gemma3:12b])",
        )
    ]
    assert texts(found, "services") == [("ok", "launchd runs the stack (user scope)")]
    assert "linger" not in found


def test_conflicts_are_errors_when_ours_uses_11434(
    fake_bin, monkeypatch, stackctl, isolated_home, ports, plenty_of_disk
) -> None:
    hosts.mac_16gb(fake_bin, monkeypatch, pythons=True)
    fake_bin.scenario(brew_services={"ollama": "started"})
    config = write_config(isolated_home, ports)
    config.write_text(config.read_text().replace(f"port: {ports['ollama']}", "port: 11434"))
    code, _, found = doctor(stackctl, config)
    assert code == 1
    assert texts(found, "conflict") == [
        (
            "error",
            "Homebrew's ollama service (brew services) is running; it serves on port 11434 and "
            "restarts at login: stop it: `brew services stop ollama`",
        )
    ]


def test_linux_with_one_24gb_gpu_and_the_default_27b(
    fake_bin, monkeypatch, stackctl, isolated_home, tmp_path, ports, plenty_of_disk
) -> None:
    hosts.linux_gpu_24gb(fake_bin, monkeypatch, tmp_path / "host")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    config = write_config(isolated_home, ports)
    code, report, found = doctor(stackctl, config)
    paths = paths_for("linux")
    assert code == 1
    assert report["facts"]["gpus"] == [
        {
            "name": "NVIDIA GeForce RTX 4090",
            "memory_total_mib": 24564,
            "memory_used_mib": 1,
            "driver_version": "550.54.15",
        }
    ]
    assert texts(found, "backend") == [("ok", "backend vllm (auto: NVIDIA GPU found)")]
    assert texts(found, "nvidia") == [("ok", "NVIDIA driver 550.54.15, CUDA 12.4")]
    assert texts(found, "vllm") == [
        ("ok", f"vLLM is not installed yet: `stackctl up` installs it into {paths.vllm_venv}")
    ]
    assert texts(found, "python") == [
        ("ok", f"Python for Open WebUI: {fake_bin.bin / 'python3.11'}")
    ]
    assert texts(found, "model") == [
        (
            "error",
            "google/gemma-3-27b-it needs about 64 GB; this machine's GPU has 24 GB, about 22 GB "
            "of it usable: use google/gemma-3-4b-it (set vllm.model: google/gemma-3-4b-it and "
            "vllm.served_model_name: gemma3:4b), or backend: ollama, where gemma3:27b fits",
        )
    ]
    assert texts(found, "linger") == [
        (
            "warn",
            "user services stop when you log out (linger off): run `loginctl enable-linger alice`",
        )
    ]
    assert texts(found, "huggingface") == [
        (
            "warn",
            "google/gemma-3-27b-it is gated on Hugging Face: downloading it needs HF_TOKEN: "
            "accept its licence at https://huggingface.co/google/gemma-3-27b-it, then put "
            f"HF_TOKEN=<your token> in {paths.secrets_file} (mode 0600)",
        )
    ]
    assert [f["severity"] for f in found["port"]] == ["ok", "ok", "ok"]
    # With the token in secrets.env (0600) and a model that fits, nothing is an error.
    paths.secrets_file.parent.mkdir(parents=True)
    paths.secrets_file.write_text("HF_TOKEN=hf_example\n")
    paths.secrets_file.chmod(0o600)
    smaller = ", model: google/gemma-3-4b-it, served_model_name: gemma3:4b"
    config = write_config(isolated_home, ports, vllm=smaller)
    code, _, found = doctor(stackctl, config)
    assert "huggingface" not in found
    assert texts(found, "model")[0][0] == "ok"
    assert code == 0, found


def test_two_gpus_need_tensor_parallel(
    fake_bin, monkeypatch, stackctl, isolated_home, tmp_path, ports, plenty_of_disk
) -> None:
    hosts.linux_gpu_24gb(fake_bin, monkeypatch, tmp_path / "host")
    fake_bin.scenario(gpus=[hosts.RTX_4090, hosts.RTX_4090])
    _, _, found = doctor(stackctl, write_config(isolated_home, ports))
    assert texts(found, "vllm")[0] == (
        "warn",
        'this machine has 2 GPUs and vLLM uses one unless told: add ["--tensor-parallel-size", '
        '"2"] to vllm.args',
    )


def test_vllm_without_nvidia_smi(
    fake_bin, monkeypatch, stackctl, isolated_home, tmp_path, ports
) -> None:
    hosts.linux_no_gpu(fake_bin, monkeypatch, tmp_path / "host")
    config = write_config(isolated_home, ports, "backend: vllm\n")
    code, _, found = doctor(stackctl, config)
    assert code == 1
    assert texts(found, "nvidia") == [
        (
            "error",
            "backend vllm needs an NVIDIA driver: nvidia-smi not found: install the NVIDIA "
            "driver, or set backend: ollama",
        )
    ]


def test_vllm_with_a_driver_too_old_for_cuda_12(
    fake_bin, monkeypatch, stackctl, isolated_home, tmp_path, ports
) -> None:
    hosts.linux_gpu_24gb(fake_bin, monkeypatch, tmp_path / "host")
    fake_bin.scenario(cuda_version="11.4")
    _, _, found = doctor(stackctl, write_config(isolated_home, ports))
    assert texts(found, "nvidia") == [
        (
            "error",
            "vLLM's wheels are built for CUDA 12 and this driver supports only CUDA 11.4: "
            "upgrade the NVIDIA driver",
        )
    ]


def test_a_healthy_linux_box_without_gpu_exits_0(
    fake_bin, monkeypatch, stackctl, isolated_home, tmp_path, ports, plenty_of_disk
) -> None:
    hosts.linux_no_gpu(fake_bin, monkeypatch, tmp_path / "host")
    fake_bin.scenario(linger={"alice": "yes"})
    code, report, found = doctor(stackctl, write_config(isolated_home, ports))
    assert code == 0, report["findings"]
    assert {f["severity"] for f in report["findings"]} == {"ok"}
    assert texts(found, "ollama") == [("ok", f"Ollama 0.12.10 at {fake_bin.bin / 'ollama'}")]
    facts = HostFacts("linux", ram_total=report["facts"]["ram_total"])
    best = catalog.recommend(facts, "ollama")
    assert texts(found, "model") == [
        (
            "ok",
            f"{best.ollama} needs about {catalog.gb(best.memory_gb)} GB; "
            + catalog.memory_budget(facts).describe(),
        )
    ]
    assert texts(found, "services") == [("ok", "systemd runs the stack (user scope)")]
    # The human form: facts, findings, a tally; and the real entry point's exit code.
    human = stackctl("--config", str(isolated_home / "stack.yaml"), "doctor")
    assert human.code == 0
    assert "ollama            0.12.10 at " in human.out
    assert human.out.rstrip().endswith("0 errors, 0 warnings")
    main(["--config", str(isolated_home / "stack.yaml"), "doctor", "--json"])  # no SystemExit


def test_linux_without_ollama_or_systemd(
    fake_bin, monkeypatch, stackctl, isolated_home, tmp_path, ports
) -> None:
    hosts.linux_no_gpu(fake_bin, monkeypatch, tmp_path / "host")
    fake_bin.remove("ollama")
    monkeypatch.setattr(probe, "SYSTEMD_MARKER", tmp_path / "no-systemd")
    code, _, found = doctor(stackctl, write_config(isolated_home, ports))
    assert code == 1
    assert texts(found, "ollama") == [
        (
            "error",
            "Ollama is not installed: install the binary (Ollama's manual install): "
            f"`{ollama_linux_install()}`, then run `stackctl up`",
        )
    ]
    assert texts(found, "services")[0][0] == "error"
    assert texts(found, "services")[0][1].startswith(
        "no service manager: this Linux was not booted with systemd"
    )
    with pytest.raises(SystemExit) as exit_:
        main(["--config", str(isolated_home / "stack.yaml"), "doctor", "--json"])
    assert exit_.value.code == 1


def test_ports_held_by_our_stack_or_someone_else(
    fake_bin, monkeypatch, stackctl, isolated_home, tmp_path, ports, plenty_of_disk
) -> None:
    hosts.linux_no_gpu(fake_bin, monkeypatch, tmp_path / "host")
    ours = hosts.listen(ports["proxy"], "-m", "stackctl", "proxy", "serve")
    theirs = hosts.listen(ports["openwebui"])
    try:
        code, report, found = doctor(stackctl, write_config(isolated_home, ports))
    finally:
        hosts.stop(ours)
        hosts.stop(theirs)
    name = report["facts"]["ports"][str(ports["openwebui"])]["name"]
    assert code == 1
    assert texts(found, "port") == [
        ("ok", f"port {ports['ollama']} (ollama) is free"),
        ("ok", f"port {ports['proxy']} is held by stackctl's own proxy (pid {ours.pid})"),
        (
            "error",
            f"port {ports['openwebui']} is taken by {name} (pid {theirs.pid}): stop it, or set "
            "openwebui.port",
        ),
    ]


def test_bad_config_is_reported_and_the_machine_still_checked(
    fake_bin, monkeypatch, stackctl, isolated_home, tmp_path
) -> None:
    hosts.linux_no_gpu(fake_bin, monkeypatch, tmp_path / "host")
    config = isolated_home / "stack.yaml"
    config.write_text("proxy:\n  prot: 4000\n")
    code, report, found = doctor(stackctl, config)
    assert code == 1
    assert texts(found, "config") == [
        (
            "error",
            f"{config}:2: unknown key 'prot' in proxy; did you mean 'port'?: fix it, then run "
            "`stackctl config validate`",
        )
    ]
    assert report["facts"]["os_name"] == "Debian GNU/Linux"


def test_disk_too_small_for_the_models(
    fake_bin, monkeypatch, stackctl, isolated_home, tmp_path, ports
) -> None:
    hosts.linux_no_gpu(fake_bin, monkeypatch, tmp_path / "host")
    monkeypatch.setattr(probe, "read_disk_free", lambda path: 2 * 10**9)
    config = write_config(isolated_home, ports, "models: [gemma3:4b, gemma3:1b]\n")
    _, report, found = doctor(stackctl, config)
    where = report["facts"]["models_dir"]
    assert texts(found, "disk") == [
        (
            "error",
            f"the models need about 4.1 GB to download and {where} has 2 GB free: free some space "
            "there, or keep models on another disk: set OLLAMA_MODELS in ollama.env",
        )
    ]
    # A model already pulled (its manifest exists) needs no download.
    manifest = Path(where, "manifests/registry.ollama.ai/library/gemma3/4b")
    manifest.parent.mkdir(parents=True)
    manifest.write_text("{}")
    _, _, found = doctor(stackctl, config)
    assert texts(found, "disk")[0][0] == "warn"
    assert "after the models (about 0.8 GB)" in texts(found, "disk")[0][1]


def test_agent_context_warns_when_a_pinned_num_ctx_is_too_small(
    fake_bin, monkeypatch, stackctl, isolated_home, tmp_path, ports, plenty_of_disk
) -> None:
    hosts.linux_no_gpu(fake_bin, monkeypatch, tmp_path / "host")
    config = isolated_home / "stack.yaml"
    config.write_text(
        f"ollama: {{port: {ports['ollama']}}}\nopenwebui: {{port: {ports['openwebui']}}}\n"
        "models: [qwen3:8b, 'gemma3:4b', llama3.2:3b]\n"
        f"proxy:\n  port: {ports['proxy']}\n"
        "  model_options: {qwen3:8b: {num_ctx: 8192}, 'gemma3:4b': {num_ctx: 32768}}\n"
    )
    _code, _report, found = doctor(stackctl, config)
    assert texts(found, "context") == [
        (
            "warn",
            "qwen3:8b has num_ctx 8192: a coding agent's prompt (Claude Code sends about 20,000 "
            "tokens) does not fit, and Ollama cuts it without an error: set "
            f"proxy.model_options.qwen3:8b.num_ctx: 32768 in {config} (it takes more memory)",
        ),
        ("ok", "gemma3:4b has num_ctx 32768: a coding agent's prompt fits"),
        (
            "ok",
            "llama3.2:3b runs with Ollama's default context (4,096 tokens up to Ollama 0.15.4); "
            "for coding agents (Claude Code, Codex) set proxy.model_options.llama3.2:3b.num_ctx: "
            "32768",
        ),
    ]


def test_an_exposed_stack_needs_caddy_and_says_where_its_certificates_come_from(
    fake_bin, monkeypatch, stackctl, isolated_home, tmp_path, ports, plenty_of_disk
) -> None:
    hosts.linux_no_gpu(fake_bin, monkeypatch, tmp_path / "host")
    fake_bin.scenario(linger={"alice": "yes"})
    front = free_port()
    config = write_config(
        isolated_home,
        ports,
        f"expose: true\ntls: {{port: {front}}}\n",
    )
    config.write_text(
        config.read_text().replace(
            f"proxy: {{port: {ports['proxy']}}}",
            f"proxy: {{port: {ports['proxy']}, api_keys_file: {isolated_home / 'keys'}}}",
        )
    )
    monkeypatch.setenv("PATH", str(fake_bin.bin))  # no caddy there
    code, _, found = doctor(stackctl, config)
    assert code == 1
    assert texts(found, "front") == [
        (
            "error",
            "expose: true serves the stack over HTTPS through Caddy, which is not installed: run "
            "`sudo apt-get install -y caddy && sudo systemctl disable --now caddy.service` (or "
            "`stackctl up`, which installs it as root or with Homebrew)",
        )
    ]
    caddy = fake_bin.bin / "caddy"
    caddy.write_text("#!/bin/sh\n")
    caddy.chmod(0o755)
    root = paths_for("linux", "user").caddy_root_cert
    _, _, found = doctor(stackctl, config)
    assert texts(found, "front") == [
        ("ok", f"the HTTPS front serves Caddy's local CA (clients trust {root})")
    ]
    assert ("ok", f"port {front} (front) is free") in texts(found, "port")
