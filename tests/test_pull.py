"""Pulling models: progress per digest, a stalled download retried, error lines reported.

Against the fake Ollama server over real loopback sockets (tests/fakes/ollama_api.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from stackctl.output import human_bytes
from stackctl.pull import (
    ProgressBar,
    PullFailed,
    PullState,
    installed_models,
    pull_model,
    pull_with_bar,
)
from tests.fakes.ollama_api import FakeOllama
from tests.fakes.ollama_catalog import layers_for


@pytest.fixture
def ollama(tmp_path: Path) -> Iterator[FakeOllama]:
    with FakeOllama(tmp_path / "ollama") as server:
        yield server


def pulls(server: FakeOllama) -> list[dict]:
    return [r for r in server.requests("/api/pull")]


def test_pull_sums_progress_per_digest_and_installs(ollama: FakeOllama) -> None:
    seen: list[tuple[str, int, int]] = []
    state = pull_model(
        ollama.url, "gemma3:1b", on_update=lambda s: seen.append((s.status, s.completed, s.total))
    )
    layers = layers_for("gemma3:1b")
    assert state.status == "success"
    assert state.total == sum(size for _, size in layers) == 815_319_791
    assert state.completed == state.total
    completed = [done for _, done, _ in seen]
    assert completed == sorted(completed)  # summed over layers, it never goes backwards
    assert seen[0][0] == "pulling manifest"
    assert [s for s, _, _ in seen[-3:]] == [
        "verifying sha256 digest",
        "writing manifest",
        "success",
    ]
    assert installed_models(ollama.url) == ["gemma3:1b"]
    assert [r["body"] for r in pulls(ollama)] == [{"model": "gemma3:1b", "stream": True}]


def test_a_stalled_download_is_asked_for_again(ollama: FakeOllama) -> None:
    ollama.behave(pull_stall_first_attempt_seconds=30)
    notes: list[str] = []
    state = pull_model(ollama.url, "gemma3:1b", stall_seconds=0.5, on_note=notes.append)
    assert state.status == "success" and state.attempt == 2
    assert notes == [
        "gemma3:1b: no progress for 0.5s; asking Ollama again (it resumes the download), attempt 2"
    ]
    assert len(pulls(ollama)) == 2
    assert installed_models(ollama.url) == ["gemma3:1b"]


def test_stalls_in_a_row_give_up_with_what_to_do(ollama: FakeOllama) -> None:
    ollama.behave(pull_stall_first_attempt_seconds=30)
    with pytest.raises(PullFailed) as err:
        pull_model(ollama.url, "gemma3:1b", stall_seconds=0.3, retries=0)
    assert err.value.format_message() == (
        "pulling gemma3:1b stalled: no progress for 0.3s, 1 times in a row\n"
        "  check the network, then `stackctl pull gemma3:1b` resumes the download"
    )


def test_an_error_line_in_the_stream_is_reported(ollama: FakeOllama) -> None:
    with pytest.raises(PullFailed) as err:
        pull_model(ollama.url, "missing-model:1b")
    assert err.value.format_message() == (
        "pulling missing-model:1b failed: Ollama says: pull model manifest: file does not exist\n"
        "  check the name and tag at https://ollama.com/library/missing-model"
    )


def test_a_refused_request_is_reported_without_a_retry_hint(ollama: FakeOllama) -> None:
    """A 4xx is about the request: asking again cannot help, so no retry is suggested."""
    with pytest.raises(PullFailed) as err:
        pull_model(ollama.url, "Bad Name!")
    assert err.value.format_message() == (
        "pulling Bad Name! failed: Ollama says: invalid model name (HTTP 400)\n"
        "  check the name: Ollama's models are named like gemma3:12b "
        "(https://ollama.com/library lists them)"
    )


def test_no_server_says_how_to_check_with_the_name_quoted() -> None:
    with pytest.raises(PullFailed) as err:
        pull_model("http://127.0.0.1:9", "my model")
    assert err.value.format_message() == (
        "cannot reach Ollama at http://127.0.0.1:9 to pull my model (ConnectError): check it "
        "runs with `stackctl status`, then `stackctl pull 'my model'` resumes the download"
    )


def test_hints_quote_what_they_interpolate(tmp_path: Path) -> None:
    """A command in a hint can be pasted into a shell as it is printed."""
    from stackctl.errors import CommandFailed
    from stackctl.secrets import InsecureSecretFile

    assert CommandFailed(["ls", "my dir"], 2, "").format_message() == (
        "`ls 'my dir'` failed with exit code 2"
    )
    assert (
        InsecureSecretFile(tmp_path / "a b" / "secrets.env")
        .format_message()
        .endswith(f"run `chmod 600 '{tmp_path}/a b/secrets.env'`")
    )


def test_progress_line_shows_bytes_rate_and_eta() -> None:
    bar = ProgressBar(terminal=False, width=10)
    state = PullState("gemma3:1b", status="pulling 6a0746a1ec1a")
    state.layers = {"sha256:a": (400_000_000, 800_000_000)}
    bar.samples.extend([(0.0, 0), (10.0, 400_000_000)])  # 40 MB/s
    assert bar.line(state) == (
        "gemma3:1b [#####-----]  50% 400.0 MB / 800.0 MB  40.0 MB/s  ETA 10s"
    )
    assert bar.line(PullState("gemma3:1b", status="verifying sha256 digest")) == (
        "gemma3:1b: verifying sha256 digest"
    )
    assert human_bytes(17_396_936_941) == "17.4 GB" and human_bytes(512) == "512 B"


def test_pull_with_bar_prints_milestones_without_a_terminal(
    ollama: FakeOllama, capsys: pytest.CaptureFixture[str]
) -> None:
    pull_with_bar(ollama.url, "gemma3:1b", terminal=False)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "  gemma3:1b: pulling manifest"
    assert lines[1].startswith("  gemma3:1b [") and "   0% 0 B / 815.3 MB" in lines[1]
    assert any(" 100% 815.3 MB / 815.3 MB" in line for line in lines)
    assert lines[-4:] == [
        "  gemma3:1b: verifying sha256 digest",
        "  gemma3:1b: writing manifest",
        "  gemma3:1b: success",
        "  gemma3:1b: pulled (815.3 MB)",
    ]


def write_config(tmp_path: Path, port: int) -> Path:
    path = tmp_path / "stack.yaml"
    path.write_text(f"backend: ollama\nollama: {{port: {port}}}\n")
    return path


def test_pull_command_pulls_each_model(ollama: FakeOllama, tmp_path: Path, stackctl) -> None:
    config = write_config(tmp_path, int(ollama.url.rsplit(":", 1)[1]))
    result = stackctl("--config", str(config), "pull", "gemma3:1b", "qwen3:0.6b")
    assert result.code == 0, result.err
    assert "  gemma3:1b: pulled (815.3 MB)" in result.out
    assert "  qwen3:0.6b: pulled" in result.out
    assert sorted(installed_models(ollama.url) or []) == ["gemma3:1b", "qwen3:0.6b"]


def test_pull_command_reports_an_error_line(ollama: FakeOllama, tmp_path: Path, stackctl) -> None:
    config = write_config(tmp_path, int(ollama.url.rsplit(":", 1)[1]))
    result = stackctl("--config", str(config), "pull", "missing-model")
    assert result.code == 1
    assert (
        "Error: pulling missing-model failed: Ollama says: pull model manifest: file does not exist"
        in result.err
    )


def test_pull_command_stall_timeout_option(ollama: FakeOllama, tmp_path: Path, stackctl) -> None:
    ollama.behave(pull_stall_first_attempt_seconds=30)
    config = write_config(tmp_path, int(ollama.url.rsplit(":", 1)[1]))
    result = stackctl("--config", str(config), "pull", "--stall-timeout", "0.5", "gemma3:1b")
    assert result.code == 0, result.err
    assert "gemma3:1b: no progress for 0.5s; asking Ollama again" in result.out


def test_pull_command_without_ollama_says_what_to_run(tmp_path: Path, stackctl) -> None:
    config = write_config(tmp_path, 9)
    result = stackctl("--config", str(config), "pull", "gemma3:1b")
    assert result.code == 1
    assert result.err == (
        "Error: Ollama does not answer at http://127.0.0.1:9: `stackctl status` shows why; "
        "`stackctl up` starts the stack\n"
    )
