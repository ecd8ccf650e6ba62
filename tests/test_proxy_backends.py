"""Several connections: passthrough to an OpenAI-compatible backend, routing, and backends
that are down or silent (502, 504, and a model list that stays quick)."""

from __future__ import annotations

import json
import socket
import time

import httpx
import openai
import pytest

from stackctl.config.model import Config, Connection
from stackctl.proxy.app import create_app
from stackctl.proxy.upstream import Backend
from tests.fakes.asgi_server import ServerThread, proxy_thread
from tests.fakes.ollama_api import FakeOllama
from tests.fakes.openai_backend import FakeOpenAIBackend
from tests.ports import free_port

VLLM_KEY = "sk-vllm-secret"


@pytest.fixture(scope="module")
def ollama(tmp_path_factory: pytest.TempPathFactory):
    with FakeOllama(tmp_path_factory.mktemp("ollama")) as fake:
        fake.install("gemma3:1b", "shared:latest")
        yield fake


@pytest.fixture(scope="module")
def vllm():
    with FakeOpenAIBackend(
        ["google/gemma-3-27b-it", "shared", "slow-model"], api_key=VLLM_KEY, error_shape="flat"
    ) as fake:
        yield fake


@pytest.fixture(scope="module")
def closed_port() -> int:
    """A loopback port nobody listens on: connections are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def silent():
    """A loopback server that accepts connections and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    sock.close()


@pytest.fixture(scope="module")
def proxy(ollama, vllm, closed_port, monkeypatch_module):
    monkeypatch_module.setenv("STACKCTL_TEST_VLLM_KEY", VLLM_KEY)
    config = Config()
    config.proxy.aliases = {"big": "google/gemma-3-27b-it"}
    config.proxy.read_timeout = 1.0
    connections = [
        Connection("ollama", "ollama", ollama.url),
        Connection(
            "vllm",
            "openai_compatible",
            vllm.url + "/v1/",
            api_key_env="STACKCTL_TEST_VLLM_KEY",
            params={"max_tokens": 64},
        ),
        Connection("down", "openai_compatible", f"http://127.0.0.1:{closed_port}/v1"),
    ]
    app = create_app(
        config.proxy, backends=[Backend.from_connection(c) for c in connections], api_keys=[]
    )
    with proxy_thread(app, config.proxy) as server:
        yield server


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


@pytest.fixture(scope="module")
def client(proxy):
    with openai.OpenAI(base_url=proxy.url + "/v1", api_key="x", max_retries=0) as sdk:
        yield sdk


def test_models_merge_connections_first_listed_wins(client):
    cards = {m.id: m for m in client.models.list()}
    assert list(cards) == [
        "gemma3:1b",
        "shared:latest",
        "google/gemma-3-27b-it",
        "shared",
        "slow-model",
        "big",
    ]
    assert cards["google/gemma-3-27b-it"].owned_by == "vllm"
    assert cards["google/gemma-3-27b-it"].max_model_len == 8192  # the backend's extra fields stay
    assert cards["big"].owned_by == "vllm"


def test_an_id_on_two_connections_goes_to_the_first(client, ollama, vllm):
    before = len(vllm.requests("/v1/chat/completions"))
    reply = client.chat.completions.create(
        model="shared", messages=[{"role": "user", "content": "Hi"}]
    )
    assert reply.choices[0].message.content == "You said: Hi"
    assert ollama.requests("/api/chat")[-1]["body"]["model"] == "shared"
    assert len(vllm.requests("/v1/chat/completions")) == before


def test_passthrough_forwards_the_body_with_params_and_key(client, vllm):
    reply = client.chat.completions.create(
        model="google/gemma-3-27b-it",
        messages=[{"role": "user", "content": "Hi"}],
        n=1,
        logprobs=False,
    )
    assert reply.choices[0].message.content == "You said: Hi"
    seen = vllm.requests("/v1/chat/completions")[-1]
    assert seen["body"] == {
        "max_tokens": 64,  # the connection's params fill what the request left out
        "messages": [{"role": "user", "content": "Hi"}],
        "model": "google/gemma-3-27b-it",
        "n": 1,
        "logprobs": False,
    }
    assert seen["headers"]["authorization"] == f"Bearer {VLLM_KEY}"
    assert seen["headers"]["host"] == vllm.url.removeprefix("http://")
    explicit = client.chat.completions.create(
        model="google/gemma-3-27b-it", messages=[{"role": "user", "content": "a b c"}], max_tokens=2
    )
    assert explicit.choices[0].finish_reason == "length"
    assert vllm.requests("/v1/chat/completions")[-1]["body"]["max_tokens"] == 2


def test_passthrough_of_an_untouched_body_is_byte_for_byte(proxy, vllm):
    raw = (
        b'{"model":"google/gemma-3-27b-it","max_tokens":9,"prompt":"Hi","extra_vllm_field":{"a":1}}'
    )
    reply = httpx.post(proxy.url + "/v1/completions", content=raw)
    assert reply.json()["choices"][0]["text"] == "You said: Hi"
    assert vllm.requests("/v1/completions")[-1]["body"] == json.loads(raw)


