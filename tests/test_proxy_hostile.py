"""Hostile requests over real sockets: deep JSON, odd numbers, huge counts, label floods,
and what /health tells a stranger. Each test reproduces a defect a reliability review found.
"""

from __future__ import annotations

import json

import httpx
import pytest
from fakes.asgi_server import ServerThread
from fakes.ollama_api import FakeOllama

from stackctl.config.model import ProxySection
from stackctl.proxy.app import create_app
from stackctl.proxy.upstream import Backend

KEY = "sk-stackctl-hostile"
CHAT = "/v1/chat/completions"


@pytest.fixture(scope="module")
def ollama(tmp_path_factory: pytest.TempPathFactory):
    with FakeOllama(tmp_path_factory.mktemp("ollama")) as fake:
        fake.install("gemma3:1b", "nomic-embed-text")
        yield fake


@pytest.fixture(scope="module")
def proxy(ollama):
    backends = [Backend("ollama", "ollama", ollama.url)]
    with ServerThread(create_app(ProxySection(), backends=backends, api_keys=[])) as server:
        yield server


@pytest.fixture(scope="module")
def locked(ollama, unused_port_backend):
    backends = [Backend("ollama", "ollama", ollama.url), unused_port_backend]
    with ServerThread(create_app(ProxySection(), backends=backends, api_keys=[KEY])) as server:
        yield server


@pytest.fixture(scope="module")
def unused_port_backend():
    from tests.ports import free_port

    return Backend("down", "openai_compatible", f"http://127.0.0.1:{free_port()}/v1")


def post(server: ServerThread, path: str, body: bytes | dict, **headers: str) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(
        server.url + path,
        content=content,
        headers={"content-type": "application/json", **headers},
        timeout=30,
    )


def error_of(reply: httpx.Response) -> dict:
    body = reply.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


# -- 1. deep JSON ------------------------------------------------------------------------


@pytest.mark.parametrize("raw", [b"[" * 10000, b'{"a":' * 5000, b"[" * 1025 + b"]" * 1025 + b"x"])
def test_deeply_nested_bodies_are_a_400_not_a_500(proxy, raw):
    reply = post(proxy, CHAT, raw)
    assert reply.status_code == 400
    assert error_of(reply) == {
        "message": "We could not parse the JSON body of your request (it nests arrays or "
        "objects too deeply). Send a JSON object with Content-Type: application/json.",
        "type": "invalid_request_error",
        "param": None,
        "code": "invalid_json",
    }


def test_a_deep_but_valid_body_is_a_400_not_a_500(proxy):
    reply = post(proxy, CHAT, b"[" * 1025 + b"]" * 1025)
    assert reply.status_code == 400
    assert error_of(reply)["code"] == "invalid_json"


DEEP = "[" * 1000 + "]" * 1000  # JSON the standard library cannot encode or decode


@pytest.mark.parametrize(
    ("path", "raw", "param"),
    [
        (CHAT, '{"model": "gemma3:1b", "messages": [{"role": %s, "content": "x"}]}', "messages[0].role"),
        (CHAT, '{"model": "gemma3:1b", "messages": [{"role": "user", "content": "x"}], '
               '"response_format": {"type": %s}}', "response_format.type"),
        ("/v1/embeddings", '{"model": "nomic-embed-text", "input": "x", "encoding_format": %s}',
         "encoding_format"),
    ],
)  # fmt: skip
def test_a_deep_value_in_a_field_is_that_fields_400_shown_briefly(proxy, path, raw, param):
    reply = post(proxy, path, (raw % DEEP).encode())
    assert reply.status_code == 400
    error = error_of(reply)
    assert error["param"] == param and error["code"] == "invalid_value"
    assert "[[[[[[[[" in error["message"] and len(error["message"]) < 300


def test_client_values_and_names_are_echoed_bounded(proxy):
    long_key = "k" * 1_000_000
    reply = post(proxy, CHAT, {"model": "gemma3:1b", "messages": [USER], long_key: 1})
    assert reply.status_code == 400
    assert len(reply.content) < 1000
    reply = post(
        proxy, CHAT, {"model": "m" * 1_000_000, "messages": [{"role": "user", "content": "x"}]}
    )
    assert reply.status_code == 404
    assert len(reply.content) < 1000


# -- 2. integral floats ------------------------------------------------------------------


