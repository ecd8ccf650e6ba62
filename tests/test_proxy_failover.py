"""Two connections serving the same model: the first one listed takes the requests while it is
up; once it refuses connections, or its list marks it down, they go to the next (over real
sockets: two fake Ollamas behind the proxy)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import openai
import pytest

from stackctl.config.model import Config
from stackctl.proxy.app import create_app
from stackctl.proxy.upstream import Backend
from tests.fakes.asgi_server import ServerThread
from tests.fakes.ollama_api import FakeOllama

CHAT = {"model": "gemma3:1b", "messages": [{"role": "user", "content": "Hi"}]}
CACHE_SECONDS = 0.5  # how long a backend marked down is routed around before it is looked at


@pytest.fixture
def pair(tmp_path) -> Iterator[tuple[FakeOllama, FakeOllama]]:
    with FakeOllama(tmp_path / "a") as first, FakeOllama(tmp_path / "b") as second:
        first.install("gemma3:1b")
        second.install("gemma3:1b")
        yield first, second


def serve(*urls: str, cache_seconds: float = CACHE_SECONDS) -> ServerThread:
    config = Config()
    config.proxy.models_cache_seconds = cache_seconds
    config.proxy.read_timeout = 2.0
    backends = [Backend(f"node{i}", "ollama", url) for i, url in enumerate(urls, 1)]
    return ServerThread(create_app(config.proxy, backends=backends, api_keys=[]))


def chats(fake: FakeOllama) -> int:
    return len(fake.requests("/api/chat"))


def test_the_first_listed_takes_every_request_while_it_is_up(pair):
    first, second = pair
    with serve(first.url, second.url) as proxy:
        for _ in range(5):
            reply = httpx.post(proxy.url + "/v1/chat/completions", json=CHAT)
            assert reply.json()["choices"][0]["message"]["content"] == "You said: Hi"
        # the happy path costs nothing extra: no probe, no second backend, one call each
        assert chats(first) == 5
        assert chats(second) == 0
        assert len(first.requests("/api/tags")) == len(second.requests("/api/tags")) == 1


def test_a_refusing_first_connection_hands_the_request_to_the_next(pair):
    first, second = pair
    with (
        serve(first.url, second.url) as proxy,
        openai.OpenAI(base_url=proxy.url + "/v1", api_key="x", max_retries=0) as sdk,
    ):
        sdk.chat.completions.create(**CHAT)
        assert (chats(first), chats(second)) == (1, 0)
        first.stop()  # refuses connections from now on
        reply = sdk.chat.completions.create(**CHAT)
        assert reply.choices[0].message.content == "You said: Hi"
        assert chats(second) == 1
        health = httpx.get(proxy.url + "/health").json()
        node1 = next(c for c in health["connections"] if c["name"] == "node1")
        assert node1["reachable"] is False
        assert node1["error"] == (
            f"The backend 'node1' ({first.url}) refused the connection: "
            "is it running? `stackctl status` shows why."
        )
        # the model stays listed (node2 serves it), and streams go to node2 as well
        assert [m.id for m in sdk.models.list()] == ["gemma3:1b"]
        stream = sdk.chat.completions.create(**CHAT, stream=True)
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        assert text == "You said: Hi"
        assert chats(second) == 2


def test_the_first_connection_takes_requests_again_once_it_is_back(pair):
    first, second = pair
    with serve(first.url, second.url) as proxy:
        first.stop()
        assert httpx.post(proxy.url + "/v1/chat/completions", json=CHAT).status_code == 200
        assert chats(second) == 1
        first.start()  # the same port again
        time.sleep(CACHE_SECONDS + 0.1)
        httpx.get(proxy.url + "/v1/models")  # past the cache time: the lists are fetched again
        before = chats(first)
        assert httpx.post(proxy.url + "/v1/chat/completions", json=CHAT).status_code == 200
        assert chats(first) == before + 1
        assert chats(second) == 1


def test_a_first_connection_marked_down_is_not_tried_until_a_refresh(pair):
    """A backend whose last list failed is marked down: requests go straight to the next one,
    even once it is back, until the next list finds it answering."""
    first, second = pair
    with serve(first.url, second.url, cache_seconds=2.0) as proxy:
        assert len(httpx.get(proxy.url + "/v1/models").json()["data"]) == 1  # both list it
        first.stop()
        time.sleep(2.1)
        health = httpx.get(proxy.url + "/health").json()  # a fresh list: node1 refused
        assert health["connections"][0]["reachable"] is False
        first.start()
        before = chats(first)
        assert httpx.post(proxy.url + "/v1/chat/completions", json=CHAT).status_code == 200
        assert (chats(first), chats(second)) == (before, 1)


def test_native_and_agent_routes_fail_over_too(pair):
    """The Anthropic Messages route (the dialects' path), streamed."""
    first, second = pair
    with serve(first.url, second.url) as proxy:
        first.stop()
        body = {
            "model": "gemma3:1b",
            "max_tokens": 64,
            "messages": [{"role": "user", "content": "Hi"}],
            "stream": True,
        }
        with httpx.stream("POST", proxy.url + "/v1/messages", json=body) as reply:
            assert reply.status_code == 200
            events = [
                json.loads(line.removeprefix("data: "))
                for line in reply.iter_lines()
                if line.startswith("data: ")
            ]
        text = "".join(
            e["delta"].get("text", "") for e in events if e["type"] == "content_block_delta"
        )
        assert text == "You said: Hi"
        assert chats(second) == 1


def test_when_every_connection_refuses_the_last_error_is_the_answer(pair):
    first, second = pair
    with serve(first.url, second.url) as proxy:
        httpx.get(proxy.url + "/v1/models")  # both listed the model
        first.stop()
        second.stop()
        reply = httpx.post(proxy.url + "/v1/chat/completions", json=CHAT)
        assert reply.status_code == 502
        assert reply.json()["error"]["message"] == (
            f"The backend 'node2' ({second.url}) refused the connection: "
            "is it running? `stackctl status` shows why."
        )
