"""Is the model on the GPU? `/api/ps` from the fake Ollama (its `gpu_fraction` knob stands
for an Ollama whose Metal device was not created), read by status and up's summary."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import httpx
import pytest

from stackctl.config import load
from stackctl.gpu_offload import Loaded, loaded_models, offload_warnings
from stackctl.services.inputs import inputs_for_host
from stackctl.services.render import render_units
from stackctl.stack import resolve_stack
from tests.fakes.ollama_api import FakeOllama
from tests.ports import free_ports

GIB = 1024**3


@pytest.fixture
def ollama(tmp_path: Path):
    fake = FakeOllama(tmp_path / "ollama", port=free_ports(1)[0]).start()
    fake.install("gemma3:1b")
    yield fake
    fake.stop()


def load_model(ollama: FakeOllama) -> None:
    """An empty prompt loads a model into memory (ollama docs/api.md, "Load a model")."""
    httpx.post(f"{ollama.url}/api/generate", json={"model": "gemma3:1b"}, timeout=10)


def test_loaded_models_read_size_and_size_vram(ollama: FakeOllama) -> None:
    assert loaded_models(ollama.url) == []
    load_model(ollama)
    [model] = loaded_models(ollama.url)
    assert model.name == "gemma3:1b" and model.size_vram == model.size > 0
    assert offload_warnings([model], "user") == []
    ollama.behave(gpu_fraction=0.0)
    [model] = loaded_models(ollama.url)
    assert model.size_vram == 0
    assert loaded_models("http://127.0.0.1:9") is None  # nothing listens: no answer


def test_warnings_name_the_likely_cause() -> None:
    cpu = Loaded("gemma3:12b", int(8.7 * GIB), 0)
    assert offload_warnings([cpu], "system") == [
        "gemma3:12b runs on the CPU, not the GPU (none of its 8.7 GB is in GPU memory): Ollama "
        "got no Metal device. Likely cause: Ollama was started before anyone logged in at the "
        "Mac's screen (system scope starts it at boot). Log in at the Mac's screen, then run "
        "`stackctl restart ollama`"
    ]
    assert (
        "Likely cause: Ollama was started from a remote (ssh) session."
        in (offload_warnings([cpu], "user")[0])
    )
    half = Loaded("gemma3:27b", 20 * GIB, 10 * GIB)
    assert offload_warnings([half], "user") == [
        "gemma3:27b runs partly on the CPU (only 50% of its 20 GB is in GPU memory): it does "
        "not fit in the memory macOS lets the GPU use; use a smaller model, or a shorter "
        "OLLAMA_CONTEXT_LENGTH in ollama.env"
    ]


def test_status_warns_when_the_model_runs_on_the_cpu(
    fake_bin, isolated_home, monkeypatch, tmp_path, ollama, stackctl
) -> None:
    monkeypatch.setenv("STACKCTL_PLATFORM", "macos")  # the fake sysctl: an Apple M2
    proxy_port, webui_port = free_ports(2)
    config_path = tmp_path / "stack.yaml"
    config_path.write_text(
        f"ollama: {{port: {ollama.server.port}}}\nproxy: {{port: {proxy_port}}}\n"
        f"openwebui: {{port: {webui_port}}}\n"
    )
    config = load(config_path)
    stack = resolve_stack(config, config_path)
    inputs = inputs_for_host(stack, preview=True)
    inputs = dataclasses.replace(inputs, ollama_bin=Path("/opt/homebrew/bin/ollama"))
    stack.manager.install(render_units(config, inputs))
    load_model(ollama)
    result = stackctl("--config", str(config_path), "status", "--json")
    assert json.loads(result.out)["warnings"] == []

    ollama.behave(gpu_fraction=0.0)
    result = stackctl("--config", str(config_path), "status")
    warning = [line for line in result.out.splitlines() if line.startswith("warning:")]
    assert warning == [
        "warning: gemma3:1b runs on the CPU, not the GPU (none of its 0.8 GB is in GPU memory): "
        "Ollama got no Metal device. Likely cause: Ollama was started from a remote (ssh) "
        "session. Log in at the Mac's screen, then run `stackctl restart ollama`"
    ]
