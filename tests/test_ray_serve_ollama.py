"""The Ray Serve application in front of per-node Ollamas (stackctl/ray_serve/ollama_app.py),
for real: a two-node Ray cluster on this host (`ray start`, each node with its own ports and
its own STACKCTL_OLLAMA_URL), a fake Ollama per node, the app deployed by its own script, and
the stackctl proxy in front with one connection to Serve. One cluster for the module (starting
it takes most of a minute on two cores)."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest

from stackctl.config.model import Config
from stackctl.proxy.app import create_app
from stackctl.proxy.upstream import Backend
from stackctl.ray_serve import OLLAMA_APP
from tests.fakes.asgi_server import ServerThread
from tests.fakes.ollama_api import FakeOllama
from tests.ports import free_port
from tests.ray_nodes import RayCluster, cluster_env, ray_python

MODELS = ("gemma3:1b", "slow:1b")
CHAT = {"model": "gemma3:1b", "messages": [{"role": "user", "content": "Hi"}]}


def wait_for(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g} s")
        time.sleep(0.5)


def answers(url: str) -> bool:
    try:
        return httpx.get(url + "/api/tags", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="module")
def ollamas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[FakeOllama]]:
    ray_python()  # skip before starting anything when there is no Ray here
    fakes = [FakeOllama(tmp_path_factory.mktemp(f"ollama{i}")).start() for i in (1, 2)]
    for fake in fakes:
        fake.install(*MODELS)
        fake.behave(slow_tokens=20, slow_token_seconds=0.1)
    yield fakes
    for fake in fakes:
        fake.stop()


@pytest.fixture(scope="module")
def serve_url(ollamas, tmp_path_factory) -> Iterator[str]:
    """The app deployed on a two-node cluster, each node's replica bound to its own Ollama."""
    python = ray_python()
    cluster = RayCluster(python, [{"STACKCTL_OLLAMA_URL": fake.url} for fake in ollamas])
    port = free_port()
    log = tmp_path_factory.mktemp("serve") / "app.log"
    argv = [python, str(OLLAMA_APP), "--address", cluster.address, "--nodes", "2"]
    with log.open("wb") as out:
        app = subprocess.Popen(
            [*argv, "--port", str(port)], env=cluster_env(), stdout=out, stderr=out
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: answers(url) or app.poll() is not None, 300, "Serve answering")
        assert app.poll() is None, log.read_text()[-3000:]
        yield url
    finally:
        app.send_signal(signal.SIGTERM)
        try:
            code = app.wait(timeout=60)
        except subprocess.TimeoutExpired:
            app.kill()
            code = app.wait()
        cluster.stop()
    assert code == 0, log.read_text()[-3000:]


@pytest.fixture(scope="module")
def proxy(serve_url) -> Iterator[ServerThread]:
    config = Config()
    config.proxy.models_cache_seconds = 0.5
    backends = [Backend("ollama", "ollama", serve_url)]
    with ServerThread(create_app(config.proxy, backends=backends, api_keys=[])) as server:
        yield server


def chats(fake: FakeOllama) -> int:
    return len(fake.requests("/api/chat"))


def test_requests_through_the_proxy_reach_both_nodes_replicas(proxy, ollamas):
    """Requests that overlap (each takes 2 s, as generating does) are spread: Serve sends each
    to the less busy of two replicas it asks (with a 0.1 s deadline, which a busy test machine
    can miss: then up to two more rounds)."""
    before = [chats(fake) for fake in ollamas]
    with openai.OpenAI(base_url=proxy.url + "/v1", api_key="x", max_retries=0) as sdk:
        assert [m.id for m in sdk.models.list()] == list(MODELS)

        def ask(i: int) -> str:
            stream = sdk.chat.completions.create(
                model="slow:1b", messages=[{"role": "user", "content": f"Hi {i}"}], stream=True
            )
            return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)

        for rounds in range(1, 4):
            with ThreadPoolExecutor(8) as pool:
                assert list(pool.map(ask, range(16))) == ["tick " * 20] * 16
            served = [chats(fake) - b for fake, b in zip(ollamas, before, strict=True)]
            assert sum(served) == 16 * rounds
            if all(n > 0 for n in served):
                break
    assert all(n > 0 for n in served), served


def test_ollama_streams_pass_through_serve_as_they_come(serve_url, ollamas):
    """Native NDJSON straight from Serve: the lines arrive one by one, not at the end."""
    body = {"model": "slow:1b", "messages": [{"role": "user", "content": "go"}]}
    started = time.monotonic()
    arrivals = []
    with httpx.stream("POST", serve_url + "/api/chat", json=body, timeout=30) as reply:
        assert reply.status_code == 200
        assert reply.headers["content-type"] == "application/x-ndjson"
        for line in reply.iter_lines():
            if line:
                arrivals.append(time.monotonic() - started)
    assert len(arrivals) == 21  # 20 ticks and the done line
    assert arrivals[-1] > 1.5  # 20 ticks 0.1 s apart
    assert arrivals[0] < arrivals[-1] - 1.0  # the first came long before the last


def test_openai_streams_through_the_proxy_and_serve(proxy):
    with openai.OpenAI(base_url=proxy.url + "/v1", api_key="x", max_retries=0) as sdk:
        stream = sdk.chat.completions.create(**CHAT, stream=True)
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "You said: Hi"


def test_a_node_whose_ollama_dies_leaves_the_other_answering(proxy, ollamas):
    """Serve's health check (the replica asks its Ollama) takes the dead node's replica out;
    every request is then answered by the other node."""
    alive, dead = ollamas
    dead.stop()
    try:

        def steady() -> bool:  # ten answers in a row
            return all(
                httpx.post(proxy.url + "/v1/chat/completions", json=CHAT, timeout=30).status_code
                == 200
                for _ in range(10)
            )

        wait_for(steady, 60, "answers from the node whose Ollama is up")
        before = chats(alive)
        for _ in range(20):
            reply = httpx.post(proxy.url + "/v1/chat/completions", json=CHAT, timeout=30)
            assert reply.status_code == 200
        assert chats(alive) == before + 20
    finally:
        dead.start()  # the same port: the node's replacement replica passes its check again
