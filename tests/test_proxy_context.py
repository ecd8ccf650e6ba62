"""A prompt that fills the model's context (Ollama cuts it silently) is logged, counted in
/metrics and flagged with a response header, on every route in front of Ollama."""

from __future__ import annotations

import logging

import httpx
import pytest
from fakes.asgi_server import ServerThread
from fakes.ollama_api import FakeOllama

from stackctl.config.model import Config
from stackctl.proxy.app import create_app
from stackctl.proxy.upstream import Backend

LONG = "word " * 5000  # 5,000 tokens to the fake: more than its default 4,096 context


@pytest.fixture(scope="module")
def ollama(tmp_path_factory: pytest.TempPathFactory):
    with FakeOllama(tmp_path_factory.mktemp("ollama")) as fake:
        fake.install("gemma3:1b", "qwen3:8b")
        yield fake


@pytest.fixture(scope="module")
def proxy(ollama: FakeOllama):
    config = Config()
    config.proxy.model_options = {"qwen3:8b": {"num_ctx": 16384}}
    app = create_app(config.proxy, backends=[Backend("ollama", "ollama", ollama.url)], api_keys=[])
    with ServerThread(app) as server:
        yield server


def full_count(proxy: ServerThread, model: str) -> str | None:
    for line in httpx.get(proxy.url + "/metrics").text.splitlines():
        if line.startswith(f'stackctl_proxy_context_full_total{{model="{model}"}}'):
            return line.rsplit(" ", 1)[1]
    return None


def test_a_full_context_is_flagged_logged_and_counted(proxy, caplog):
    caplog.set_level(logging.WARNING, logger="stackctl.proxy")
    body = {"model": "gemma3:1b", "max_tokens": 10, "messages": [{"role": "user", "content": LONG}]}
    reply = httpx.post(proxy.url + "/v1/messages", json=body)
    assert reply.status_code == 200
    assert reply.headers["x-stackctl-context-full"] == "prompt_tokens=4096; num_ctx=4096"
    assert reply.json()["usage"]["input_tokens"] == 4096
    assert (
        "the prompt to gemma3:1b took 4096 of its 4096-token context (num_ctx): Ollama drops "
        "what does not fit without an error. Set proxy.model_options.gemma3:1b.num_ctx (e.g. "
        "32768) in stack.yaml, memory permitting"
    ) in caplog.messages
    chat = httpx.post(
        proxy.url + "/v1/chat/completions",
        json={"model": "gemma3:1b", "messages": [{"role": "user", "content": LONG}]},
    )
    assert chat.headers["x-stackctl-context-full"] == "prompt_tokens=4096; num_ctx=4096"
    stream = {"model": "gemma3:1b", "input": LONG, "stream": True}
    with httpx.stream("POST", proxy.url + "/v1/responses", json=stream) as streamed:
        assert b"response.completed" in streamed.read()
    assert full_count(proxy, "gemma3:1b") == "3"


def test_a_pinned_context_that_fits_is_not_flagged(proxy):
    body = {"model": "qwen3:8b", "max_tokens": 10, "messages": [{"role": "user", "content": LONG}]}
    reply = httpx.post(proxy.url + "/v1/messages", json=body)
    assert reply.status_code == 200 and "x-stackctl-context-full" not in reply.headers
    assert reply.json()["usage"]["input_tokens"] == 5004
    assert full_count(proxy, "qwen3:8b") is None
