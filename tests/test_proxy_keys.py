"""Named keys at the proxy's door, over real sockets: reload without a restart, per-key
limits (429 with Retry-After), per-key metrics, usage kept across a restart, x-api-key."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from stackctl import keystore
from stackctl.config.model import Config
from stackctl.paths import paths_for
from stackctl.proxy.app import create_app
from stackctl.proxy.keyring import Keyring
from stackctl.proxy.upstream import Backend
from tests.fakes.asgi_server import ServerThread
from tests.fakes.ollama_api import FakeOllama

HI = [{"role": "user", "content": "Hi"}]


@pytest.fixture(scope="module")
def ollama(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeOllama]:
    with FakeOllama(tmp_path_factory.mktemp("ollama")) as fake:
        fake.install("gemma3:1b")
        yield fake


class Stack:
    """A stack.yaml with an api_keys_file, and a proxy serving its keys."""

    def __init__(self, tmp_path: Path, ollama: FakeOllama, stackctl, unnamed: str = ""):
        self.dir = tmp_path
        self.ollama = ollama
        self.run = stackctl
        self.keys_file = tmp_path / "proxy-keys"
        if unnamed:
            self.keys_file.write_text(unnamed)
            self.keys_file.chmod(0o600)
        self.config_file = tmp_path / "stack.yaml"
        self.config_file.write_text(f"proxy:\n  api_keys_file: '{self.keys_file}'\n")
        # where `keys list` reads what the proxy wrote (this user's data dir)
        self.usage_file = keystore.usage_path(paths_for(scope="user").data_dir)
        self.server: ServerThread | None = None

    def start(self) -> ServerThread:
        config = Config()
        config.proxy.api_keys_file = str(self.keys_file)
        keyring = Keyring.for_config(config.proxy, self.usage_file)
        backends = [Backend("ollama", "ollama", self.ollama.url)]
        self.server = ServerThread(create_app(config.proxy, backends=backends, keyring=keyring))
        return self.server.start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()

    @property
    def url(self) -> str:
        assert self.server is not None
        return self.server.url

    def keys(self, *args: str):
        return self.run("--config", str(self.config_file), "keys", *args)

    def add(self, name: str, *limits: str) -> str:
        result = self.keys("add", name, *limits)
        assert result.code == 0, result.err
        return result.out.strip()

    def chat(self, key: str, **body) -> httpx.Response:
        return httpx.post(
            self.url + "/v1/chat/completions",
            json={"model": "gemma3:1b", "messages": HI, **body},
            headers={"Authorization": f"Bearer {key}"},
        )

    def metrics(self, key: str) -> list[str]:
        reply = httpx.get(self.url + "/metrics", headers={"Authorization": f"Bearer {key}"})
        return [line for line in reply.text.splitlines() if line.startswith("stackctl_proxy_key")]


@pytest.fixture
def stack(tmp_path, ollama, stackctl) -> Iterator[Stack]:
    stack = Stack(tmp_path, ollama, stackctl)
    yield stack
    stack.stop()


def until(check, seconds: float) -> float:
    """Poll `check` until it is true; the time it took (fails past `seconds`)."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < seconds, f"not within {seconds} s"
        time.sleep(0.02)
    return time.monotonic() - started


def test_keys_added_and_revoked_take_effect_within_a_second_without_a_restart(stack):
    admin = stack.add("admin")
    stack.start()
    assert stack.chat(admin).status_code == 200
    alice = stack.add("alice")
    assert until(lambda: stack.chat(alice).status_code == 200, 1.0) < 1.0
    with openai.OpenAI(base_url=stack.url + "/v1", api_key=alice, max_retries=0) as sdk:
        assert sdk.chat.completions.create(model="gemma3:1b", messages=HI).choices
    assert stack.keys("revoke", "alice").code == 0
    assert until(lambda: stack.chat(alice).status_code == 401, 1.0) < 1.0
    refused = stack.chat(alice)
    assert refused.json()["error"]["code"] == "invalid_api_key"
    assert stack.chat(admin).status_code == 200
    # the last key revoked: the door closes, it does not open
    stack.keys("revoke", "admin")
    until(lambda: stack.chat(admin).status_code == 401, 1.0)
    assert httpx.get(stack.url + "/v1/models").status_code == 401


def test_unnamed_keys_keep_working_and_their_file_is_reloaded(tmp_path, ollama, stackctl):
    stack = Stack(tmp_path, ollama, stackctl, unnamed="# old keys\nsk-old-key-one\n")
    stack.start()
    try:
        assert stack.chat("sk-old-key-one").status_code == 200
        assert stack.chat("sk-old-key-two").status_code == 401
        stack.keys_file.write_text("sk-old-key-two\n")  # edited in place, as people do
        until(lambda: stack.chat("sk-old-key-two").status_code == 200, 1.0)
        assert stack.chat("sk-old-key-one").status_code == 401
        assert 'stackctl_proxy_key_requests_total{key="key-1"} 3' in stack.metrics("sk-old-key-two")
    finally:
        stack.stop()