def test_passthrough_alias_is_renamed_both_ways(client, vllm):
    reply = client.chat.completions.create(
        model="big", messages=[{"role": "user", "content": "Hi"}]
    )
    assert reply.model == "big"
    assert vllm.requests("/v1/chat/completions")[-1]["body"]["model"] == "google/gemma-3-27b-it"


def test_passthrough_stream_is_relayed(client):
    chunks = list(
        client.chat.completions.create(
            model="google/gemma-3-27b-it",
            messages=[{"role": "user", "content": "Hello there"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert (
        "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        == "You said: Hello there"
    )
    assert chunks[-1].usage.completion_tokens == 4


def test_passthrough_embeddings(client):
    reply = client.embeddings.create(
        model="google/gemma-3-27b-it", input=["a"], encoding_format="float"
    )
    assert len(reply.data[0].embedding) == 8


def test_backend_errors_become_nested_openai_errors(proxy):
    reply = httpx.post(proxy.url + "/v1/chat/completions", json={"model": "google/gemma-3-27b-it"})
    assert reply.status_code == 400
    assert reply.json() == {
        "error": {
            "message": "messages: Field required",
            "type": "BadRequestError",
            "param": "messages",
            "code": None,
        }
    }


def test_a_refusing_backend_is_502_naming_it_and_health_says_why(proxy, client, closed_port):
    ids = [m["id"] for m in httpx.get(proxy.url + "/v1/models", timeout=5).json()["data"]]
    assert "gemma3:1b" in ids
    health = httpx.get(proxy.url + "/health").json()
    assert health["status"] == "degraded"
    down = next(c for c in health["connections"] if c["name"] == "down")
    assert down["reachable"] is False
    assert down["error"] == (
        f"The backend 'down' (http://127.0.0.1:{closed_port}/v1) refused the connection: "
        "is it running? `stackctl status` shows why."
    )
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(
            model="only-on-down", messages=[{"role": "user", "content": "Hi"}]
        )
    assert caught.value.status_code == 502
    assert caught.value.body["message"] == down["error"]


def test_a_silent_backend_is_504_and_the_list_stays_quick(silent):
    config = Config()
    config.proxy.read_timeout = 1.0
    config.proxy.connect_timeout = 1.0
    backends = [Backend("silent", "openai_compatible", silent + "/v1")]
    with ServerThread(create_app(config.proxy, backends=backends, api_keys=[])) as server:
        models = httpx.get(server.url + "/v1/models", timeout=30)
        assert models.json() == {"object": "list", "data": []}
        health = httpx.get(server.url + "/health", timeout=30).json()
        assert health["connections"][0]["error"] == (
            f"The backend 'silent' ({silent}/v1) sent nothing for 1 s (proxy.read_timeout)."
        )
        reply = httpx.post(
            server.url + "/v1/chat/completions",
            json={"model": "x", "messages": [{"role": "user", "content": "Hi"}]},
            timeout=30,
        )
        assert reply.status_code == 504
        assert (
            reply.json()["error"]["message"]
            == f"The backend 'silent' ({silent}/v1) sent nothing for 1 s (proxy.read_timeout)."
        )


def test_hanging_up_on_a_passthrough_stream_closes_the_upstream(proxy, vllm):
    body = {"model": "slow-model", "messages": [{"role": "user", "content": "go"}], "stream": True}
    with httpx.stream("POST", proxy.url + "/v1/chat/completions", json=body) as reply:
        lines = reply.iter_lines()
        assert next(lines).startswith("data: ")
        assert vllm.requests("/v1/chat/completions")[-1]["outcome"] == "running"
    deadline = time.monotonic() + 10
    while (
        vllm.requests("/v1/chat/completions")[-1]["outcome"] == "running"
        and time.monotonic() < deadline
    ):
        time.sleep(0.02)
    assert vllm.requests("/v1/chat/completions")[-1]["outcome"] == "cancelled"


def test_a_backend_that_comes_up_is_listed_once_the_cache_expires(tmp_path):
    """The first listing found it down; the first /v1/models after the cache time is fresh."""
    config = Config()
    config.proxy.models_cache_seconds = 0.2
    port = free_port()  # down at first, then FakeOllama's
    backends = [Backend("ollama", "ollama", f"http://127.0.0.1:{port}")]
    with ServerThread(create_app(config.proxy, backends=backends, api_keys=[])) as server:
        assert httpx.get(server.url + "/v1/models").json()["data"] == []  # refused: not listed
        with FakeOllama(tmp_path / "ollama", port=port) as ollama:
            ollama.install("gemma3:1b")
            time.sleep(0.3)  # past models_cache_seconds
            listed = httpx.get(server.url + "/v1/models").json()["data"]
            assert [m["id"] for m in listed] == ["gemma3:1b"]
