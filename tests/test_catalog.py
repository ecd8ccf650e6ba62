"""The model catalogue and the fit rule: which model this machine gets."""

from __future__ import annotations

import json

import pytest

from stackctl import catalog
from stackctl.config import Config
from stackctl.probe import Gpu, HostFacts
from tests.fakes import hosts

GIB = 1024**3


def mac(ram_gib: int) -> HostFacts:
    return HostFacts("macos", apple_silicon=True, metal=True, ram_total=ram_gib * GIB)


def nvidia(*mib: int) -> HostFacts:
    gpus = [Gpu("NVIDIA GPU", m, 0, "550.54.15") for m in mib]
    return HostFacts("linux", ram_total=64 * GIB, gpus=gpus)


def cpu_only(ram_gib: int, platform: str = "linux") -> HostFacts:
    return HostFacts(platform, ram_total=ram_gib * GIB)  # type: ignore[arg-type]


def test_catalogue_has_gemma3_and_other_families() -> None:
    tags = [m.ollama for m in catalog.catalogue()]
    for size in ("1b", "4b", "12b", "27b"):
        assert f"gemma3:{size}" in tags
    assert len({m.family for m in catalog.catalogue()}) >= 4
    for model in catalog.catalogue():
        assert model.hf_id.count("/") == 1
        assert 0 < model.download_gb < model.memory_gb < model.vllm_memory_gb
        assert model.hf_download_gb > model.download_gb  # bf16 is bigger than Q4
        assert len(set(tags)) == len(tags)


def test_figures_match_the_ollama_readme() -> None:
    """Download sizes from ollama's README model table (ollama/ollama `519b11eba^:README.md`)."""
    sizes = {m.ollama: m.download_gb for m in catalog.family_models("gemma3")}
    assert sizes == {"gemma3:1b": 0.815, "gemma3:4b": 3.3, "gemma3:12b": 8.1, "gemma3:27b": 17}
    assert catalog.find("gemma3:27b").memory_gb == 20  # "needs about 20 GB" (issue 2)


def test_find_by_tag_alias_or_hugging_face_id() -> None:
    assert catalog.find("gemma3").ollama == "gemma3:4b"
    assert catalog.find("gemma3:latest").ollama == "gemma3:4b"
    assert catalog.find("Google/Gemma-3-27b-it").ollama == "gemma3:27b"
    assert catalog.find("llama3:70b") is None


@pytest.mark.parametrize(
    ("facts", "ollama", "vllm"),
    [
        (mac(8), "gemma3:4b", None),
        (mac(16), "gemma3:12b", None),  # the example: 16 GB Mac -> gemma3:12b
        (mac(24), "gemma3:12b", None),
        (mac(32), "gemma3:27b", None),
        (mac(64), "gemma3:27b", None),
        (nvidia(24564), "gemma3:27b", "gemma3:4b"),  # one 24 GB GPU; bf16 27b/12b do not fit
        (nvidia(8192), "gemma3:4b", "gemma3:1b"),
        (nvidia(81920), "gemma3:27b", "gemma3:27b"),
        (nvidia(24564, 24564), "gemma3:27b", "gemma3:12b"),
        (cpu_only(24), "gemma3:4b", None),  # CPU-only hosts stay at 4B: speed, not memory
        (cpu_only(4), "gemma3:1b", None),
        (cpu_only(1), "gemma3:1b", None),  # nothing fits: the smallest
        (HostFacts("macos", ram_total=16 * GIB), "gemma3:4b", None),  # Intel Mac: CPU
    ],
)
def test_recommendation(facts: HostFacts, ollama: str, vllm: str | None) -> None:
    assert catalog.recommend(facts, "ollama").ollama == ollama
    if vllm:
        assert catalog.recommend(facts, "vllm").ollama == vllm
        assert catalog.recommend(facts).ollama == vllm  # a Linux GPU host means vLLM


def test_budgets() -> None:
    assert catalog.memory_budget(mac(16)).gib == pytest.approx(16 * 2 / 3)
    assert catalog.memory_budget(mac(64)).gib == pytest.approx(48)
    assert catalog.memory_budget(nvidia(24564)).gib == pytest.approx(24564 / 1024 * 0.9)
    assert catalog.memory_budget(cpu_only(10)).gib == pytest.approx(6)
    assert catalog.memory_budget(mac(16)).describe() == (
        "this Mac has 16 GB, about 11 GB of it usable by the GPU"
    )
    assert catalog.memory_budget(nvidia(24564)).describe() == (
        "this machine's GPU has 24 GB, about 22 GB of it usable"
    )
    assert catalog.memory_budget(cpu_only(8)).describe() == (
        "this machine has 8 GB of RAM, about 4.8 GB of it usable for models"
    )


def test_default_models_use_the_recommendation(fake_bin, monkeypatch) -> None:
    hosts.mac_16gb(fake_bin, monkeypatch)
    assert catalog.default_models(Config(), "ollama") == ["gemma3:12b"]
    assert catalog.default_models(Config(), "vllm") == ["gemma3:27b"]  # vllm.served_model_name
    # Cheap: only the memory facts, no sw_vers, brew or ollama.
    assert {c[0] for c in fake_bin.calls()} == {"sysctl"}


def test_config_show_on_a_16gb_mac(fake_bin, monkeypatch, stackctl) -> None:
    hosts.mac_16gb(fake_bin, monkeypatch)
    result = stackctl("config", "show", "--json")
    assert result.code == 0
    shown = json.loads(result.out)
    assert (shown["backend"], shown["models"]) == ("ollama", ["gemma3:12b"])


def test_config_show_on_a_24gb_nvidia_box(fake_bin, monkeypatch, tmp_path, stackctl) -> None:
    hosts.linux_gpu_24gb(fake_bin, monkeypatch, tmp_path)
    shown = json.loads(stackctl("config", "show", "--json").out)
    assert shown["backend"] == "vllm"
    assert shown["models"] == [shown["vllm"]["served_model_name"]]