def test_a_broken_store_keeps_the_keys_the_proxy_had(stack, caplog):
    alice = stack.add("alice")
    stack.start()
    store = keystore.store_path(stack.keys_file)
    good = store.read_text()
    store.write_text("{not json")
    time.sleep(0.3)
    assert stack.chat(alice).status_code == 200
    store.write_text(good)
    store.chmod(0o644)  # others may read it now: refused, the keys stay as they were
    time.sleep(0.3)
    assert stack.chat(alice).status_code == 200
    messages = [r.getMessage() for r in caplog.records if r.name == "stackctl.proxy"]
    assert any("not JSON" in m and "previous ones stay" in m for m in messages)
    assert any("others can read it" in m for m in messages)


def test_the_sixth_request_in_a_minute_gets_429_with_retry_after(stack):
    limited = stack.add("limited", "--rpm", "5")
    other = stack.add("other")
    stack.start()
    for _ in range(5):
        assert stack.chat(limited).status_code == 200
    sixth = stack.chat(limited)
    assert sixth.status_code == 429
    assert 1 <= int(sixth.headers["retry-after"]) <= 60
    error = sixth.json()["error"]
    assert (error["type"], error["code"], error["param"]) == (
        "requests",
        "rate_limit_exceeded",
        None,
    )
    assert error["message"] == (
        "Rate limit reached for key 'limited' on requests per min (RPM): Limit 5, Used 5, "
        f"Requested 1. Please try again in {sixth.headers['retry-after']}s."
    )
    assert stack.chat(other).status_code == 200  # limits are per key
    # the openai SDK reads it as a RateLimitError (and would retry after Retry-After)
    with (
        openai.OpenAI(base_url=stack.url + "/v1", api_key=limited, max_retries=0) as sdk,
        pytest.raises(openai.RateLimitError),
    ):
        sdk.models.list()
    lines = stack.metrics(other)
    assert 'stackctl_proxy_key_requests_total{key="limited"} 5' in lines
    assert 'stackctl_proxy_key_rate_limited_total{key="limited",limit="requests"} 2' in lines
    assert limited not in "\n".join(lines)


def test_tokens_per_day_count_streamed_answers_and_survive_a_restart(stack):
    key = stack.add("small", "--tokens-per-day", "20")
    stack.start()
    first = stack.chat(key, stream=True)  # the stream's done line carries the counts
    assert first.status_code == 200 and "data: [DONE]" in first.text
    lines = stack.metrics(key)
    tokens_in = next(line for line in lines if 'key="small",direction="in"' in line)
    tokens_out = next(line for line in lines if 'key="small",direction="out"' in line)
    used = int(tokens_in.split()[-1]) + int(tokens_out.split()[-1])
    assert used > 0
    while used < 20:  # whole answers until the day's tokens are spent
        reply = stack.chat(key)
        assert reply.status_code == 200
        used += reply.json()["usage"]["total_tokens"]
    refused = stack.chat(key)
    assert refused.status_code == 429
    wait = int(refused.headers["retry-after"])
    assert abs(wait - (86400 - time.time() % 86400)) < 5  # until midnight UTC
    assert refused.json()["error"]["type"] == "tokens"
    assert refused.json()["error"]["message"] == (
        f"Rate limit reached for key 'small' on tokens per day (TPD): Limit 20, Used {used}. "
        f"The limit resets at midnight UTC: please try again in {wait}s."
    )

    stack.stop()  # a restart: the usage file keeps the day's tokens
    listed = stack.keys("list", "--json")
    (row,) = [r for r in json.loads(listed.out) if r["name"] == "small"]
    assert row["tokens_today"] == used and row["last_used"] is not None
    stack.start()
    assert stack.chat(key).status_code == 429


def test_anthropic_clients_use_the_same_keys_with_x_api_key(stack):
    key, reader = stack.add("claude", "--rpm", "2"), stack.add("reader")
    stack.start()
    with anthropic.Anthropic(base_url=stack.url, api_key=key, max_retries=0) as client:
        reply = client.messages.create(model="gemma3:1b", max_tokens=50, messages=HI)
        assert reply.content[0].text == "You said: Hi"
        client.messages.create(model="gemma3:1b", max_tokens=50, messages=HI)
        with pytest.raises(anthropic.RateLimitError) as limited:
            client.messages.create(model="gemma3:1b", max_tokens=50, messages=HI)
    assert limited.value.response.headers["retry-after"]
    assert limited.value.body["error"]["type"] == "rate_limit_error"
    with (
        anthropic.Anthropic(base_url=stack.url, api_key="sk-not-a-key", max_retries=0) as bad,
        pytest.raises(anthropic.AuthenticationError),
    ):
        bad.messages.create(model="gemma3:1b", max_tokens=50, messages=HI)
    lines = stack.metrics(reader)
    assert 'stackctl_proxy_key_requests_total{key="claude"} 2' in lines
    tokens_out = next(line for line in lines if 'key="claude",direction="out"' in line)
    assert int(tokens_out.split()[-1]) > 0


