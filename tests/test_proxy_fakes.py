"""The fake Ollama and the fake OpenAI-compatible backend behave like the real servers.

Other tests (and other fakes, like `ollama serve`) rely on these shapes, so they are pinned
here against Ollama's `docs/api.md` and vLLM's OpenAI-compatible server.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.fakes.ollama_api import FakeOllama, read_requests
from tests.fakes.ollama_state import host_allowed, parse_ollama_host
from tests.fakes.openai_backend import FakeOpenAIBackend

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def ollama(tmp_path_factory: pytest.TempPathFactory):
    with FakeOllama(tmp_path_factory.mktemp("ollama")) as fake:
        yield fake


def ndjson(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, ("127.0.0.1", 11434)),
        ("", ("127.0.0.1", 11434)),
        ("0.0.0.0", ("0.0.0.0", 11434)),
        (":8080", ("", 8080)),
        ("127.0.0.1:11500", ("127.0.0.1", 11500)),
        ("[::1]:11434", ("::1", 11434)),
        ("http://localhost", ("localhost", 80)),
        ("https://example.internal", ("example.internal", 443)),
        ("http://127.0.0.1:9999/", ("127.0.0.1", 9999)),
        ('"127.0.0.1:1234"', ("127.0.0.1", 1234)),
    ],
)
def test_ollama_host_is_parsed_like_envconfig(value, expected):
    assert parse_ollama_host(value) == expected


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("127.0.0.1:11434", True),
        ("localhost:11434", True),
        ("[::1]:11434", True),
        ("10.1.2.3", True),
        ("", True),
        ("box.local", True),
        ("api.internal:80", True),
        ("evil.example.com", False),
        ("8.8.8.8:11434", False),
    ],
)
def test_host_guard(host, allowed):
    assert host_allowed(host) is allowed


def test_root_version_and_foreign_host(ollama):
    assert httpx.get(ollama.url + "/").text == "Ollama is running"
    assert httpx.head(ollama.url + "/").status_code == 200
    assert httpx.get(ollama.url + "/api/version").json() == {"version": "0.32.3"}
    refused = httpx.get(ollama.url + "/api/tags", headers={"Host": "evil.example.com"})
    assert (refused.status_code, refused.content) == (403, b"")
    assert httpx.get(ollama.url + "/api/nothing").status_code == 404
    assert httpx.get(ollama.url + "/api/chat").status_code == 405


def test_pull_streams_progress_then_lists_the_model(ollama):
    reply = httpx.post(ollama.url + "/api/pull", json={"model": "gemma3:27b"})
    assert reply.headers["content-type"] == "application/x-ndjson"
    lines = ndjson(reply.text)
    assert lines[0] == {"status": "pulling manifest"}
    assert [line["status"] for line in lines[-3:]] == [
        "verifying sha256 digest",
        "writing manifest",
        "success",
    ]
    layers = [line for line in lines if "digest" in line]
    weights = [line for line in layers if line["total"] > 10**9]
    assert "completed" not in weights[0]  # absent while 0
    assert weights[-1]["completed"] == weights[-1]["total"]
    assert weights[0]["status"] == f"pulling {weights[0]['digest'][7:19]}"
    total = sum({line["digest"]: line["total"] for line in layers}.values())
    tags = httpx.get(ollama.url + "/api/tags").json()["models"]
    entry = next(m for m in tags if m["name"] == "gemma3:27b")
    assert entry["size"] == total == 17_396_936_941
    assert set(entry) == {"name", "model", "modified_at", "size", "digest", "details"}
    assert entry["details"]["parameter_size"] == "27.4B"


def test_pull_of_a_missing_model_fails_after_the_manifest_line(ollama):
    reply = httpx.post(ollama.url + "/api/pull", json={"model": "missing-model"})
    assert reply.status_code == 200
    assert ndjson(reply.text) == [
        {"status": "pulling manifest"},
        {"error": "pull model manifest: file does not exist"},
    ]
    waited = httpx.post(ollama.url + "/api/pull", json={"model": "missing-model", "stream": False})
    assert waited.status_code == 500
    assert waited.json() == {"error": "pull model manifest: file does not exist"}
    done = httpx.post(ollama.url + "/api/pull", json={"model": "gemma3:1b", "stream": False})
    assert done.json() == {"status": "success"}


def test_first_pull_stalls_then_the_retry_succeeds(ollama):
    ollama.behave(pull_stall_first_attempt_seconds=30)
    try:
        with httpx.stream(
            "POST", ollama.url + "/api/pull", json={"model": "gemma3:4b"}, timeout=1.0
        ) as reply:
            seen = []
            with pytest.raises(httpx.ReadTimeout):
                for line in reply.iter_lines():
                    seen.append(json.loads(line))
        assert seen[0] == {"status": "pulling manifest"}
        assert seen[-1]["total"] > 10**9 and "completed" in seen[-1]
        retry = httpx.post(ollama.url + "/api/pull", json={"model": "gemma3:4b"}, timeout=10)
        assert ndjson(retry.text)[-1] == {"status": "success"}
    finally:
        ollama.behave(pull_stall_first_attempt_seconds=0)


def test_models_survive_a_restart(tmp_path):
    with FakeOllama(tmp_path) as first:
        first.install("qwen3:8b")
    with FakeOllama(tmp_path) as second:
        names = [m["name"] for m in httpx.get(second.url + "/api/tags").json()["models"]]
    assert names == ["qwen3:8b"]
    assert read_requests(tmp_path)[0]["path"] == "/api/tags"


def test_chat_shapes(ollama):
    ollama.install("gemma3:1b", "qwen3:8b")
    url = ollama.url + "/api/chat"
    chunks = ndjson(
        httpx.post(
            url, json={"model": "gemma3:1b", "messages": [{"role": "user", "content": "Hi"}]}
        ).text
    )
    assert "".join(c["message"]["content"] for c in chunks) == "You said: Hi"
    assert chunks[0]["done"] is False and chunks[-1]["done"] is True
    assert chunks[-1]["done_reason"] == "stop" and chunks[-1]["eval_count"] == 3
    missing = httpx.post(url, json={"model": "nope", "messages": []})
    assert (missing.status_code, missing.json()) == (404, {"error": "model 'nope' not found"})
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {
                    "type": "object",
                    "required": ["city"],
                    "properties": {"city": {"type": "string"}},
                },
            },
        }
    ]
    no_tools = httpx.post(
        url,
        json={"model": "gemma3:1b", "messages": [{"role": "user", "content": "x"}], "tools": tools},
    )
    assert no_tools.json() == {
        "error": "registry.ollama.ai/library/gemma3:1b does not support tools"
    }
    called = httpx.post(
        url,
        json={
            "model": "qwen3:8b",
            "stream": False,
            "think": False,
            "tools": tools,
            "messages": [{"role": "user", "content": "Weather?"}],
        },
    ).json()
    call = called["message"]["tool_calls"][0]
    assert call["id"].startswith("call_") and len(call["id"]) == 13
    assert call["function"] == {"index": 0, "name": "get_weather", "arguments": {"city": "Paris"}}
    ollama.behave(version="0.12.9")
    try:
        old = httpx.post(
            url,
            json={
                "model": "qwen3:8b",
                "stream": False,
                "tools": tools,
                "messages": [{"role": "user", "content": "Weather?"}],
            },
        ).json()
        assert "id" not in old["message"]["tool_calls"][0]
        assert old["message"]["thinking"]  # thinking models think unless told not to
    finally:
        ollama.behave(version="0.32.3")
    broken = ndjson(
        httpx.post(
            url,
            json={
                "model": "gemma3:1b",
                "messages": [
                    {"role": "user", "content": "one two three four [fake:error-mid-stream]"}
                ],
            },
        ).text
    )
    assert broken[-1] == {
        "error": "an error was encountered while running the model: unexpected EOF"
    }
    limited = httpx.post(
        url,
        json={
            "model": "gemma3:1b",
            "stream": False,
            "options": {"num_predict": 2},
            "messages": [{"role": "user", "content": "a b c"}],
        },
    ).json()
    assert (limited["message"]["content"], limited["done_reason"]) == ("You said: ", "length")


def test_slow_stream_logs_a_cancelled_request(ollama):
    ollama.install("slow:latest")
    body = {"model": "slow", "messages": [{"role": "user", "content": "go"}]}
    with httpx.stream("POST", ollama.url + "/api/chat", json=body) as reply:
        lines = reply.iter_lines()  # kept: a dropped iterator closes the connection
        first = json.loads(next(lines))
        assert first["message"]["content"] == "tick "
        assert ollama.requests("/api/chat")[-1]["outcome"] == "running"
    deadline = time.monotonic() + 10
    while ollama.requests("/api/chat")[-1]["outcome"] == "running" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert ollama.requests("/api/chat")[-1]["outcome"] == "cancelled"


def test_generate_and_embed(ollama):
    ollama.install("gemma3:1b")
    reply = httpx.post(
        ollama.url + "/api/generate",
        json={"model": "gemma3:1b", "prompt": "Hello", "stream": False},
    ).json()
    assert reply["response"] == "You said: Hello" and reply["context"]
    empty = httpx.post(ollama.url + "/api/generate", json={"model": "", "prompt": "x"})
    assert empty.json() == {"error": "model '' not found"}
    vectors = httpx.post(
        ollama.url + "/api/embed", json={"model": "gemma3:1b", "input": ["a", "b"]}
    ).json()
    assert len(vectors["embeddings"]) == 2 and len(vectors["embeddings"][0]) == 1152
    bad = httpx.post(ollama.url + "/api/embed", json={"model": "gemma3:1b", "input": [1]})
    assert (bad.status_code, bad.json()) == (400, {"error": "invalid input type"})


def test_main_serves_on_ollama_host(tmp_path):
    env = {**os.environ, "OLLAMA_HOST": "127.0.0.1:0", "FAKE_OLLAMA_STATE": str(tmp_path)}
    (tmp_path / "models.json").write_text("[]")
    code = "from tests.fakes.ollama_api import main; main(['--port', '0'])"
    proc = subprocess.Popen(
        [sys.executable, "-c", code], cwd=REPO, env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        line = proc.stdout.readline()
        assert line.startswith("fake ollama listening on 127.0.0.1:0 (state: ")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        proc.stdout.close()


def test_openai_backend_like_vllm(tmp_path):
    with FakeOpenAIBackend(["gemma3:27b"], api_key="sk-test", state_dir=tmp_path) as fake:
        assert (
            httpx.get(fake.url + "/health").status_code,
            httpx.get(fake.url + "/health").content,
        ) == (200, b"")
        assert httpx.get(fake.url + "/version").json() == {"version": "0.11.0"}
        denied = httpx.get(fake.url + "/v1/models")
        assert (denied.status_code, denied.json()) == (401, {"error": "Unauthorized"})
        auth = {"Authorization": "Bearer sk-test"}
        card = httpx.get(fake.url + "/v1/models", headers=auth).json()["data"][0]
        assert (card["id"], card["owned_by"], card["max_model_len"]) == ("gemma3:27b", "vllm", 8192)
        body = {
            "model": "gemma3:27b",
            "messages": [{"role": "user", "content": "Hi"}],
            "max_tokens": 7,
        }
        reply = httpx.post(fake.url + "/v1/chat/completions", json=body, headers=auth).json()
        assert reply["choices"][0]["message"]["content"] == "You said: Hi"
        assert fake.requests("/v1/chat/completions")[0]["body"] == body
        unknown = httpx.post(
            fake.url + "/v1/chat/completions", json={**body, "model": "x"}, headers=auth
        )
        assert unknown.status_code == 404
        assert unknown.json()["error"]["message"] == "The model `x` does not exist."
    assert [r["path"] for r in read_requests(tmp_path)][:2] == ["/health", "/health"]
