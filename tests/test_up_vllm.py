"""`stackctl up` on a Linux box with an NVIDIA GPU: vLLM in its own venv (uv; pip with --installer pip), the
model downloaded ahead into HF_HOME, gated models and HF_TOKEN; end to end under the real
systemd user manager, with fake nvidia-smi, uv, vllm (a fake OpenAI server) and hf.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from stackctl.secrets import read_env_file
from tests.fakes.installer import FakeBin
from tests.ports import free_ports

RTX_4090 = {"name": "NVIDIA GeForce RTX 4090", "memory_total_mib": 24564}
TOKEN = "hf_test_token_with_access"


def calls_with(fake_bin: FakeBin, name: str) -> list[dict]:
    path = fake_bin.state / "calls.jsonl"
    entries = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    return [e for e in entries if e["name"] == name]


@pytest.fixture
def gpu_box(fake_bin: FakeBin, monkeypatch: pytest.MonkeyPatch) -> FakeBin:
    """Linux with one 24 GB NVIDIA GPU, uv installed, Gemma gated on Hugging Face."""
    fake_bin.remove("ollama")
    fake_bin.scenario(
        gpus=[RTX_4090],
        linger="yes",
        hf_gated=["google/gemma-3-1b-it", "google/gemma-3-4b-it"],
        hf_token_access=[TOKEN],
    )
    monkeypatch.delenv("HF_TOKEN", raising=False)
    return fake_bin


def write_config(home: Path) -> tuple[Path, list[int]]:
    vllm, proxy, webui = free_ports(3)
    path = home / ".config/stackctl/stack.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f'vllm: {{port: {vllm}, model: google/gemma-3-1b-it, served_model_name: "gemma3:1b"}}\n'
        f"proxy: {{port: {proxy}}}\nopenwebui: {{port: {webui}}}\n"
    )
    return path, [vllm, proxy, webui]


@pytest.mark.systemd
def test_vllm_stack_end_to_end(
    systemd_user, gpu_box: FakeBin, monkeypatch: pytest.MonkeyPatch, stackctl
) -> None:
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    _, (vllm_port, proxy_port, _) = write_config(systemd_user.home)
    data = systemd_user.home / ".local/share/stackctl"
    venv, hf_home = data / "venvs/vllm", data / "huggingface"

    result = stackctl("up", "--yes")
    assert result.code == 0, result.out + result.err
    assert "backend vllm, user scope, models gemma3:1b" in result.out
    python, webui = str(gpu_box.bin / "python3.11"), data / "venvs/openwebui"
    assert gpu_box.calls("uv") == [
        ["uv", "venv", "--seed", "--clear", "--python", python, str(venv)],
        ["uv", "pip", "install", "--python", str(venv / "bin/python"), "vllm", "--torch-backend=auto"],
        ["uv", "venv", "--seed", "--clear", "--python", python, str(webui)],
        ["uv", "pip", "install", "--python", str(webui / "bin/python"), "open-webui"],
    ]  # fmt: skip
    downloads = calls_with(gpu_box, "hf")
    assert [[d["exe"], *d["argv"]] for d in downloads] == [
        [str(venv / "bin/hf"), "download", "google/gemma-3-1b-it"]
    ]
    assert downloads[0]["hf_home"] == str(hf_home) and downloads[0]["token_set"] is True
    secrets = read_env_file(systemd_user.home / ".config/stackctl/secrets.env")
    assert secrets["HF_TOKEN"] == TOKEN  # kept for the service and the next run

    served = [c for c in calls_with(gpu_box, "vllm") if c["argv"][:1] == ["serve"]]
    assert served[-1]["argv"] == [
        "serve", "google/gemma-3-1b-it", "--host", "127.0.0.1", "--port", str(vllm_port),
        "--served-model-name", "gemma3:1b",
    ]  # fmt: skip
    assert served[-1]["exe"] == str(venv / "bin/vllm")
    assert served[-1]["token_set"] is True and served[-1]["hf_home"] == str(hf_home)

    status = json.loads(stackctl("status", "--json").out)
    rows = {row["service"]: row for row in status["services"]}
    assert status["healthy"] is True and list(rows) == ["vllm", "proxy", "openwebui"]
    assert rows["vllm"]["models"] == ["gemma3:1b"] and rows["vllm"]["version"] == "0.11.0"
    assert rows["proxy"]["port"] == proxy_port and rows["proxy"]["health"] == "ok"
    assert rows["proxy"]["models"] == ["gemma3:1b"]  # the proxy routes to vLLM, not Ollama

    listed = stackctl("models", "--json")
    assert listed.code == 0, listed.err
    models = json.loads(listed.out)["models"]
    assert models == [
        {
            "name": "gemma3:1b",
            "size_bytes": 2 * 2 + 2000 + 40,  # the fake snapshot (2 JSON, 2 weights) + refs/main
            "where": f"vllm (http://127.0.0.1:{vllm_port}/v1)",
        }
    ]

    monkeypatch.delenv("HF_TOKEN")  # the next run finds the token in secrets.env
    gpu_box.clear_calls()
    again = stackctl("up", "--yes")
    assert again.code == 0 and "Everything is in place: nothing to do." in again.out
    assert gpu_box.calls("uv") == [] and gpu_box.calls("hf") == []
    assert stackctl("down").code == 0
    assert not list(systemd_user.unit_dir.glob("stackctl*"))
    assert (hf_home / "hub/models--google--gemma-3-1b-it").is_dir()  # models stay


def test_gated_model_without_a_token_stops_before_the_long_install(
    gpu_box: FakeBin, isolated_home: Path, stackctl
) -> None:
    result = stackctl("up", "--yes")
    assert result.code == 1
    secrets = isolated_home / ".config/stackctl/secrets.env"
    assert result.err == (
        "Error: google/gemma-3-4b-it is gated on Hugging Face: accept its licence at "
        "https://huggingface.co/google/gemma-3-4b-it, create a read token at "
        "https://huggingface.co/settings/tokens, then `export HF_TOKEN=hf_...` and run "
        f"`stackctl up` again (the token is kept in {secrets}, mode 0600)\n"
    )
    assert gpu_box.calls("uv") == [] and not secrets.exists()


def test_a_token_without_access_fails_the_download_with_the_fix(
    gpu_box: FakeBin, isolated_home: Path, monkeypatch: pytest.MonkeyPatch, stackctl
) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_licence_not_accepted")
    result = stackctl("up", "--yes", "--no-webui")
    assert result.code == 1
    assert result.err == (
        "Error: step 6/8 failed: Download google/gemma-3-4b-it into "
        f"{isolated_home}/.local/share/stackctl/huggingface (served as gemma3:4b)\n"
        "  google/gemma-3-4b-it is gated and the Hugging Face account of your HF_TOKEN has no "
        "access to it: accept the licence at https://huggingface.co/google/gemma-3-4b-it with "
        "that account, then run `stackctl up` again\n"
    )
    secrets = read_env_file(isolated_home / ".config/stackctl/secrets.env")
    assert secrets["HF_TOKEN"] == "hf_licence_not_accepted"
    config = (isolated_home / ".config/stackctl/stack.yaml").read_text()
    assert "backend: vllm" in config and "model: google/gemma-3-4b-it" in config
    assert "openwebui:\n  enabled: false" in config


def test_without_uv_vllm_is_installed_with_pip(
    gpu_box: FakeBin, isolated_home: Path, monkeypatch: pytest.MonkeyPatch, stackctl
) -> None:
    gpu_box.remove("uv")
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    result = stackctl("up", "--dry-run", "--model", "google/gemma-3-1b-it")
    assert result.code == 0, result.err
    venv = isolated_home / ".local/share/stackctl/venvs/vllm"
    assert f"$ {gpu_box.bin / 'python3.11'} -m venv {venv}" in result.out
    assert f"$ {venv}/bin/pip install vllm" in result.out
    assert "models gemma3:1b" in result.out  # the catalogue maps the HF id to the served name


def test_a_broken_driver_is_reported(gpu_box: FakeBin, stackctl) -> None:
    gpu_box.scenario(
        nvidia_smi_error="NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver."
    )
    result = stackctl("up", "--backend", "vllm", "--yes")
    assert result.code == 1
    assert result.err == (
        "Error: nvidia-smi fails: NVIDIA-SMI has failed because it couldn't communicate with "
        "the NVIDIA driver.. Fix the NVIDIA driver (reboot after installing it), or use "
        "--backend ollama\n"
    )


@pytest.mark.systemd
def test_a_vllm_api_key_in_secrets_env_is_used_by_the_proxy_status_and_up(
    systemd_user, gpu_box: FakeBin, monkeypatch: pytest.MonkeyPatch, stackctl
) -> None:
    """An operator who puts VLLM_API_KEY in secrets.env: vLLM (through EnvironmentFile=)
    then wants it on /v1, and the proxy, up's health wait, status and models all send it."""
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.delenv("VLLM_API_KEY", raising=False)
    _, (vllm_port, proxy_port, _) = write_config(systemd_user.home)
    secrets = systemd_user.home / ".config/stackctl/secrets.env"
    secrets.write_text("VLLM_API_KEY=sk-vllm-only-for-the-stack\n")
    secrets.chmod(0o600)

    result = stackctl("up", "--yes")
    assert result.code == 0, result.out + result.err
    vllm = f"http://127.0.0.1:{vllm_port}/v1"
    assert httpx.get(f"{vllm}/models").status_code == 401  # vLLM itself wants the key
    chat = httpx.post(
        f"http://127.0.0.1:{proxy_port}/v1/chat/completions",
        json={"model": "gemma3:1b", "messages": [{"role": "user", "content": "hi"}]},
        timeout=10,
    )
    assert chat.status_code == 200, chat.text
    assert chat.json()["choices"][0]["message"]["content"]

    status = json.loads(stackctl("status", "--json").out)
    rows = {row["service"]: row for row in status["services"]}
    assert status["healthy"] is True and rows["vllm"]["models"] == ["gemma3:1b"]
    listed = stackctl("models", "--json")
    assert listed.code == 0, listed.err
    assert [m["name"] for m in json.loads(listed.out)["models"]] == ["gemma3:1b"]
    assert read_env_file(secrets)["VLLM_API_KEY"] == "sk-vllm-only-for-the-stack"  # kept
    assert stackctl("down").code == 0


def test_hf_home_in_vllm_env_moves_the_download_and_its_directory(
    gpu_box: FakeBin, isolated_home: Path, monkeypatch: pytest.MonkeyPatch, stackctl
) -> None:
    """doctor's advice for a full disk, `HF_HOME` in vllm.env, is where up downloads the
    model and the directory it creates (the vLLM unit reads its weights there)."""
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    path, _ = write_config(isolated_home)
    moved = isolated_home / "disk2/huggingface"
    path.write_text(path.read_text().replace("vllm: {", f"vllm: {{env: {{HF_HOME: {moved}}}, "))
    result = stackctl("up", "--dry-run")
    assert result.code == 0, result.out + result.err
    assert f"Download google/gemma-3-1b-it into {moved} (served as gemma3:1b)" in result.out
    assert f"mkdir -p -m 755 {moved}" in result.out
    assert f"HF_HOME={moved} " in result.out