def test_metrics_count_requests_and_tokens_by_key_name(stack):
    alice, bob = stack.add("alice"), stack.add("bob")
    stack.start()
    for _ in range(3):
        stack.chat(alice)
    reply = stack.chat(bob)
    usage = reply.json()["usage"]
    lines = stack.metrics(bob)
    assert 'stackctl_proxy_key_requests_total{key="alice"} 3' in lines
    assert 'stackctl_proxy_key_requests_total{key="bob"} 2' in lines  # the chat and /metrics
    assert (
        f'stackctl_proxy_key_tokens_total{{key="bob",direction="in"}} {usage["prompt_tokens"]}'
        in lines
    )
    assert (
        f'stackctl_proxy_key_tokens_total{{key="bob",direction="out"}} {usage["completion_tokens"]}'
        in lines
    )
    assert alice not in "\n".join(lines) and bob not in "\n".join(lines)


def test_last_used_is_written_in_batches_not_per_request(stack, monkeypatch):
    from stackctl.proxy import keyring

    monkeypatch.setattr(keyring, "USAGE_FLUSH_SECONDS", 0.5)
    writes = []
    real = keyring.write_usage
    monkeypatch.setattr(keyring, "write_usage", lambda *a: (writes.append(1), real(*a)))
    key = stack.add("alice")
    stack.start()
    started = time.monotonic()
    for _ in range(30):
        assert stack.chat(key).status_code == 200
    until(lambda: stack.usage_file.exists(), 2.0)
    took = time.monotonic() - started
    # one write a flush period at most, whatever the number of requests (30 here)
    assert 1 <= len(writes) <= took / 0.5 + 1
    (row,) = json.loads(stack.keys("list", "--json").out)
    assert row["name"] == "alice" and row["last_used"] is not None
    stack.stop()  # the proxy's shutdown writes what is left
    assert len(writes) <= (time.monotonic() - started) / 0.5 + 2


def test_streams_passed_through_count_a_limited_key_s_tokens(tmp_path, stackctl):
    """An OpenAI-compatible backend (vLLM) sends a stream's usage only when asked: for a key
    with tokens a day the proxy asks, counts it, and leaves that chunk out for the client."""
    from tests.fakes.openai_backend import FakeOpenAIBackend

    keys_file = tmp_path / "proxy-keys"
    config_file = tmp_path / "stack.yaml"
    config_file.write_text(f"proxy:\n  api_keys_file: '{keys_file}'\n")

    def add(*args: str) -> str:
        return stackctl("--config", str(config_file), "keys", "add", *args).out.strip()

    limited, free = add("limited", "--tokens-per-day", "1000"), add("free")
    config = Config()
    config.proxy.api_keys_file = str(keys_file)
    with FakeOpenAIBackend(["gemma3:1b"]) as vllm:
        backend = Backend("vllm", "openai_compatible", vllm.url + "/v1")
        app = create_app(
            config.proxy, backends=[backend], keyring=Keyring.for_config(config.proxy, None)
        )
        with ServerThread(app) as proxy:

            def stream(key: str, **extra) -> list[dict]:
                with openai.OpenAI(base_url=proxy.url + "/v1", api_key=key, max_retries=0) as sdk:
                    chunks = sdk.chat.completions.create(
                        model="gemma3:1b", messages=HI, stream=True, **extra
                    )
                    return [c.model_dump() for c in chunks]

            plain = stream(limited)
            assert plain and all(c["choices"] for c in plain)  # no usage chunk it did not ask for
            sent = vllm.requests("/v1/chat/completions")[-1]["body"]
            assert sent["stream_options"] == {"include_usage": True}
            asked = stream(limited, stream_options={"include_usage": True})
            assert asked[-1]["choices"] == [] and asked[-1]["usage"]["total_tokens"] > 0
            stream(free)
            assert "stream_options" not in vllm.requests("/v1/chat/completions")[-1]["body"]
            metrics = httpx.get(
                proxy.url + "/metrics", headers={"Authorization": f"Bearer {free}"}
            ).text
    usage = asked[-1]["usage"]
    assert (
        f'stackctl_proxy_key_tokens_total{{key="limited",direction="out"}} '
        f"{2 * usage['completion_tokens']}" in metrics
    )
    assert 'stackctl_proxy_key_tokens_total{key="free",direction="out"} 0' in metrics