def test_dimensions_as_an_integral_float_is_honoured(proxy):
    reply = post(
        proxy, "/v1/embeddings", {"model": "nomic-embed-text", "input": "x", "dimensions": 2.0}
    )
    assert reply.status_code == 200, reply.text
    assert len(reply.json()["data"][0]["embedding"]) == 2


# -- 6. counts no real client approaches -------------------------------------------------


def test_a_body_of_millions_of_tiny_items_is_refused_before_parsing(proxy):
    raw = b'{"model": "gemma3:1b", "messages": [], "tools": [' + b"{}," * 2_000_000 + b"{}]}"
    reply = post(proxy, CHAT, raw)
    assert reply.status_code == 400
    assert error_of(reply) == {
        "message": "The request body holds more than 200000 JSON values; the proxy takes at "
        "most that many (real requests hold a few thousand).",
        "type": "invalid_request_error",
        "param": None,
        "code": "too_many_values",
    }


def test_commas_inside_strings_do_not_count(proxy):
    text = "a, " * 300_000
    reply = post(
        proxy, CHAT, {"model": "gemma3:1b", "messages": [{"role": "user", "content": text}]}
    )
    assert reply.status_code == 200, reply.text


USER = {"role": "user", "content": "x"}


@pytest.mark.parametrize(
    ("path", "body", "param", "limit"),
    [
        (CHAT, {"messages": [USER] * 10_001}, "messages", 10_000),
        (CHAT, {"messages": [USER], "tools": [{"type": "function", "function": {"name": "f"}}] * 1_025}, "tools", 1_024),
        (CHAT, {"messages": [{"role": "user", "content": [{"type": "text", "text": "x"}] * 1_001}]}, "messages[0].content", 1_000),
        (CHAT, {"messages": [USER], "stop": ["x"] * 65}, "stop", 64),
        ("/v1/completions", {"prompt": "x", "stop": ["x"] * 65}, "stop", 64),
        ("/v1/embeddings", {"input": ["x"] * 10_001}, "input", 10_000),
    ],
)  # fmt: skip
def test_counts_past_their_cap_are_a_400_naming_the_field(proxy, path, body, param, limit):
    model = "nomic-embed-text" if "embeddings" in path else "gemma3:1b"
    reply = post(proxy, path, {"model": model, **body})
    assert reply.status_code == 400
    got = len(body[param.split("[")[0]]) if "[" not in param else limit + 1
    assert error_of(reply) == {
        "message": f"Invalid '{param}': array too long. Expected an array with maximum length "
        f"{limit}, but got an array with length {got} instead.",
        "type": "invalid_request_error",
        "param": param,
        "code": "array_above_max_length",
    }


# -- 7. metrics cardinality --------------------------------------------------------------


def test_metrics_label_the_routed_model_not_the_clients_string(locked):
    auth = {"authorization": f"Bearer {KEY}"}
    for name in ("GEMMA3:1B", "Gemma3:1b", "gemma3:1b", "gemma3:1B"):
        reply = post(locked, CHAT, {"model": name, "messages": [USER]}, **auth)
        assert reply.status_code == 200
    huge = "x" * 100_000  # unknown while a backend is down: routed there, labelled "other"
    assert post(locked, CHAT, {"model": huge, "messages": [USER]}, **auth).status_code == 502
    text = httpx.get(locked.url + "/metrics", headers=auth).text
    models = {
        line.split('model="')[1].split('"')[0]
        for line in text.splitlines()
        if line.startswith("stackctl_proxy_requests_total{")
    }
    assert models == {"gemma3:1b", "other"}
    assert huge not in text


# -- 8. /health --------------------------------------------------------------------------


def test_health_tells_a_stranger_only_the_status(locked, ollama):
    stranger = httpx.get(locked.url + "/health")
    assert stranger.status_code == 200
    assert stranger.json() == {"status": "degraded"}
    wrong = httpx.get(locked.url + "/health", headers={"authorization": "Bearer sk-wrong-key"})
    assert wrong.json() == {"status": "degraded"}
    keyed = httpx.get(locked.url + "/health", headers={"authorization": f"Bearer {KEY}"}).json()
    assert keyed["status"] == "degraded"
    assert [(c["name"], c["base_url"], c["reachable"]) for c in keyed["connections"]] == [
        ("ollama", ollama.url, True),
        ("down", keyed["connections"][1]["base_url"], False),
    ]


def test_health_without_keys_configured_shows_the_details(proxy):
    health = httpx.get(proxy.url + "/health").json()
    assert health["status"] == "ok" and health["connections"][0]["name"] == "ollama"
